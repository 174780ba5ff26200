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

} // namespace ktstr::test
