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

// A run that ktstr classified as spoiled by the emulated sandbox (status 75) is tried
// again here, in the same sandbox, so that one spoiled boot does not repeat the test's
// other boots; each such try is recorded like the outer retries
// (tests/retry_sandbox_failures.sh). When the L1 itself dies, that outer retry takes over.
void unless_spoiled_by_sandbox(int ktstr_status, const std::string& detail) {
    if (ktstr_status != 75)
        return;
    std::fprintf(stderr, "ktstr: a failure of the emulated sandbox:\n%s\n", detail.c_str());
    std::exit(75);
}

int status_in(const std::string& output) {
    auto at = output.find("status=");
    if (at == std::string::npos)
        return -1;
    try {
        return std::stoi(output.substr(at + 7));
    } catch (const std::exception&) {
        return -1;
    }
}

CommandResult run_ktstr(const std::string& args) {
    constexpr int kTries = 3;
    for (int attempt = 1;; ++attempt) {
        CommandResult result = run_shell(std::string(KTSTR_BINARY) + " " + args);
        if (result.exit_code != 75)
            return result;
        std::fprintf(stderr, "ktstr %s: a failure of the emulated sandbox (try %d of %d):\n%s\n",
                     args.c_str(), attempt, kTries, result.err.c_str());
        const char* log = std::getenv("KTSTR_SANDBOX_FAILURE_LOG");
        const char* test = std::getenv("KTSTR_TEST_NAME");
        if (log && *log) {
            std::FILE* file = std::fopen(log, "a");
            if (!file)
                std::fprintf(stderr, "cannot record it in %s\n", log);
            else {
                std::fprintf(file, "%s run-%d\n", test ? test : "unnamed", attempt);
                std::fclose(file);
            }
        }
        if (attempt == kTries)
            std::exit(75);
    }
}

} // namespace ktstr::test
