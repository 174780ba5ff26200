#pragma once

#include "ktstr/base/error.hpp"

#include <compare>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

namespace ktstr {

// An address in the guest's physical address space; never mixed up with a host pointer
// or a length.
class GuestAddress {
  public:
    constexpr GuestAddress() = default;
    constexpr explicit GuestAddress(std::uint64_t raw) : raw_(raw) {}
    constexpr std::uint64_t raw() const { return raw_; }
    constexpr auto operator<=>(const GuestAddress&) const = default;
    // Throws GuestMemoryError on wrap-around.
    GuestAddress operator+(std::uint64_t offset) const;
    // Distance from `base`; `base` must not be above this address.
    constexpr std::uint64_t offset_from(GuestAddress base) const { return raw_ - base.raw_; }

  private:
    std::uint64_t raw_ = 0;
};

// An access outside guest RAM: a guest bug or an attack, never a host crash.
class GuestMemoryError : public Error {
  public:
    using Error::Error;
};

// Guest RAM: anonymous host mappings, each at a guest physical address. Every access is
// bounds-checked against the regions, so a guest-supplied address or length can never
// reach outside them.
class GuestMemory {
  public:
    struct Region {
        GuestAddress start;
        std::uint64_t size;
        std::uint8_t* host;
        GuestAddress end() const { return GuestAddress(start.raw() + size); }
    };
    struct Layout {
        GuestAddress start;
        std::uint64_t size;
    };

    // Maps the regions (page-aligned, non-overlapping). With `hugepages`, each is backed by
    // 2 MiB pages and a shortage is reported with how many pages it needs.
    explicit GuestMemory(const std::vector<Layout>& layout, bool hugepages = false);
    GuestMemory(GuestMemory&&) noexcept;
    GuestMemory& operator=(GuestMemory&&) = delete;
    GuestMemory(const GuestMemory&) = delete;
    ~GuestMemory();

    const std::vector<Region>& regions() const { return regions_; }
    std::uint64_t total_size() const;

    // The host view of [address, address + length), which must lie inside one region.
    std::span<std::uint8_t> slice(GuestAddress address, std::uint64_t length) const;

    void write_bytes(GuestAddress address, std::span<const std::uint8_t> bytes) const;
    void read_bytes(GuestAddress address, std::span<std::uint8_t> out) const;

    template <typename T>
    requires std::is_trivially_copyable_v<T> T read(GuestAddress address)
    const {
        T value;
        std::memcpy(&value, slice(address, sizeof(T)).data(), sizeof(T));
        return value;
    }
    template <typename T>
    requires std::is_trivially_copyable_v<T>
    void write(GuestAddress address, const T& value) const {
        std::memcpy(slice(address, sizeof(T)).data(), &value, sizeof(T));
    }

  private:
    std::vector<Region> regions_;
};

// Guest RAM belonging to one NUMA node; a node may own several ranges, or none.
struct NumaMemoryRange {
    GuestAddress start;
    std::uint64_t size;
    std::uint32_t node;
};

// The regions of `memory` split evenly over `nodes` NUMA nodes in address order, in 2 MiB
// steps; the last node takes what does not divide evenly. Throws UsageError when a node
// would get nothing.
std::vector<NumaMemoryRange> split_memory_by_node(const GuestMemory& memory, std::uint32_t nodes);

} // namespace ktstr
