#include "ktstr/base/hang_watchdog.hpp"

#include <catch2/catch_test_macros.hpp>
#include <sys/wait.h>
#include <unistd.h>

using namespace ktstr;
using namespace std::chrono_literals;

namespace {

// Runs `body` in a child with stderr on a pipe; returns its exit status and what it wrote.
std::pair<int, std::string> in_child(void (*body)()) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::dup2(fds[1], STDERR_FILENO);
        body();
        ::_exit(0);
    }
    ::close(fds[1]);
    std::string text;
    char buffer[4096];
    for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;)
        text.append(buffer, std::size_t(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
}

} // namespace

TEST_CASE("a watchdog that outlives its limit says what each thread does and ends the process") {
    auto [status, text] = in_child([] {
        HangWatchdog watchdog(50ms, "the nap", 7);
        ::sleep(10);
    });
    CHECK(status == 7);
    CHECK(text.find("ktstr: the nap did not end within 0.05 s") != std::string::npos);
    // Two threads: the sleeping one and the watchdog itself.
    CHECK(text.find("state S, waiting in") != std::string::npos);
    CHECK(text.find("nanosleep") != std::string::npos);
}

TEST_CASE("a watchdog destroyed in time does nothing") {
    auto [status, text] = in_child([] { HangWatchdog watchdog(10s, "a quick job", 7); });
    CHECK(status == 0);
    CHECK(text.empty());
}
