#pragma once

#include "ktstr/harness/run.hpp"
#include "ktstr/kernel/kernel_cache.hpp"
#include "ktstr/scheduler/scheduler_cache.hpp"
#include "ktstr/vmm/topology.hpp"

#include <chrono>
#include <optional>

namespace ktstr {

// A run's options, checked: everything a boot needs to know, with no bad value left.
struct RunPlan {
    RunOptions options;
    Topology topology = Topology(1, 1, 1, 1);
    std::uint64_t memory_bytes = 0;
    std::optional<std::chrono::milliseconds> timeout;
    KernelChoice kernel;
    std::optional<SchedulerChoice> scheduler; // none: the kernel's own (EEVDF)
    std::chrono::milliseconds attach_timeout{30'000};
};

// Checks every option (topology, memory, timeout, kernel, command) and throws UsageError
// naming the first bad one; fetches a kernel when none is cached and none is named.
RunPlan make_run_plan(const RunOptions& options);

} // namespace ktstr
