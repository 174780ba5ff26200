#pragma once

#include "ktstr/harness/run.hpp"

#include <optional>
#include <string>
#include <vector>

namespace ktstr {

struct TestOptions {
    std::vector<std::string> scenarios;  // canned names or files
    RunOptions run;                      // kernel, topology, memory, scheduler...
    std::optional<std::string> duration; // instead of each scenario's own
    std::optional<std::string> json;     // a file (one scenario) or a directory (several)
    std::optional<std::string> junit;
    std::vector<std::string> settings; // NAME=VALUE, over the scenarios' own
    unsigned seed = 1;
    // With a scheduler: run each scenario under the kernel's own scheduler first, in the
    // same place, and judge latencies against that run.
    bool baseline = false;
};

// Checks every scenario and option (throws UsageError before any boot), then boots one VM
// per scenario, runs it, judges it, and prints a report each. Returns 0 when all passed, 1
// when a check failed, or the run's verdict status (the scheduler's, a panic, ...).
int run_tests(const TestOptions& options);

// Checks every scenario and option as run_tests would, without booting; throws UsageError.
void run_tests_dry(const TestOptions& options);

// Judges a stored test result again with other settings (`ktstr check`).
// With `json_out`, writes the result judged anew there.
int check_result(const std::string& path, const std::vector<std::string>& settings,
                 const std::optional<std::string>& json_out = std::nullopt);

} // namespace ktstr
