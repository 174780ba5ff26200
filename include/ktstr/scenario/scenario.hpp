#pragma once

// A scenario: what runs in the guest during a test (cgroups, cpusets, groups of workers
// doing given kinds of work, and changes over time), with the checks that judge it. The
// JSON format (schemas/scenario.schema.json, "ktstr-scenario/1") and this model are the
// same thing; tests written in C++ can build a Scenario directly.

#include "ktstr/vmm/topology.hpp"

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace ktstr {

// Which CPUs a cgroup may use.
struct CpusetSpec {
    enum class Kind { none, llcs, nodes, range, halves, overlap, cpus };
    Kind kind = Kind::none;
    std::vector<int> values; // LLC or node numbers, [first, last], or CPUs
    bool second = false;     // halves/overlap: the second part (else the first)
};

// Which CPUs a worker may use, within its cgroup's.
struct AffinitySpec {
    enum class Kind { inherit, llc, node, random, cpu, cpus };
    Kind kind = Kind::inherit;
    std::vector<int> values; // the LLC, node or CPU, or the CPUs; random: how many
};

struct CgroupSpec {
    std::string path; // "a", or "a/b" nested in a
    CpusetSpec cpuset;
    std::optional<int> weight; // cpu.weight, 1-10000
};

struct WorkerGroupSpec {
    std::string name;
    std::string cgroup; // empty: the root cgroup
    std::string work;
    nlohmann::json params = nlohmann::json::object();
    int count = 1;
    int per_cpu = 0; // when set: count = per_cpu x the CPUs of its cgroup
    int nice = 0;
    std::string policy = "normal"; // normal, batch, idle, fifo, rr, ext
    int priority = 0;              // fifo and rr
    AffinitySpec affinity;
    std::string comm;   // default: the group's name
    int start_step = 0; // spawned when this step begins (or by a spawn operation)
};

struct OperationSpec {
    std::string op; // add_cgroup remove_cgroup set_cpuset clear_cpuset swap_cpusets
                    // move_tasks set_affinity spawn stop set_weight
    std::string cgroup, other, group;
    CpusetSpec cpuset;
    AffinitySpec affinity;
    int weight = 0;
};

struct StepSpec {
    std::optional<std::chrono::milliseconds> hold; // a fixed time
    std::optional<double> fraction;                // or a fraction of the duration
    std::vector<OperationSpec> ops;                // done when the step begins
};

struct Scenario {
    std::string name, group, description;
    std::chrono::milliseconds duration{10'000};
    std::vector<CgroupSpec> cgroups;
    std::vector<WorkerGroupSpec> workers;
    std::vector<StepSpec> steps;                      // none: one step of the whole duration
    nlohmann::json checks = nlohmann::json::object(); // overrides of the check settings
};

inline constexpr const char* kScenarioSchema = "ktstr-scenario/1";

// Reads a scenario; throws UsageError "<origin>: <where>: <what is wrong>" (an unknown
// field, a work type that does not exist, a cgroup or group that is not declared...).
Scenario parse_scenario(const nlohmann::json& json, const std::string& origin);
Scenario load_scenario_file(const std::string& path);
nlohmann::json scenario_to_json(const Scenario& scenario);

// The scenario as the guest agent runs it: every cpuset, count, affinity and hold turned
// into numbers for `topology` and `duration`. Throws UsageError for what does not exist on
// that topology (an LLC, a node, a CPU).
nlohmann::json resolve_scenario(const Scenario& scenario, const Topology& topology,
                                std::chrono::milliseconds duration, unsigned seed);

} // namespace ktstr
