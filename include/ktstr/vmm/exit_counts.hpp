#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace ktstr {

// The VM exits that reached the VMM (exits KVM handles in the kernel are not seen here),
// by reason, and port I/O and MMIO exits by address. The guest picks the addresses, so at
// most kMaxAddresses of each kind are told apart; the rest are counted together.
struct ExitCounts {
    static constexpr std::size_t kMaxAddresses = 256;
    std::map<std::uint32_t, std::uint64_t> by_reason; // KVM_EXIT_*
    std::map<std::uint16_t, std::uint64_t> io_ports;
    std::map<std::uint64_t, std::uint64_t> mmio_addresses;
    std::uint64_t other_io = 0, other_mmio = 0; // beyond kMaxAddresses

    void add_exit(std::uint32_t reason) { ++by_reason[reason]; }
    void add_io(std::uint16_t port);
    void add_mmio(std::uint64_t address);
    void merge(const ExitCounts& other);
    std::uint64_t total() const;
    // "io 1234 (0x3f8 1200, 0x70 20), mmio 3 (0xd0000000 3), hlt 1"
    std::string summary() const;
};

} // namespace ktstr
