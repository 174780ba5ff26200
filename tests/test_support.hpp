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

} // namespace ktstr::test
