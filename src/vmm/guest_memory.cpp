#include "ktstr/vmm/guest_memory.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <sys/mman.h>

namespace ktstr {

namespace {
constexpr std::uint64_t kPageSize = 4096;
constexpr std::uint64_t kHugePageSize = 2ull << 20;
} // namespace

GuestAddress GuestAddress::operator+(std::uint64_t offset) const {
    if (offset > UINT64_MAX - raw_)
        throw GuestMemoryError(
            fmt::format("guest address {:#x} + {:#x} wraps around", raw_, offset));
    return GuestAddress(raw_ + offset);
}

GuestMemory::GuestMemory(const std::vector<Layout>& layout, bool hugepages) {
    std::uint64_t align = hugepages ? kHugePageSize : kPageSize;
    for (const auto& [start, size] : layout) {
        if (size == 0 || start.raw() % align != 0 || size % align != 0)
            throw Error(fmt::format("guest memory region {:#x}+{:#x} is not {}-aligned",
                                    start.raw(), size, align));
        for (const auto& region : regions_)
            if (start < region.end() && region.start < GuestAddress(start.raw() + size))
                throw Error(fmt::format("guest memory regions overlap at {:#x}", start.raw()));
        int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (hugepages ? MAP_HUGETLB : 0);
        void* host = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, -1, 0);
        if (host == MAP_FAILED) {
            if (hugepages)
                throw Error(fmt::format("cannot back {} MiB of guest memory with 2 MiB huge pages: "
                                        "{} free pages needed (see /proc/sys/vm/nr_hugepages)",
                                        size >> 20, size / kHugePageSize));
            throw_errno(fmt::format("cannot map {} MiB of guest memory", size >> 20));
        }
        regions_.push_back({start, size, static_cast<std::uint8_t*>(host)});
    }
}

GuestMemory::GuestMemory(GuestMemory&& other) noexcept : regions_(std::move(other.regions_)) {
    other.regions_.clear();
}

GuestMemory::~GuestMemory() {
    for (const auto& region : regions_)
        ::munmap(region.host, region.size);
}

std::uint64_t GuestMemory::total_size() const {
    std::uint64_t total = 0;
    for (const auto& region : regions_)
        total += region.size;
    return total;
}

std::span<std::uint8_t> GuestMemory::slice(GuestAddress address, std::uint64_t length) const {
    for (const auto& region : regions_) {
        if (address < region.start || address >= region.end())
            continue;
        std::uint64_t offset = address.offset_from(region.start);
        if (length > region.size - offset)
            break;
        return {region.host + offset, length};
    }
    throw GuestMemoryError(
        fmt::format("guest access {:#x}+{:#x} is outside guest memory", address.raw(), length));
}

void GuestMemory::write_bytes(GuestAddress address, std::span<const std::uint8_t> bytes) const {
    auto target = slice(address, bytes.size());
    std::memcpy(target.data(), bytes.data(), bytes.size());
}

void GuestMemory::read_bytes(GuestAddress address, std::span<std::uint8_t> out) const {
    auto source = slice(address, out.size());
    std::memcpy(out.data(), source.data(), out.size());
}

std::vector<NumaMemoryRange> split_memory_by_node(const GuestMemory& memory, std::uint32_t nodes) {
    constexpr std::uint64_t kStep = 2ull << 20;
    std::uint64_t share = memory.total_size() / nodes / kStep * kStep;
    if (share == 0)
        throw UsageError(fmt::format("{} MiB of memory cannot be split over {} NUMA nodes",
                                     memory.total_size() >> 20, nodes));
    std::vector<NumaMemoryRange> ranges;
    std::uint32_t node = 0;
    std::uint64_t left_in_node = share;
    for (const auto& region : memory.regions()) {
        GuestAddress at = region.start;
        std::uint64_t left = region.size;
        while (left > 0) {
            bool last_node = node + 1 == nodes;
            std::uint64_t size = last_node ? left : std::min(left, left_in_node);
            ranges.push_back({at, size, node});
            at = at + size;
            left -= size;
            left_in_node -= std::min(left_in_node, size);
            if (left_in_node == 0 && !last_node) {
                ++node;
                left_in_node = share;
            }
        }
    }
    return ranges;
}

} // namespace ktstr
