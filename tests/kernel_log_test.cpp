#include "ktstr/base/fd.hpp"
#include "ktstr/base/kernel_log.hpp"

#include <catch2/catch_test_macros.hpp>
#include <fcntl.h>
#include <string>
#include <unistd.h>

using namespace ktstr;

TEST_CASE("kernel_trouble_line finds the first line that says the kernel is unwell",
          "[kernel_log]") {
    CHECK(kernel_trouble_line("").empty());
    CHECK(kernel_trouble_line("kvm: loaded\nvirtio: ready\nblocked for less\n").empty());
    CHECK(kernel_trouble_line("a\n[  126.1] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:"
                              "\nb\n") ==
          "[  126.1] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:");
    CHECK(kernel_trouble_line("watchdog: BUG: soft lockup - CPU#1 stuck for 22s!") ==
          "watchdog: BUG: soft lockup - CPU#1 stuck for 22s!");
    CHECK(kernel_trouble_line("INFO: task kworker:1 blocked for more than 120 seconds.\nx") ==
          "INFO: task kworker:1 blocked for more than 120 seconds.");
}

// Needs a writable /dev/kmsg (root); the messages say what they are to anyone reading dmesg.
TEST_CASE("KernelLogWatch reports what the kernel logged after it began, once", "[kernel_log]") {
    UniqueFd kmsg(::open("/dev/kmsg", O_WRONLY | O_CLOEXEC));
    if (!kmsg || !KernelLogWatch().readable())
        SKIP("/dev/kmsg is not readable and writable here");
    auto log = [&](std::string line) {
        line = "<6>ktstr unit test, not a real problem: " + line + "\n";
        REQUIRE(::write(kmsg.get(), line.data(), line.size()) == ssize_t(line.size()));
    };
    log("Oops: logged before the watch began");
    KernelLogWatch watch;
    CHECK(watch.trouble().empty());
    log("all is well");
    CHECK(watch.trouble().empty());
    log("rcu_sched detected stalls");
    CHECK(watch.trouble() == "ktstr unit test, not a real problem: rcu_sched detected stalls");
    CHECK(watch.trouble().empty());
}
