#include "test_support.hpp"

#include "ktstr/base/files.hpp"

#include <cstdlib>
#include <sys/wait.h>

namespace ktstr::test {

CommandResult run_shell(const std::string& command) {
    TempDir dir("ktstr-test");
    auto out = dir.path() / "out";
    auto err = dir.path() / "err";
    int status = std::system(
        ("(" + command + ") >'" + out.string() + "' 2>'" + err.string() + "' </dev/null").c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(out), read_file(err)};
}

} // namespace ktstr::test
