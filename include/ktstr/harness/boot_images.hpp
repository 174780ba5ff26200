#pragma once

#include "ktstr/harness/guest_protocol.hpp"
#include "ktstr/harness/run_plan.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ktstr {

// What the guest needs from the host beyond the kernel: the initramfs (the cached base
// part for this kernel, then this run's command, libraries, includes and channel key), and
// the kernel command line.
std::vector<std::uint8_t> build_initramfs(const RunPlan& plan, const guest_protocol::Key& key);
std::string kernel_command_line(const RunPlan& plan);

} // namespace ktstr
