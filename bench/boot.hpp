#pragma once

#include "ktstr/harness/run.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ktstr {

// The guest command every timed boot runs: it prints the guest's uptime when it starts,
// then `output_bytes` NULs and the uptime again, then the kernel log lines that mark the
// boot's stages, which the host puts on its own clock.
std::vector<std::string> boot_probe_command(std::uint64_t output_bytes);

// One boot by ktstr, timed from inside (run by `boot` in a child process, so that process
// start is real): prints its host stage times as steady-clock nanoseconds on stderr.
int boot_once(const RunOptions& options);

// `runs` boots of `options` by ktstr (in children given `child_args`), each followed by the
// same boot images under QEMU microvm when `with_qemu`; prints every boot, then the median
// time of each stage, host and guest, and the rate of the command's output.
int bench_boot(const RunOptions& options, const std::vector<std::string>& child_args, unsigned runs,
               bool with_qemu, std::uint64_t output_bytes);

} // namespace ktstr
