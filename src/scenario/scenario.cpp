#include "ktstr/scenario/scenario.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/scenario/work_types.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>
#include <random>
#include <set>

namespace ktstr {
namespace {

using nlohmann::json;
using Cpus = std::vector<int>;

// A JSON value with the path that leads to it, for errors that say where they are.
struct Node {
    const json& value;
    std::string where;
    const std::string& origin;

    [[noreturn]] void fail(const std::string& what) const {
        throw UsageError(origin + ": " + (where.empty() ? "" : where + ": ") + what);
    }
    Node at(const std::string& key) const {
        return {value.at(key), where.empty() ? key : where + "." + key, origin};
    }
    Node at(std::size_t index) const {
        return {value.at(index), fmt::format("{}[{}]", where, index), origin};
    }
    bool has(const char* key) const { return value.contains(key); }
    // The object's keys must all be among `known`.
    void keys(std::initializer_list<const char*> known) const {
        if (!value.is_object())
            fail("is not an object");
        for (const auto& [key, _] : value.items())
            if (std::none_of(known.begin(), known.end(), [&](const char* k) { return key == k; }))
                fail(fmt::format("unknown field '{}' (known: {})", key, fmt::join(known, ", ")));
    }
    std::string text() const {
        if (!value.is_string())
            fail("is not a string");
        return value.get<std::string>();
    }
    int integer(int low, int high) const {
        if (!value.is_number_integer())
            fail("is not an integer");
        long long n = value.get<long long>();
        if (n < low || n > high)
            fail(fmt::format("{} is outside {}-{}", n, low, high));
        return int(n);
    }
    Cpus integers(int low, int high) const {
        if (!value.is_array() || value.empty())
            fail("is not a non-empty list of numbers");
        Cpus values;
        for (std::size_t i = 0; i < value.size(); ++i)
            values.push_back(at(i).integer(low, high));
        return values;
    }
    template <typename F>
    void each(F&& f) const {
        if (!value.is_array())
            fail("is not a list");
        for (std::size_t i = 0; i < value.size(); ++i)
            f(at(i));
    }
};

// "20s", "500ms", "2m"; or "50%" with `fraction` set.
void parse_hold(const Node& node, StepSpec& step) {
    std::string text = node.text();
    try {
        if (text.ends_with("%")) {
            double percent = std::stod(text.substr(0, text.size() - 1));
            if (!(percent > 0 && percent <= 100))
                node.fail("'" + text + "' is not a share between 0 and 100 %");
            step.fraction = percent / 100.0;
            return;
        }
        std::size_t used = 0;
        double value = std::stod(text, &used);
        std::string unit = text.substr(used);
        double ms = unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60'000 : -1;
        if (ms < 0 || value <= 0)
            throw std::invalid_argument(text);
        step.hold = std::chrono::milliseconds(std::int64_t(value * ms));
    } catch (const std::exception&) {
        node.fail("'" + text + "' is not a time like 5s, 500ms or 50%");
    }
}

std::chrono::milliseconds parse_duration_text(const Node& node) {
    StepSpec step;
    parse_hold(node, step);
    if (!step.hold)
        node.fail("a duration is a time (like 10s), not a share");
    return *step.hold;
}

CpusetSpec parse_cpuset(const Node& node) {
    node.keys({"llcs", "nodes", "range", "halves", "overlap", "cpus"});
    if (node.value.size() != 1)
        node.fail("names one kind of cpuset (llcs, nodes, range, halves, overlap or cpus)");
    CpusetSpec spec;
    const std::string key = node.value.begin().key(); // the one field
    Node inner = node.at(key);
    if (key == "halves" || key == "overlap") {
        std::string part = inner.text();
        if (part != "first" && part != "second")
            inner.fail("is 'first' or 'second'");
        spec.kind = key == "halves" ? CpusetSpec::Kind::halves : CpusetSpec::Kind::overlap;
        spec.second = part == "second";
        return spec;
    }
    spec.values = inner.integers(0, 4095);
    if (key == "range") {
        if (spec.values.size() != 2 || spec.values[0] > spec.values[1])
            inner.fail("is [first, last] with first <= last");
        spec.kind = CpusetSpec::Kind::range;
    } else {
        spec.kind = key == "llcs"    ? CpusetSpec::Kind::llcs
                    : key == "nodes" ? CpusetSpec::Kind::nodes
                                     : CpusetSpec::Kind::cpus;
    }
    return spec;
}

AffinitySpec parse_affinity(const Node& node) {
    AffinitySpec spec;
    if (node.value.is_string()) {
        if (node.text() != "inherit")
            node.fail("is 'inherit' or an object like {\"llc\": 0}");
        return spec;
    }
    node.keys({"llc", "node", "random", "cpu", "cpus"});
    if (node.value.size() != 1)
        node.fail("names one kind of affinity (llc, node, random, cpu or cpus)");
    const std::string key = node.value.begin().key(); // the one field
    Node inner = node.at(key);
    if (key == "cpus") {
        spec.kind = AffinitySpec::Kind::cpus;
        spec.values = inner.integers(0, 4095);
    } else {
        spec.kind = key == "llc"      ? AffinitySpec::Kind::llc
                    : key == "node"   ? AffinitySpec::Kind::node
                    : key == "random" ? AffinitySpec::Kind::random
                                      : AffinitySpec::Kind::cpu;
        spec.values = {inner.integer(key == "random" ? 1 : 0, 4095)};
    }
    return spec;
}

WorkerGroupSpec parse_workers(const Node& node) {
    node.keys(
        {"name", "cgroup", "work", "count", "nice", "policy", "affinity", "comm", "start_step"});
    WorkerGroupSpec spec;
    spec.name = node.at("name").text();
    if (node.has("cgroup"))
        spec.cgroup = node.at("cgroup").text();
    Node work = node.at("work");
    if (work.value.is_string()) {
        spec.work = work.text();
    } else {
        if (!work.value.is_object() || !work.has("type"))
            work.fail("is a work type's name, or an object with a \"type\" and its parameters");
        spec.work = work.at("type").text();
        spec.params = work.value;
        spec.params.erase("type");
    }
    if (!work_type_info(spec.work)) {
        std::vector<std::string_view> names;
        for (const auto& info : kWorkTypes)
            names.push_back(info.name);
        work.fail(fmt::format("there is no work type '{}' (there are: {})", spec.work,
                              fmt::join(names, ", ")));
    }
    if (node.has("count")) {
        Node count = node.at("count");
        if (count.value.is_string() && count.text() == "per_cpu")
            spec.per_cpu = 1;
        else if (count.value.is_object()) {
            count.keys({"per_cpu"});
            spec.per_cpu = count.at("per_cpu").integer(1, 64);
        } else
            spec.count = count.integer(1, 1024);
    }
    if (node.has("nice"))
        spec.nice = node.at("nice").integer(-20, 19);
    if (node.has("policy")) {
        Node policy = node.at("policy");
        if (policy.value.is_string()) {
            spec.policy = policy.text();
            if (spec.policy != "normal" && spec.policy != "batch" && spec.policy != "idle" &&
                spec.policy != "ext")
                policy.fail("is normal, batch, idle, ext, {\"fifo\": PRIORITY} or {\"rr\": "
                            "PRIORITY}");
        } else {
            policy.keys({"fifo", "rr"});
            spec.policy = policy.value.begin().key();
            spec.priority = policy.at(spec.policy).integer(1, 99);
        }
    }
    if (node.has("affinity"))
        spec.affinity = parse_affinity(node.at("affinity"));
    spec.comm = node.has("comm") ? node.at("comm").text() : spec.name;
    if (node.has("start_step"))
        spec.start_step = node.at("start_step").integer(0, 1000);
    return spec;
}

OperationSpec parse_operation(const Node& node) {
    OperationSpec op;
    op.op = node.at("op").text();
    if (op.op == "add_cgroup") {
        node.keys({"op", "cgroup", "cpuset"});
        op.cgroup = node.at("cgroup").text();
        if (node.has("cpuset"))
            op.cpuset = parse_cpuset(node.at("cpuset"));
    } else if (op.op == "remove_cgroup" || op.op == "clear_cpuset") {
        node.keys({"op", "cgroup"});
        op.cgroup = node.at("cgroup").text();
    } else if (op.op == "set_cpuset") {
        node.keys({"op", "cgroup", "cpuset"});
        op.cgroup = node.at("cgroup").text();
        op.cpuset = parse_cpuset(node.at("cpuset"));
    } else if (op.op == "swap_cpusets") {
        node.keys({"op", "cgroups"});
        Node pair = node.at("cgroups");
        if (!pair.value.is_array() || pair.value.size() != 2)
            pair.fail("names two cgroups");
        op.cgroup = pair.at(0).text();
        op.other = pair.at(1).text();
    } else if (op.op == "move_tasks") {
        node.keys({"op", "from", "to"});
        op.cgroup = node.at("from").text();
        op.other = node.at("to").text();
    } else if (op.op == "set_affinity") {
        node.keys({"op", "group", "affinity"});
        op.group = node.at("group").text();
        op.affinity = parse_affinity(node.at("affinity"));
    } else if (op.op == "spawn" || op.op == "stop") {
        node.keys({"op", "group"});
        op.group = node.at("group").text();
    } else if (op.op == "set_weight") {
        node.keys({"op", "cgroup", "weight"});
        op.cgroup = node.at("cgroup").text();
        op.weight = node.at("weight").integer(1, 10000);
    } else {
        node.at("op").fail("there is no operation '" + op.op +
                           "' (there are: add_cgroup, remove_cgroup, set_cpuset, clear_cpuset, "
                           "swap_cpusets, move_tasks, set_affinity, spawn, stop, set_weight)");
    }
    return op;
}

} // namespace

Scenario parse_scenario(const json& value, const std::string& origin) {
    Node root{value, "", origin};
    root.keys({"schema", "name", "group", "description", "duration", "cgroups", "workers", "steps",
               "checks"});
    if (root.has("schema") && root.at("schema").text() != kScenarioSchema)
        root.at("schema").fail(fmt::format("is not {}", kScenarioSchema));
    Scenario scenario;
    scenario.name = root.at("name").text();
    if (root.has("group"))
        scenario.group = root.at("group").text();
    if (root.has("description"))
        scenario.description = root.at("description").text();
    if (root.has("duration"))
        scenario.duration = parse_duration_text(root.at("duration"));
    std::set<std::string> cgroups;
    if (root.has("cgroups"))
        root.at("cgroups").each([&](const Node& node) {
            node.keys({"name", "cpuset", "weight"});
            CgroupSpec cgroup;
            cgroup.path = node.at("name").text();
            if (cgroup.path.empty() || cgroup.path.starts_with("/") || cgroup.path.ends_with("/") ||
                cgroup.path.find("..") != std::string::npos)
                node.at("name").fail("is a relative path like a or a/b");
            if (auto slash = cgroup.path.rfind('/');
                slash != std::string::npos && !cgroups.contains(cgroup.path.substr(0, slash)))
                node.at("name").fail("its parent " + cgroup.path.substr(0, slash) +
                                     " is not declared before it");
            if (!cgroups.insert(cgroup.path).second)
                node.at("name").fail("cgroup " + cgroup.path + " is declared twice");
            if (node.has("cpuset"))
                cgroup.cpuset = parse_cpuset(node.at("cpuset"));
            if (node.has("weight"))
                cgroup.weight = node.at("weight").integer(1, 10000);
            scenario.cgroups.push_back(std::move(cgroup));
        });
    std::set<std::string> groups;
    root.at("workers").each([&](const Node& node) {
        WorkerGroupSpec spec = parse_workers(node);
        if (!spec.cgroup.empty() && !cgroups.contains(spec.cgroup))
            node.at("cgroup").fail("no cgroup '" + spec.cgroup + "' is declared");
        // cgroup v2 keeps processes out of a cgroup that hands controllers to children.
        if (auto child = cgroups.lower_bound(spec.cgroup + "/");
            !spec.cgroup.empty() && child != cgroups.end() && child->starts_with(spec.cgroup + "/"))
            node.at("cgroup").fail("cgroup " + spec.cgroup + " has a child (" + *child +
                                   "): workers go in leaf cgroups");
        if (!groups.insert(spec.name).second)
            node.at("name").fail("worker group " + spec.name + " is declared twice");
        scenario.workers.push_back(std::move(spec));
    });
    if (scenario.workers.empty())
        root.at("workers").fail("has no worker groups");
    if (root.has("steps"))
        root.at("steps").each([&](const Node& node) {
            node.keys({"hold", "ops"});
            StepSpec step;
            if (node.has("hold"))
                parse_hold(node.at("hold"), step);
            if (node.has("ops"))
                node.at("ops").each([&](const Node& op_node) {
                    OperationSpec op = parse_operation(op_node);
                    if (op.op == "add_cgroup")
                        cgroups.insert(op.cgroup);
                    for (const std::string* name : {&op.cgroup, &op.other})
                        if (!name->empty() && !cgroups.contains(*name))
                            op_node.fail("no cgroup '" + *name + "' is declared");
                    if (!op.group.empty() && !groups.contains(op.group))
                        op_node.at("group").fail("no worker group '" + op.group + "' is declared");
                    step.ops.push_back(std::move(op));
                });
            scenario.steps.push_back(std::move(step));
        });
    for (const auto& worker : scenario.workers)
        if (worker.start_step >= int(std::max<std::size_t>(1, scenario.steps.size())))
            throw UsageError(fmt::format("{}: workers {}: start_step {} is past the last step",
                                         origin, worker.name, worker.start_step));
    if (root.has("checks")) {
        if (!root.at("checks").value.is_object())
            root.at("checks").fail("is not an object");
        scenario.checks = value.at("checks");
    }
    return scenario;
}

Scenario load_scenario_file(const std::string& path) {
    std::string text;
    try {
        text = read_file(path);
    } catch (const Error&) {
        throw UsageError("scenario file " + path + " cannot be read");
    }
    json value = json::parse(text, nullptr, false);
    if (value.is_discarded())
        throw UsageError("scenario file " + path + " is not valid JSON");
    return parse_scenario(value, path);
}

namespace {

json cpuset_json(const CpusetSpec& spec) {
    switch (spec.kind) {
    case CpusetSpec::Kind::none: return nullptr;
    case CpusetSpec::Kind::llcs: return {{"llcs", spec.values}};
    case CpusetSpec::Kind::nodes: return {{"nodes", spec.values}};
    case CpusetSpec::Kind::range: return {{"range", spec.values}};
    case CpusetSpec::Kind::cpus: return {{"cpus", spec.values}};
    case CpusetSpec::Kind::halves: return {{"halves", spec.second ? "second" : "first"}};
    case CpusetSpec::Kind::overlap: return {{"overlap", spec.second ? "second" : "first"}};
    }
    return nullptr;
}

json affinity_json(const AffinitySpec& spec) {
    switch (spec.kind) {
    case AffinitySpec::Kind::inherit: return "inherit";
    case AffinitySpec::Kind::llc: return {{"llc", spec.values.at(0)}};
    case AffinitySpec::Kind::node: return {{"node", spec.values.at(0)}};
    case AffinitySpec::Kind::random: return {{"random", spec.values.at(0)}};
    case AffinitySpec::Kind::cpu: return {{"cpu", spec.values.at(0)}};
    case AffinitySpec::Kind::cpus: return {{"cpus", spec.values}};
    }
    return "inherit";
}

} // namespace

json scenario_to_json(const Scenario& s) {
    json cgroups = json::array(), workers = json::array(), steps = json::array();
    for (const auto& c : s.cgroups) {
        json cgroup = {{"name", c.path}};
        if (c.cpuset.kind != CpusetSpec::Kind::none)
            cgroup["cpuset"] = cpuset_json(c.cpuset);
        if (c.weight)
            cgroup["weight"] = *c.weight;
        cgroups.push_back(cgroup);
    }
    for (const auto& w : s.workers) {
        json work = w.params;
        work["type"] = w.work;
        json worker = {{"name", w.name}, {"work", work}};
        if (!w.cgroup.empty())
            worker["cgroup"] = w.cgroup;
        worker["count"] = w.per_cpu ? json{{"per_cpu", w.per_cpu}} : json(w.count);
        if (w.nice)
            worker["nice"] = w.nice;
        worker["policy"] = w.priority ? json{{w.policy, w.priority}} : json(w.policy);
        worker["affinity"] = affinity_json(w.affinity);
        worker["comm"] = w.comm;
        if (w.start_step)
            worker["start_step"] = w.start_step;
        workers.push_back(worker);
    }
    for (const auto& step : s.steps) {
        json out = json::object();
        if (step.hold)
            out["hold"] = std::to_string(step.hold->count()) + "ms";
        else if (step.fraction)
            out["hold"] = fmt::format("{}%", *step.fraction * 100);
        json ops = json::array();
        for (const auto& op : step.ops) {
            json o = {{"op", op.op}};
            if (op.op == "swap_cpusets")
                o["cgroups"] = {op.cgroup, op.other};
            else if (op.op == "move_tasks")
                o["from"] = op.cgroup, o["to"] = op.other;
            else if (!op.cgroup.empty())
                o["cgroup"] = op.cgroup;
            if (!op.group.empty())
                o["group"] = op.group;
            if (op.op == "set_cpuset" ||
                (op.op == "add_cgroup" && op.cpuset.kind != CpusetSpec::Kind::none))
                o["cpuset"] = cpuset_json(op.cpuset);
            if (op.op == "set_affinity")
                o["affinity"] = affinity_json(op.affinity);
            if (op.op == "set_weight")
                o["weight"] = op.weight;
            ops.push_back(o);
        }
        if (!ops.empty())
            out["ops"] = ops;
        steps.push_back(out);
    }
    json result = {{"schema", kScenarioSchema},
                   {"name", s.name},
                   {"group", s.group},
                   {"description", s.description},
                   {"duration", std::to_string(s.duration.count()) + "ms"},
                   {"workers", workers}};
    if (!cgroups.empty())
        result["cgroups"] = cgroups;
    if (!steps.empty())
        result["steps"] = steps;
    if (!s.checks.empty())
        result["checks"] = s.checks;
    return result;
}

namespace {

Cpus all_cpus(const Topology& topology) {
    Cpus cpus(topology.cpus());
    for (std::size_t i = 0; i < cpus.size(); ++i)
        cpus[i] = int(i);
    return cpus;
}

// What a cpuset spec means on `topology`.
Cpus resolve_cpuset(const CpusetSpec& spec, const Topology& topology, const std::string& where) {
    int n = int(topology.cpus());
    Cpus cpus;
    auto add = [&](const std::vector<std::uint32_t>& list) {
        cpus.insert(cpus.end(), list.begin(), list.end());
    };
    switch (spec.kind) {
    case CpusetSpec::Kind::none: return {};
    case CpusetSpec::Kind::llcs:
        for (int llc : spec.values) {
            if (llc >= int(topology.llcs()))
                throw UsageError(fmt::format("{}: LLC {} does not exist on {} (LLCs 0-{})", where,
                                             llc, topology.to_string(), topology.llcs() - 1));
            add(topology.llc_cpus(std::uint32_t(llc)));
        }
        break;
    case CpusetSpec::Kind::nodes:
        for (int node : spec.values) {
            if (node >= int(topology.nodes()))
                throw UsageError(fmt::format("{}: NUMA node {} does not exist on {} (nodes 0-{})",
                                             where, node, topology.to_string(),
                                             topology.nodes() - 1));
            add(topology.node_cpus(std::uint32_t(node)));
        }
        break;
    case CpusetSpec::Kind::range:
    case CpusetSpec::Kind::cpus: {
        Cpus wanted = spec.values;
        if (spec.kind == CpusetSpec::Kind::range) {
            wanted.clear();
            for (int cpu = spec.values[0]; cpu <= spec.values[1]; ++cpu)
                wanted.push_back(cpu);
        }
        for (int cpu : wanted)
            if (cpu >= n)
                throw UsageError(fmt::format("{}: CPU {} does not exist on {} (CPUs 0-{})", where,
                                             cpu, topology.to_string(), n - 1));
        cpus = wanted;
        break;
    }
    case CpusetSpec::Kind::halves:
        if (n < 2)
            throw UsageError(
                fmt::format("{}: {} has one CPU: it has no halves", where, topology.to_string()));
        for (int cpu = spec.second ? n / 2 : 0; cpu < (spec.second ? n : n / 2); ++cpu)
            cpus.push_back(cpu);
        break;
    case CpusetSpec::Kind::overlap: // the first and the last two thirds: they share a third
        if (n < 3)
            throw UsageError(fmt::format("{}: {} has too few CPUs for overlapping cpusets", where,
                                         topology.to_string()));
        for (int cpu = spec.second ? n / 3 : 0; cpu < (spec.second ? n : n - n / 3); ++cpu)
            cpus.push_back(cpu);
        break;
    }
    std::sort(cpus.begin(), cpus.end());
    cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
    return cpus;
}

bool subset(const Cpus& inner, const Cpus& outer) {
    return std::all_of(inner.begin(), inner.end(), [&](int cpu) {
        return std::find(outer.begin(), outer.end(), cpu) != outer.end();
    });
}

json resolve_affinity(const AffinitySpec& spec, const Topology& topology, const Cpus& allowed,
                      std::mt19937& random, const std::string& where) {
    Cpus cpus;
    switch (spec.kind) {
    case AffinitySpec::Kind::inherit: return nullptr;
    case AffinitySpec::Kind::llc:
        cpus = resolve_cpuset({CpusetSpec::Kind::llcs, spec.values}, topology, where);
        break;
    case AffinitySpec::Kind::node:
        cpus = resolve_cpuset({CpusetSpec::Kind::nodes, spec.values}, topology, where);
        break;
    case AffinitySpec::Kind::cpu:
    case AffinitySpec::Kind::cpus:
        cpus = resolve_cpuset({CpusetSpec::Kind::cpus, spec.values}, topology, where);
        break;
    case AffinitySpec::Kind::random: {
        cpus = allowed;
        std::shuffle(cpus.begin(), cpus.end(), random);
        cpus.resize(std::min<std::size_t>(std::size_t(spec.values[0]), cpus.size()));
        std::sort(cpus.begin(), cpus.end());
        break;
    }
    }
    Cpus inside;
    for (int cpu : cpus)
        if (std::find(allowed.begin(), allowed.end(), cpu) != allowed.end())
            inside.push_back(cpu);
    if (inside.empty())
        throw UsageError(fmt::format("{}: the affinity leaves no CPU of the cgroup's ({})", where,
                                     fmt::join(allowed, ",")));
    return inside;
}

} // namespace

json resolve_scenario(const Scenario& scenario, const Topology& topology,
                      std::chrono::milliseconds duration, unsigned seed) {
    std::mt19937 random(seed);
    std::string origin = "scenario " + scenario.name;
    std::map<std::string, Cpus> cpus_of; // each cgroup's cpuset as it stands (empty: none)
    auto effective = [&](const std::string& path) {
        // The nearest cpuset up the tree, or every CPU.
        for (std::string at = path; !at.empty();) {
            if (auto it = cpus_of.find(at); it != cpus_of.end() && !it->second.empty())
                return it->second;
            auto slash = at.rfind('/');
            at = slash == std::string::npos ? std::string() : at.substr(0, slash);
        }
        return all_cpus(topology);
    };
    auto parent_of = [](const std::string& path) {
        auto slash = path.rfind('/');
        return slash == std::string::npos ? std::string() : path.substr(0, slash);
    };
    json cgroups = json::array();
    for (const auto& cgroup : scenario.cgroups) {
        std::string where = origin + ": cgroup " + cgroup.path + ": cpuset";
        Cpus cpus = resolve_cpuset(cgroup.cpuset, topology, where);
        if (!cpus.empty() && !subset(cpus, effective(parent_of(cgroup.path))))
            throw UsageError(where + ": not within its parent's CPUs");
        cpus_of[cgroup.path] = cpus;
        json entry = {{"path", cgroup.path},
                      {"cpus", cpus.empty() ? json(nullptr) : json(cpus)},
                      {"weight", cgroup.weight ? json(*cgroup.weight) : json(nullptr)}};
        cgroups.push_back(entry);
    }

    // Step holds: fixed times, shares of the duration, and the rest split among the others.
    std::vector<StepSpec> steps = scenario.steps;
    if (steps.empty())
        steps.push_back({});
    std::int64_t fixed = 0;
    int open = 0;
    for (const auto& step : steps) {
        if (step.hold)
            fixed += step.hold->count();
        else if (step.fraction)
            fixed += std::int64_t(*step.fraction * double(duration.count()));
        else
            ++open;
    }
    std::int64_t rest = duration.count() - fixed;
    if (open > 0 && rest < open * 100)
        throw UsageError(fmt::format("{}: the steps' holds leave {} ms of the {} ms duration to "
                                     "the other {} steps",
                                     origin, rest, duration.count(), open));

    std::map<std::string, int> start_step;
    for (const auto& worker : scenario.workers)
        start_step[worker.name] = worker.start_step;
    json resolved_steps = json::array();
    for (std::size_t index = 0; index < steps.size(); ++index) {
        const StepSpec& step = steps[index];
        std::int64_t hold = step.hold ? step.hold->count()
                            : step.fraction
                                ? std::int64_t(*step.fraction * double(duration.count()))
                                : rest / open;
        json ops = json::array();
        for (const auto& op : step.ops) {
            std::string where = fmt::format("{}: step {}: {}", origin, index, op.op);
            if (op.op == "spawn") {
                start_step[op.group] = int(index);
            } else if (op.op == "set_cpuset" || op.op == "add_cgroup") {
                Cpus cpus = resolve_cpuset(op.cpuset, topology, where);
                cpus_of[op.cgroup] = cpus;
                json o = {{"op", op.op}, {"cgroup", op.cgroup}};
                if (!cpus.empty() || op.op == "set_cpuset")
                    o["cpus"] = cpus;
                ops.push_back(o);
            } else if (op.op == "clear_cpuset") {
                cpus_of[op.cgroup] = {};
                ops.push_back({{"op", "clear_cpuset"}, {"cgroup", op.cgroup}});
            } else if (op.op == "swap_cpusets") {
                std::swap(cpus_of[op.cgroup], cpus_of[op.other]);
                for (const std::string* name : {&op.cgroup, &op.other})
                    ops.push_back({{"op", cpus_of[*name].empty() ? "clear_cpuset" : "set_cpuset"},
                                   {"cgroup", *name},
                                   {"cpus", cpus_of[*name]}});
            } else if (op.op == "set_affinity") {
                const auto& group =
                    *std::find_if(scenario.workers.begin(), scenario.workers.end(),
                                  [&](const WorkerGroupSpec& w) { return w.name == op.group; });
                ops.push_back({{"op", "set_affinity"},
                               {"group", op.group},
                               {"cpus", resolve_affinity(op.affinity, topology,
                                                         effective(group.cgroup), random, where)}});
            } else if (op.op == "move_tasks") {
                ops.push_back({{"op", "move_tasks"}, {"from", op.cgroup}, {"to", op.other}});
            } else if (op.op == "set_weight") {
                ops.push_back({{"op", "set_weight"}, {"cgroup", op.cgroup}, {"weight", op.weight}});
            } else {
                json o = {{"op", op.op}};
                if (!op.cgroup.empty())
                    o["cgroup"] = op.cgroup;
                if (!op.group.empty())
                    o["group"] = op.group;
                ops.push_back(o);
            }
        }
        resolved_steps.push_back({{"hold_ms", hold}, {"ops", ops}});
    }

    std::vector<std::string> cgroup_paths;
    for (const auto& cgroup : scenario.cgroups)
        cgroup_paths.push_back(cgroup.path);
    json groups = json::array();
    for (const auto& worker : scenario.workers) {
        std::string where = origin + ": workers " + worker.name;
        // Counts and affinities are of the cpuset the group starts in (from the scenario's
        // declarations: a later step may change it).
        Cpus cpus = effective(worker.cgroup);
        for (const auto& cgroup : scenario.cgroups)
            if (cgroup.path == worker.cgroup)
                cpus = resolve_cpuset(cgroup.cpuset, topology, where).empty()
                           ? cpus
                           : resolve_cpuset(cgroup.cpuset, topology, where);
        json params = worker.params;
        if (worker.work == "smt_sibling_spin" && !params.contains("pairs")) {
            std::map<std::uint32_t, Cpus> cores;
            for (int cpu : cpus)
                cores[topology.place(std::uint32_t(cpu)).core].push_back(cpu);
            json pairs = json::array();
            for (const auto& [core, threads] : cores)
                if (threads.size() >= 2)
                    pairs.push_back(Cpus{threads[0], threads[1]});
            params["pairs"] = pairs;
        }
        groups.push_back({
            {"name", worker.name},
            {"cgroup", worker.cgroup},
            {"work", worker.work},
            {"params", params},
            {"count", worker.per_cpu ? worker.per_cpu * int(cpus.size()) : worker.count},
            {"nice", worker.nice},
            {"policy", worker.policy},
            {"priority", worker.priority},
            {"affinity", resolve_affinity(worker.affinity, topology, cpus, random, where)},
            {"comm", worker.comm},
            {"start_step", start_step[worker.name]},
            {"cpus_in_cgroup", cpus},
        });
    }
    return {{"name", scenario.name}, {"duration_ms", duration.count()},
            {"seed", seed},          {"cpus", topology.cpus()},
            {"cgroups", cgroups},    {"cgroup_paths", cgroup_paths},
            {"groups", groups},      {"steps", resolved_steps}};
}

} // namespace ktstr
