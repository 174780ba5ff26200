#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace ktstr {

// The VM exits that reached the VMM (exits KVM handles in the kernel are not seen here),
// by reason, and port I/O and MMIO exits by address.
struct ExitCounts {
    std::map<std::uint32_t, std::uint64_t> by_reason; // KVM_EXIT_*
    std::map<std::uint16_t, std::uint64_t> io_ports;
    std::map<std::uint64_t, std::uint64_t> mmio_addresses;

    void merge(const ExitCounts& other);
    std::uint64_t total() const;
    // "io 1234 (0x3f8 1200, 0x70 20), mmio 3 (0xd0000000 3), hlt 1"
    std::string summary() const;
};

} // namespace ktstr
