#pragma once

// One worker of a scenario: a process the agent forks, in its cgroup, with its policy, nice
// and affinity, running one work type until the agent stops it, and measuring what it
// experienced on the way. Work types see only WorkerContext.

#include "ktstr/scenario/latency_histogram.hpp"

#include <atomic>
#include <bitset>
#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ktstr::agent {

inline constexpr std::size_t kMaxCpus = 512;
inline constexpr std::size_t kMaxWorkers = 4096;
inline constexpr std::size_t kGroupAreaSize = 1 << 20;

// Memory all processes of the run share (mapped before any worker is forked).
struct SharedState {
    // Odd while the agent changes cgroups or affinities between steps; the CPUs a worker
    // is seen on then are not held against any cpuset.
    std::atomic<std::uint32_t> epoch{0};
    std::atomic<std::uint32_t> stop[kMaxWorkers];
};

// The epoch a CPU seen between two reads of the epoch counts for. A worker can be
// preempted, and moved to another cpuset, between asking for its CPU and reading the
// epoch (the move's migration preempts it there by nature); seen across a change, the
// CPU counts for the odd epoch in between, which holds it against no cpuset.
constexpr std::uint32_t epoch_of_sighting(std::uint32_t before, std::uint32_t after) {
    return before == after ? before : (before | 1);
}

// What the agent tells a worker about itself.
struct WorkerSpec {
    std::string group;
    std::string work;
    nlohmann::json params;
    std::string cgroup;
    int index = 0;      // within its group
    int group_size = 1; // workers in the group
    int worker_id = 0;  // across the run: its slot in SharedState::stop
    std::string comm;
    std::vector<int> cpus_in_cgroup;       // the cpuset it starts in (all CPUs without one)
    std::vector<std::string> cgroup_paths; // every cgroup of the run (for cgroup churn)
};

class WorkerContext {
  public:
    WorkerContext(const WorkerSpec& spec, SharedState& shared, void* group_area);

    const WorkerSpec& spec() const { return spec_; }
    const nlohmann::json& params() const { return spec_.params; }
    template <typename T>
    T param(const char* name, T fallback) const {
        return spec_.params.value(name, fallback);
    }
    // Memory shared by the workers of this group (zeroed at the start, kGroupAreaSize).
    void* group_area() const { return group_area_; }
    bool stopping() const;

    // One unit of work done; also samples where and when the worker runs.
    void unit(std::uint64_t count = 1);
    // A sample without a unit, in long loops.
    void tick();
    // The worker is about to block on purpose (sleep, wait): the time until the next tick
    // is not a scheduling gap.
    void will_block() { blocking_ = true; }
    // A wake-up that took `ns` from the waker's signal (or the timer's due time) to running.
    void wake_latency(std::uint64_t ns) { wake_.add(ns); }

    static std::uint64_t now_ns();
    // Spins for `ns` of wall time, ticking; returns early when stopping.
    void spin_for(std::uint64_t ns);
    // A fixed amount of CPU work (`iterations` of a short loop), ticking on the way: the
    // same work whatever share of the CPU the worker gets.
    void burn(std::uint64_t iterations);

    // The final report ({"type": "worker", ...}).
    nlohmann::json report(const std::string& ended) const;

  private:
    const WorkerSpec& spec_;
    SharedState& shared_;
    void* group_area_;
    std::uint64_t units_ = 0;
    std::uint64_t started_ns_, last_tick_ns_;
    std::uint64_t cpu_start_ns_;
    // The longest gap between ticks that the kernel did not count as this worker's CPU
    // time (the scheduler's doing), and the longest it did count (the worker was current
    // on a CPU that did not run it: its vCPU stopped by the host, or interrupts).
    std::uint64_t max_gap_ns_ = 0, max_gap_at_ns_ = 0, max_stall_ns_ = 0;
    int max_gap_cpu_ = -1, last_cpu_ = -1;
    // The process's CPU time at a recent tick (every 10 ms at most), from which a gap's CPU
    // time is bounded without a system call on every tick.
    std::uint64_t sample_wall_ns_ = 0, sample_cpu_ns_ = 0;
    std::uint64_t migrations_ = 0;
    bool blocking_ = false;
    std::map<std::uint32_t, std::bitset<kMaxCpus>> cpus_; // by epoch
    LatencyHistogram wake_;
    std::uint64_t run_delay_start_ = 0, run_count_start_ = 0;
};

// A work type: what one worker does until ctx.stopping().
using WorkFunction = void (*)(WorkerContext& ctx);
struct WorkType {
    const char* name;
    WorkFunction run;
};
// Every work type (work/*.cpp); null when `name` is none of them.
const WorkType* find_work_type(const std::string& name);

} // namespace ktstr::agent
