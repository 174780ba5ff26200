// The scenario agent's worker measurements, on the host: a gap between ticks is split into
// the kernel's off-CPU time (the scheduler's doing) and the time the kernel counted as the
// worker running (a vCPU its host stopped, here a loop that does not tick).
#include "agent/worker.hpp"

#include <catch2/catch_test_macros.hpp>
#include <ctime>
#include <memory>
#include <thread>

using namespace ktstr::agent;

namespace {

std::uint64_t cpu_ns() {
    timespec now{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return std::uint64_t(now.tv_sec) * 1'000'000'000 + std::uint64_t(now.tv_nsec);
}

struct Worker {
    WorkerSpec spec;
    std::unique_ptr<SharedState> shared = std::make_unique<SharedState>();
    WorkerContext context{spec, *shared, nullptr};
};

} // namespace

TEST_CASE("a gap the kernel counted as the worker's CPU time is a stall, not a gap", "[agent]") {
    Worker w;
    auto wall_start = WorkerContext::now_ns();
    w.context.tick();
    // 60 ms of CPU time without a tick: the kernel counts it all as the worker running.
    for (auto start = cpu_ns(); cpu_ns() - start < 60'000'000;) {
    }
    w.context.tick();
    auto wall = WorkerContext::now_ns() - wall_start; // the gap, and a little more
    auto report = w.context.report("stopped");
    std::uint64_t gap = report["max_gap_ns"], stall = report["max_stall_ns"];
    CHECK(stall >= 45'000'000); // at most a 10 ms sample period is not told apart
    // A loaded machine adds off-CPU time (a gap); the gap may also be the short one from
    // the worker's start to its first tick.
    CHECK(gap + stall <= wall + 1'000'000);
}

TEST_CASE("a gap off the CPU without blocking on purpose is the scheduler's", "[agent]") {
    Worker w;
    w.context.tick();
    // Off the CPU (a sleep stands in for a scheduler that did not run the worker).
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    w.context.tick();
    auto report = w.context.report("stopped");
    std::uint64_t gap = report["max_gap_ns"], stall = report["max_stall_ns"];
    CHECK(gap >= 55'000'000);
    CHECK(stall <= 12'000'000);
    // Blocking on purpose is no gap at all.
    Worker blocked;
    blocked.context.tick();
    blocked.context.will_block();
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    blocked.context.tick();
    CHECK(std::uint64_t(blocked.context.report("stopped")["max_gap_ns"]) < 55'000'000);
}

TEST_CASE("a CPU seen while the epoch changed is held against no step", "[agent]") {
    CHECK(epoch_of_sighting(2, 2) == 2); // within a step
    CHECK(epoch_of_sighting(3, 3) == 3); // within the operations
    CHECK(epoch_of_sighting(2, 3) == 3); // the operations began
    CHECK(epoch_of_sighting(3, 4) == 3); // they ended
    CHECK(epoch_of_sighting(2, 4) == 3); // all of them in between
}
