#pragma once

// Checks judge a scenario run from the guest's raw reports, on the host, so that a stored
// result can be judged again with other settings (`ktstr check`). Each failure names the
// worker, cgroup and CPU it is about and the number against its limit.

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace ktstr {

// The raw data of one scenario run.
struct ScenarioRun {
    nlohmann::json scenario;             // as resolved for the agent
    std::vector<nlohmann::json> workers; // {"type": "worker"} reports
    std::vector<nlohmann::json> steps;   // {"type": "step"} snapshots, one per step
    nlohmann::json agent;                // the agent's summary, or null
    bool cgroup_weights_honoured = true; // false: the scheduler ignores cpu.weight
    std::vector<std::string> malformed;  // reports that were not of the shape they must be
    // The same scenario under the kernel's own scheduler in the same place (ktstr test
    // --baseline), when there is one: latencies are judged against it, since the absolute
    // numbers of an emulated machine mean nothing.
    std::vector<nlohmann::json> baseline_workers;
};
ScenarioRun scenario_run_from_reports(const nlohmann::json& scenario,
                                      const std::vector<nlohmann::json>& reports);

// Every setting a scenario's "checks" or `--set NAME=VALUE` can change. A value of null
// turns a check off (the opt-in ones are off unless given a limit).
struct CheckSettings {
    std::map<std::string, std::optional<double>> values;
    static CheckSettings defaults();
    // Throws UsageError for a name that is no setting, or a value that is not a number,
    // true/false or null.
    void apply(const nlohmann::json& overrides, const std::string& where);
    void set(const std::string& assignment); // "name=value"
    std::optional<double> get(const std::string& name) const { return values.at(name); }
    nlohmann::json to_json() const;
};

struct CheckResult {
    CheckResult(std::string name, bool applied, std::string note)
        : name(std::move(name)), applied(applied), note(std::move(note)) {}
    std::string name;
    bool applied = false; // false: nothing in this run for it to judge (or it is off)
    std::string note;     // why not applied, or what it measured
    std::vector<std::string> failures;
    // What it measured, one number per thing judged (spreads, gaps, efficacies, ratios):
    // the distributions the default limits are taken from.
    std::vector<double> measured;
    bool passed() const { return failures.empty(); }
};

std::vector<CheckResult> evaluate_checks(const ScenarioRun& run, const CheckSettings& settings);

// Per cgroup: workers, CPU share, fairness spread, worst gap, p50/p99 wake latency.
struct CgroupSummary {
    std::string cgroup;
    int workers = 0;
    double cpu_seconds = 0, wall_seconds = 0;
    std::optional<double> spread_pct; // among its CPU-bound workers alike
    double worst_gap_ms = 0;
    std::optional<double> wake_p50_us, wake_p99_us;
    std::uint64_t units = 0;
};
std::vector<CgroupSummary> summarize(const ScenarioRun& run);

} // namespace ktstr
