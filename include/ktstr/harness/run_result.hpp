#pragma once

#include "ktstr/harness/run_plan.hpp"
#include "ktstr/harness/scheduler_fate.hpp"
#include "ktstr/harness/session.hpp"
#include "ktstr/harness/verdict.hpp"

#include <nlohmann/json.hpp>

namespace ktstr {

// The schema the run result follows (schemas/run-result.schema.json); a change that
// breaks readers gets a new number.
inline constexpr const char* kRunResultSchema = "ktstr-run-result/1";

// A run as data: what ran where (kernel, topology, scheduler with its sha256), what
// happened (the scheduler's transitions, kernel log lines, events, exit), timings, and the
// verdict.
nlohmann::json run_result(const RunPlan& plan, const SessionResult& result,
                          const std::optional<SchedulerFate>& fate, const Verdict& verdict);

} // namespace ktstr
