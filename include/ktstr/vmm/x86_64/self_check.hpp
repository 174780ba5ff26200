#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ktstr {

// What a vCPU did, one KVM exit at a time.
struct ObservedExit {
    std::uint32_t reason = 0; // KVM_EXIT_*
    std::uint16_t port = 0;   // for KVM_EXIT_IO
    bool port_write = false;  // for KVM_EXIT_IO
    std::vector<std::uint8_t> data;
};

struct SelfCheckReport {
    std::uint8_t expected_byte = 0;
    std::uint16_t expected_port = 0;
    std::vector<ObservedExit> exits;
    // The guest wrote exactly expected_byte to expected_port, then halted.
    bool passed() const;
    std::string summary() const;
};

// Boots the smallest possible guest: one memory slot, one vCPU, a few instructions that
// write a byte to an I/O port and halt. Proves KVM works end to end on this host.
SelfCheckReport run_kvm_self_check();

// Whether this host's KVM runs 64-bit guest code at full speed, VEX-encoded instructions
// (BMI2, used by the kernel's decompressor) included. Some nested setups expose a /dev/kvm
// that cannot: the guest's first such instruction ends in a KVM emulation error. On
// failure `why` says what happened.
bool kvm_runs_64bit_guests(std::string& why);

} // namespace ktstr
