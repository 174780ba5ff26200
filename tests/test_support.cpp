#include "test_support.hpp"

#include "ktstr/base/files.hpp"

#include <cstdio>
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

CommandResult run_ktstr(const std::string& args) {
    CommandResult result = run_shell(std::string(KTSTR_BINARY) + " " + args);
    if (result.exit_code == 75) {
        std::fprintf(stderr, "ktstr %s: a failure of the emulated sandbox:\n%s\n", args.c_str(),
                     result.err.c_str());
        std::exit(75);
    }
    return result;
}

} // namespace ktstr::test
