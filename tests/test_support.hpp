#pragma once

#include <string>

namespace ktstr::test {

struct CommandResult {
    int exit_code = -1;
    std::string out;
    std::string err;
};

// Runs `command` through /bin/sh, capturing its output streams and exit code.
CommandResult run_shell(const std::string& command);

// Runs `ktstr ARGS` (the build's binary) like run_shell. If ktstr says the emulated
// sandbox failed (status 75), this test cannot be judged: the process exits with 75 at
// once, which the test command treats as a sandbox failure (and may retry).
CommandResult run_ktstr(const std::string& args);

// For a test that runs ktstr inside a script of its own (signals, pipes): when that run
// ended with status 75, ktstr classified it as spoiled by the emulated sandbox, and the
// test cannot be judged: this exits with 75, which the test command treats as a sandbox
// failure. `detail` is what the run printed.
void unless_spoiled_by_sandbox(int ktstr_status, const std::string& detail);
// N from the first "status=N" a test's script printed; -1 when there is none.
int status_in(const std::string& output);

} // namespace ktstr::test
