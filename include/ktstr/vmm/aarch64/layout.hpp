#pragma once

#include "ktstr/vmm/guest_memory.hpp"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

// Where things live in an arm64 guest's physical address space. Pure data: no KVM calls, so
// it is built and tested on any host.
namespace ktstr::aarch64 {

// KVM_MAX_VCPUS on arm64: VGIC_V3_MAX_CPUS in include/kvm/arm_vgic.h.
inline constexpr std::uint32_t kMaxVcpus = 512;

inline constexpr std::uint64_t align_up(std::uint64_t value, std::uint64_t alignment) {
    return (value + alignment - 1) / alignment * alignment;
}

// A range of guest physical addresses.
struct Region {
    GuestAddress base;
    std::uint64_t size = 0;

    constexpr GuestAddress end() const { return GuestAddress(base.raw() + size); }
    constexpr bool overlaps(const Region& other) const {
        return base < other.end() && other.base < end();
    }
    constexpr bool contains(const Region& inner) const {
        return base <= inner.base && inner.end() <= end();
    }
    bool operator==(const Region&) const = default;
};

// Every MMIO region starts on a 64 KiB boundary: the GIC's frame size and the largest arm64
// page size, so a guest with 64 KiB pages never maps two devices with one page.
inline constexpr std::uint64_t kMmioAlignment = 0x1'0000;

// GICv3: KVM_VGIC_V3_DIST_SIZE, and KVM_VGIC_V3_REDIST_SIZE per vCPU (an RD_base and an
// SGI_base frame), from arch/arm64/include/uapi/asm/kvm.h. The redistributors follow the
// distributor contiguously, one per vCPU in vCPU index order.
inline constexpr GuestAddress kGicDistributor{0x0800'0000};
inline constexpr std::uint64_t kGicDistributorSize = 0x1'0000;
inline constexpr GuestAddress kGicRedistributors{kGicDistributor.raw() + kGicDistributorSize};
inline constexpr std::uint64_t kGicRedistributorSize = 0x2'0000;

// Devices sit above the redistributors of the largest VM, so no vCPU count can make the GIC
// overrun them and their addresses never depend on the vCPU count.
inline constexpr GuestAddress kUart0{
    align_up(kGicRedistributors.raw() + kMaxVcpus * kGicRedistributorSize, kMmioAlignment)};
inline constexpr GuestAddress kUart1{kUart0.raw() + kMmioAlignment};
inline constexpr std::uint64_t kUartSize = 0x1000; // an ns16550a decodes 8 bytes of it
inline constexpr GuestAddress kVirtioMmio{kUart1.raw() + kMmioAlignment};
inline constexpr std::uint64_t kVirtioMmioSize = 0x1000; // the transport's registers use 0x200
inline constexpr GuestAddress kMmioEnd{kVirtioMmio.raw() + kVirtioMmioSize};

// RAM starts at the first 1 GiB boundary from 1 GiB up that lies above every device: 1 GiB
// alignment lets the guest map it with the largest blocks, and the initrd's 1 GiB-aligned
// window (arm64 booting.rst) starts exactly at RAM.
inline constexpr std::uint64_t kRamAlignment = 0x4000'0000;
inline constexpr GuestAddress kRamBase{
    align_up(kMmioEnd.raw() > kRamAlignment ? kMmioEnd.raw() : kRamAlignment, kRamAlignment)};
static_assert(kMmioEnd <= kRamBase);

// RAM comes in 2 MiB steps, the arm64 kernel's placement granule.
inline constexpr std::uint64_t kRamGranule = 0x20'0000;
// booting.rst: the DTB is at most 2 MiB, 8-byte aligned, and is mapped with blocks of up to
// 2 MiB; it gets the last 2 MiB-aligned 2 MiB of RAM, which nothing else shares.
inline constexpr std::uint64_t kFdtMaxSize = 0x20'0000;
// booting.rst: an initrd must lie within a 1 GiB-aligned window of at most 32 GiB that also
// covers the kernel Image.
inline constexpr std::uint64_t kInitrdWindow = 32ull << 30;

// Interrupts. GIC INTIDs 0-15 are SGIs, 16-31 PPIs, SPI n is INTID n + 32. KVM_IRQ_LINE takes
// the INTID; an irqfd's GSI, under KVM's default routing, is the SPI number (vgic-irqfd.c adds
// VGIC_NR_PRIVATE_IRQS). The device tree's "interrupts" cells name SPIs by SPI number. SPI 0
// is left unused so that 0 never names a device.
inline constexpr std::uint32_t kSpiBase = 32;
inline constexpr std::uint32_t kUart0Spi = 1;
inline constexpr std::uint32_t kUart1Spi = 2;
inline constexpr std::uint32_t kVirtioMmioSpi = 3;
// KVM_DEV_ARM_VGIC_GRP_NR_IRQS counts every INTID, the 32 private ones included (a multiple of
// 32, at least 64): 96 SPIs.
inline constexpr std::uint32_t kGicIrqs = 128;
static_assert(kVirtioMmioSpi + kSpiBase < kGicIrqs);

constexpr std::uint32_t spi_intid(std::uint32_t spi) { return spi + kSpiBase; }

struct MemoryMap {
    std::uint32_t vcpus = 0;
    Region gic_distributor;
    Region gic_redistributors; // kGicRedistributorSize per vCPU
    Region uart0;
    Region uart1;
    Region virtio_mmio;
    Region ram;
    Region fdt; // the last 2 MiB of RAM

    // Every MMIO region and RAM (the FDT lies inside RAM), named, in ascending address order.
    std::vector<std::pair<std::string, Region>> regions() const;

    // booting.rst: the Image goes text_offset (from its header) above a 2 MiB-aligned base; the
    // kernel's header flags ask for that base to be as close to the start of RAM as possible,
    // since memory below it is outside the linear map, so it is RAM's start.
    GuestAddress kernel(std::uint64_t text_offset) const { return ram.base + text_offset; }

    // Where an initrd goes: the first 2 MiB boundary past the kernel's image_size (the header
    // field: what the kernel occupies, BSS included), which keeps it inside the 32 GiB window
    // that starts at RAM. Throws UsageError if kernel and initrd do not fit below the FDT.
    GuestAddress initrd(std::uint64_t text_offset, std::uint64_t image_size,
                        std::uint64_t initrd_size) const;
};

// The map of a VM with `vcpus` vCPUs and `ram_bytes` of RAM. Throws UsageError for 0 or more
// than kMaxVcpus vCPUs, or RAM that is not a whole number of 2 MiB steps or leaves nothing
// beside the FDT.
MemoryMap memory_map(std::uint32_t vcpus, std::uint64_t ram_bytes);

// The MPIDR_EL1 affinity KVM gives vCPU `vcpu` at reset, as the device tree's cpu reg holds
// it: reset_mpidr() in arch/arm64/kvm/sys_regs.c puts 16 vCPUs in Aff0 (the GICv3 SGI
// target-list limit), then 256 in Aff1 and 256 in Aff2. It also sets bit 31, which is RES1
// and not affinity: Linux rejects a cpu reg with bits outside MPIDR_HWID_BITMASK.
constexpr std::uint64_t default_mpidr(std::uint32_t vcpu) {
    return std::uint64_t(vcpu & 0xf) | std::uint64_t((vcpu >> 4) & 0xff) << 8 |
           std::uint64_t((vcpu >> 12) & 0xff) << 16;
}

// MPIDR_HWID_BITMASK (arch/arm64/include/asm/cputype.h): Aff3 in bits 39:32, Aff2-Aff0 in 23:0.
inline constexpr std::uint64_t kMpidrAffinityMask = 0xff'00ff'ffff;

} // namespace ktstr::aarch64
