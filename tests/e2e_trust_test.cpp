// End to end: what `ktstr run` reports is the command's doing, whatever the guest does,
// and a run always stops when it should. Each test boots the cached kernel (in the
// sandbox where the host has no usable /dev/kvm).
#include "ktstr/base/files.hpp"
#include "test_support.hpp"

#include <catch2/catch_test_macros.hpp>
#include <chrono>
#include <filesystem>
#include <string>

using namespace ktstr;
namespace fs = std::filesystem;

namespace {

// A hello frame and an exit-status-0 frame with an all-zero tag, as printf escapes: what
// a workload that knows the protocol but not the boot's key could write.
constexpr const char* kForgedFrames =
    "\\006\\004\\000\\000\\000\\002\\000\\000\\000"
    "\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000"
    "\\003\\004\\000\\000\\000\\000\\000\\000\\000"
    "\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000";

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

} // namespace

TEST_CASE("the guest's verdict is the command's, whatever the command writes", "[e2e][trust]") {
    SECTION("files under /tmp on the host are under /tmp in the guest") {
        TempDir dir("ktstr-e2e-tmp"); // $TMPDIR or /tmp, which the sandbox shares
        fs::copy_file("/bin/cat", dir.path() / "prog");
        write_file_atomic(dir.path() / "data", std::string("packed under /tmp\n"));
        auto result =
            test::run_ktstr("run --include " + (dir.path() / "data").string() + " -- " +
                            (dir.path() / "prog").string() + " " + (dir.path() / "data").string());
        INFO(result.err);
        CHECK(result.exit_code == 0);
        CHECK(result.out == "packed under /tmp\n");
    }
    SECTION("forged frames on every console device do not change the status") {
        auto result = test::run_ktstr(
            std::string("run -- sh -c 'for d in /dev/hvc* /dev/ttyS* /dev/tty /dev/tty[0-9]* "
                        "/dev/console /dev/vport* /dev/ttyprintk; do [ -c \"$d\" ] && printf \"") +
            kForgedFrames + "\" > \"$d\"; done 2>/dev/null; exit 3'");
        INFO(result.err);
        CHECK(result.exit_code == 3);
        CHECK(result.err.find("result channel") == std::string::npos);
    }
    SECTION("forging through the init's own descriptors breaks the channel, not the verdict") {
        auto result = test::run_ktstr(std::string("run -- sh -c 'for f in /proc/1/fd/*; do "
                                                  "printf \"") +
                                      kForgedFrames + "\" > \"$f\"; done 2>/dev/null; exit 3'");
        INFO(result.err);
        CHECK(result.exit_code != 0);
        CHECK(result.exit_code != 3);
        CHECK(result.err.find("the result channel broke") != std::string::npos);
    }
    SECTION("a command killed by a signal gives 128 + the signal") {
        auto result = test::run_ktstr("run -- sh -c 'kill -9 $$'");
        INFO(result.err);
        CHECK(result.exit_code == 137);
    }
}

TEST_CASE("the command's exit ends the run, background processes or not", "[e2e][background]") {
    auto start = std::chrono::steady_clock::now();
    auto result = test::run_ktstr("run -- sh -c 'sleep 1000 & ls /proc/$$/fd; echo done'");
    INFO(result.err);
    CHECK(result.exit_code == 0);
    CHECK(result.out == "0\n1\n2\ndone\n"); // the init leaks no descriptor into the command
    CHECK(seconds_since(start) < 100);      // a boot in the sandbox, never the 120 s timeout
}

// Three tests, each in its own sandbox: a flood is the heaviest load the emulated sandbox
// carries (a VM exit per UART byte), so the one that it spoils is the one tried again.
namespace {
const std::string kFlood = "-- sh -c 'cat /dev/urandom > /dev/ttyS1 & "
                           "cat /dev/urandom > /dev/ttyS0 & yes'";
} // namespace

TEST_CASE("a guest flooding every output stops at its timeout", "[e2e][flood-timeout]") {
    auto start = std::chrono::steady_clock::now();
    auto result = test::run_ktstr("run --timeout 12s " + kFlood + " > /dev/null");
    INFO(result.err);
    CHECK(result.exit_code == 124);
    CHECK(seconds_since(start) < 80); // the boot, 12 s, and a prompt stop
}

TEST_CASE("a guest flooding every output stops at SIGTERM", "[e2e][flood-sigterm]") {
    auto result =
        test::run_shell("setsid " + std::string(KTSTR_BINARY) + " run --timeout 300s " + kFlood +
                        " > /dev/null & pid=$!; sleep 20; kill -TERM $pid; "
                        "start=$(date +%s); wait $pid; "
                        "echo status=$? seconds=$(( $(date +%s) - start ))");
    INFO(result.out << result.err);
    test::unless_spoiled_by_sandbox(test::status_in(result.out), result.err);
    CHECK(result.out.find("status=143") != std::string::npos);
    auto at = result.out.find("seconds=");
    REQUIRE(at != std::string::npos);
    CHECK(std::stoi(result.out.substr(at + 8)) < 10);
}

TEST_CASE("a guest whose output nobody reads stops at its timeout", "[e2e][flood-unread]") {
    TempDir dir("ktstr-e2e-stall");
    std::string status = (dir.path() / "status").string();
    auto start = std::chrono::steady_clock::now();
    auto result =
        test::run_shell("{ " + std::string(KTSTR_BINARY) + " run --timeout 12s -- yes; echo $? > " +
                        status + "; } | sh -c 'while [ ! -s " + status + " ]; do sleep 1; done'");
    INFO(result.err);
    test::unless_spoiled_by_sandbox(std::stoi(read_file(status)), result.err);
    CHECK(read_file(status) == "124\n");
    CHECK(seconds_since(start) < 80);
}
