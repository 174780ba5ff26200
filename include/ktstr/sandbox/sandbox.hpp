#pragma once

#include "ktstr/base/arch.hpp"

#include <optional>
#include <string>
#include <vector>

namespace ktstr {

struct SandboxOptions {
    Arch arch = Arch::x86_64;
    // The L1 guest's kernel (path or cached version); the newest cached one by default.
    std::optional<std::string> kernel;
    // Use the emulated L1 guest even though this host has /dev/kvm.
    bool force_emulation = false;
    std::vector<std::string> command;
};

// Runs `command` where /dev/kvm exists: directly on a host that has it, otherwise inside a
// QEMU TCG guest ("L1") that emulates AMD SVM with nested paging and has loaded KVM. The
// command sees the host's files at the same paths (its working directory and the ktstr
// cache writable), its output streams back live, and its exit status is returned.
int run_in_sandbox(const SandboxOptions& options);

// Whether /dev/kvm here can run real guests (on x86-64: 64-bit code with VEX-encoded
// instructions, which some nested setups cannot).
bool host_kvm_runs_guests();

// Quotes `word` for a POSIX shell.
std::string shell_quote(const std::string& word);

} // namespace ktstr
