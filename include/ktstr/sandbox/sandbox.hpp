#pragma once

#include "ktstr/base/arch.hpp"
#include "ktstr/base/error.hpp"

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

// The emulated sandbox failed, not the command: the L1 guest died, or its kernel reported
// trouble while the command failed. The only failure a test may be retried for.
class SandboxFailure : public Error {
  public:
    using Error::Error;
};
// The exit status for it, distinct from the command's and ktstr's own (sysexits' TEMPFAIL).
inline constexpr int kSandboxFailureStatus = 75;
// Set (to "emulated") in the command's environment inside the emulated sandbox.
inline constexpr const char* kInSandboxVariable = "KTSTR_IN_SANDBOX";
// The host's name, for results made inside the sandbox.
inline constexpr const char* kHostNameVariable = "KTSTR_HOST_NAME";

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
