#pragma once

#include "ktstr/harness/run.hpp"

#include <string>
#include <vector>

namespace ktstr {

// The guest command every timed boot runs: it prints the guest's uptime when it starts and
// the kernel log lines that mark the boot's stages, which the host puts on its own clock.
std::vector<std::string> boot_probe_command();

// One boot by ktstr, timed from inside (run by `boot` in a child process, so that process
// start is real): prints its host stage times as steady-clock nanoseconds on stderr.
int boot_once(const RunOptions& options);

// `runs` boots of `options` by ktstr (in children given `child_args`), each followed by the
// same boot images under QEMU microvm when `with_qemu`; prints every boot, then the median
// time of each stage, host and guest.
int bench_boot(const RunOptions& options, const std::vector<std::string>& child_args, unsigned runs,
               bool with_qemu);

} // namespace ktstr
