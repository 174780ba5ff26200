#include "ktstr/vmm/aarch64/layout.hpp"

#include "ktstr/base/error.hpp"

#include <fmt/format.h>

namespace ktstr::aarch64 {

MemoryMap memory_map(std::uint32_t vcpus, std::uint64_t ram_bytes) {
    if (vcpus == 0 || vcpus > kMaxVcpus)
        throw UsageError(fmt::format("{} vCPUs: an arm64 VM has 1 to {}", vcpus, kMaxVcpus));
    if (ram_bytes == 0 || ram_bytes % kRamGranule != 0)
        throw UsageError(
            fmt::format("guest RAM of {} bytes is not a positive multiple of 2 MiB", ram_bytes));
    if (ram_bytes <= kFdtMaxSize)
        throw UsageError(fmt::format("guest RAM of {} MiB leaves no room beside the 2 MiB device "
                                     "tree",
                                     ram_bytes >> 20));
    MemoryMap map;
    map.vcpus = vcpus;
    map.gic_distributor = {kGicDistributor, kGicDistributorSize};
    map.gic_redistributors = {kGicRedistributors, vcpus * kGicRedistributorSize};
    map.uart0 = {kUart0, kUartSize};
    map.uart1 = {kUart1, kUartSize};
    map.virtio_mmio = {kVirtioMmio, kVirtioMmioSize};
    map.ram = {kRamBase, ram_bytes};
    // Throws on wrap-around: RAM that does not fit the 64-bit address space.
    GuestAddress ram_end = kRamBase + ram_bytes;
    map.fdt = {GuestAddress(ram_end.raw() - kFdtMaxSize), kFdtMaxSize};
    return map;
}

std::vector<std::pair<std::string, Region>> MemoryMap::regions() const {
    return {{"gic-distributor", gic_distributor},
            {"gic-redistributors", gic_redistributors},
            {"uart0", uart0},
            {"uart1", uart1},
            {"virtio-mmio", virtio_mmio},
            {"ram", ram}};
}

GuestAddress MemoryMap::initrd(std::uint64_t text_offset, std::uint64_t image_size,
                               std::uint64_t initrd_size) const {
    std::uint64_t room = fdt.base.offset_from(ram.base);
    // Each term is checked against what is left, so no sum can wrap.
    if (text_offset > room || image_size > room - text_offset)
        throw UsageError(fmt::format("the kernel ({} MiB at offset {:#x}) does not fit in {} MiB "
                                     "of guest RAM below the device tree",
                                     image_size >> 20, text_offset, room >> 20));
    std::uint64_t initrd_offset = align_up(text_offset + image_size, kRamGranule);
    if (initrd_offset > room || initrd_size > room - initrd_offset)
        throw UsageError(fmt::format("the kernel ({} MiB) and initrd ({} MiB) do not fit in {} MiB "
                                     "of guest RAM below the device tree",
                                     image_size >> 20, initrd_size >> 20, room >> 20));
    if (initrd_offset + initrd_size > kInitrdWindow)
        throw UsageError(fmt::format("the initrd ({} MiB) would end beyond the first 32 GiB of "
                                     "guest RAM, where arm64 kernels require it",
                                     initrd_size >> 20));
    return ram.base + initrd_offset;
}

} // namespace ktstr::aarch64
