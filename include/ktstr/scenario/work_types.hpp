#pragma once

// The work types a scenario's workers can run: what each stresses, and what its numbers
// mean to the checks. The guest agent implements them (guest/agent/work/); the host
// validates scenarios against this table and knows from it which checks apply.

#include <array>
#include <string_view>

namespace ktstr {

struct WorkTypeInfo {
    std::string_view name;
    // It wants the CPU all the time, on any CPU its plan allows: its off-CPU time is the
    // scheduler's doing, so the fairness spread and weight checks apply to it. (A spinner
    // that pins itself is not: its share is its pinning's.)
    bool cpu_bound;
    // It records wake-to-run latencies.
    bool wakes;
    std::string_view stresses;
};

inline constexpr std::array kWorkTypes = {
    WorkTypeInfo{"spin", true, false, "pure CPU: a fixed loop, one unit per chunk"},
    WorkTypeInfo{"yield_heavy", false, false, "sched_yield() after every short chunk"},
    WorkTypeInfo{"spin_yield", true, false,
                 "CPU chunks with a yield every few (param yield_every)"},
    WorkTypeInfo{"sync_io", false, false, "write and fdatasync a small file (param bytes)"},
    WorkTypeInfo{"bursty", false, true,
                 "a CPU burst (burst_ms) then a sleep (sleep_ms); oversleep"},
    WorkTypeInfo{"pipe_pingpong", false, true, "pairs bouncing a message over FIFOs"},
    WorkTypeInfo{"futex_pingpong", false, true, "pairs handing a turn back and forth by futex"},
    WorkTypeInfo{"futex_fanout", false, true, "one waker wakes all the others every period_us"},
    WorkTypeInfo{"fanout_compute", false, true,
                 "fan-out, each woken worker computes, the waker waits for all"},
    WorkTypeInfo{"cache_pressure", true, false, "walks a buffer bigger than a cache (size_kb)"},
    WorkTypeInfo{"cache_yield", false, false, "cache walks with a yield after each chunk"},
    WorkTypeInfo{"cache_pipe", false, true, "cache walks between FIFO ping-pongs"},
    WorkTypeInfo{"sequence", false, false, "cycles through phases: spin, sleep, yield, io"},
    WorkTypeInfo{"fork_exit", false, false, "forks children that exit at once"},
    WorkTypeInfo{"nice_sweep", false, false, "CPU work while changing its own nice level"},
    WorkTypeInfo{"affinity_churn", false, false, "CPU work while changing its own affinity"},
    WorkTypeInfo{"policy_churn", false, false, "CPU work while cycling SCHED_OTHER, BATCH, IDLE"},
    WorkTypeInfo{"pagefault_churn", false, false, "maps, touches and unmaps memory"},
    WorkTypeInfo{"mutex_contention", false, true, "workers contending for one futex mutex"},
    WorkTypeInfo{"wake_chain", false, true, "a token passed around a ring: A wakes B wakes C"},
    WorkTypeInfo{"thundering_herd", false, true,
                 "all wait on one futex, one wake-all per period_us"},
    WorkTypeInfo{"timer_latency", false, true, "periodic sleeps (period_us); oversleep measured"},
    WorkTypeInfo{"smt_sibling_spin", false, false, "spinners pinned to SMT siblings (param pairs)"},
    WorkTypeInfo{"idle_churn", false, true, "very short sleeps (sleep_us), on every CPU at once"},
    WorkTypeInfo{"cgroup_churn", false, false, "CPU work while moving itself between cgroups"},
    WorkTypeInfo{"priority_inversion", false, true,
                 "a nice-19 lock holder, a high-priority waiter, busy middles"},
    WorkTypeInfo{"rt_starvation", false, false,
                 "SCHED_FIFO hogs (param hogs) beside normal workers"},
    WorkTypeInfo{"producer_consumer", false, true,
                 "producers fill a ring faster than consumers drain it"},
    WorkTypeInfo{"schbench", false, true,
                 "schbench's model: message workers wake workers, which think and reply"},
    WorkTypeInfo{"signal_pingpong", false, true, "pairs bouncing a signal"},
    WorkTypeInfo{"custom", false, false, "runs a command (param argv) again and again"},
};

inline const WorkTypeInfo* work_type_info(std::string_view name) {
    for (const auto& info : kWorkTypes)
        if (info.name == name)
            return &info;
    return nullptr;
}

} // namespace ktstr
