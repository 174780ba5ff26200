// Scenarios as data: parsing with errors that say where, and resolution onto topologies.
#include "ktstr/base/error.hpp"
#include "ktstr/scenario/catalogue.hpp"
#include "ktstr/scenario/work_types.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <set>

using namespace ktstr;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

json minimal() {
    return json::parse(R"({"name": "t", "workers": [{"name": "w", "work": "spin"}]})");
}

std::string error_of(const json& scenario) {
    try {
        parse_scenario(scenario, "t.json");
    } catch (const UsageError& e) {
        return e.what();
    }
    return {};
}

std::string resolve_error(const json& scenario, const std::string& topology) {
    try {
        resolve_scenario(parse_scenario(scenario, "t.json"), Topology::parse(topology), 10s, 1);
    } catch (const UsageError& e) {
        return e.what();
    }
    return {};
}

} // namespace

TEST_CASE("the catalogue is big, grouped, and every scenario resolves", "[scenario]") {
    auto scenarios = catalogue();
    CHECK(scenarios.size() >= 40);
    std::set<std::string> groups, names, works;
    for (const auto& scenario : scenarios) {
        groups.insert(scenario.group);
        CHECK(names.insert(scenario.name).second);
        CHECK_FALSE(scenario.description.empty());
        for (const auto& worker : scenario.workers)
            works.insert(worker.work);
    }
    for (const char* group : {"basic", "cpuset", "affinity", "dynamic", "nested", "stress",
                              "sched_class", "interaction", "weights", "latency"})
        CHECK(groups.contains(group));
    CHECK(kWorkTypes.size() >= 30);
    for (const auto& info : kWorkTypes) // every work type is in some canned scenario but custom
        if (info.name != "custom") {
            CAPTURE(info.name);
            CHECK(works.contains(std::string(info.name)));
        }
    auto topology = GENERATE(as<std::string>{}, "1n2l2c2t", "2n2l2c2t", "2n4l1c2t", "1n4l4c2t");
    for (const auto& scenario : scenarios) {
        CAPTURE(topology, scenario.name);
        json resolved = resolve_scenario(scenario, Topology::parse(topology), 10s, 1);
        std::int64_t total = 0;
        for (const auto& step : resolved["steps"])
            total += step["hold_ms"].get<std::int64_t>();
        CHECK(total == 10'000);
        // The JSON form reads back as the same scenario.
        json again = resolve_scenario(parse_scenario(scenario_to_json(scenario), "again"),
                                      Topology::parse(topology), 10s, 1);
        CHECK(again == resolved);
    }
}

TEST_CASE("bad scenarios get one line naming the place", "[scenario]") {
    json unknown_field = minimal();
    unknown_field["wokers"] = json::array();
    CHECK(error_of(unknown_field).find("t.json: unknown field 'wokers'") == 0);

    json bad_work = minimal();
    bad_work["workers"][0]["work"] = "spinn";
    CHECK(error_of(bad_work).find("workers[0].work: there is no work type 'spinn'") !=
          std::string::npos);

    json no_cgroup = minimal();
    no_cgroup["workers"][0]["cgroup"] = "x";
    CHECK(error_of(no_cgroup).find("workers[0].cgroup: no cgroup 'x' is declared") !=
          std::string::npos);

    json orphan = minimal();
    orphan["cgroups"] = json::parse(R"([{"name": "a/b"}])");
    CHECK(error_of(orphan).find("its parent a is not declared") != std::string::npos);

    json inner = minimal();
    inner["cgroups"] = json::parse(R"([{"name": "a"}, {"name": "ab"}, {"name": "a/b"}])");
    inner["workers"][0]["cgroup"] = "a";
    CHECK(error_of(inner).find("workers[0].cgroup: cgroup a has a child (a/b): workers go in "
                               "leaf cgroups") != std::string::npos);
    inner["workers"][0]["cgroup"] = "ab"; // a sibling whose name starts alike is no child
    CHECK(error_of(inner).empty());

    json hold = minimal();
    hold["steps"] = json::parse(R"([{"hold": "soon"}])");
    CHECK(error_of(hold).find("steps[0].hold: 'soon' is not a time") != std::string::npos);

    json op = minimal();
    op["steps"] = json::parse(R"([{"ops": [{"op": "explode"}]}])");
    CHECK(error_of(op).find("there is no operation 'explode'") != std::string::npos);

    json nice = minimal();
    nice["workers"][0]["nice"] = 25;
    CHECK(error_of(nice).find("workers[0].nice: 25 is outside -20-19") != std::string::npos);

    for (const auto& message : {error_of(unknown_field), error_of(bad_work), error_of(op)})
        CHECK(message.find('\n') == std::string::npos);
}

TEST_CASE("a cpuset that is not on the topology is refused before any boot", "[scenario]") {
    json llc = minimal();
    llc["cgroups"] = json::parse(R"([{"name": "a", "cpuset": {"llcs": [5]}}])");
    CHECK(resolve_error(llc, "1n2l2c2t").find("LLC 5 does not exist on 1n2l2c2t") !=
          std::string::npos);
    json node = minimal();
    node["cgroups"] = json::parse(R"([{"name": "a", "cpuset": {"nodes": [1]}}])");
    CHECK(resolve_error(node, "1n2l2c2t").find("NUMA node 1 does not exist") != std::string::npos);
    CHECK(resolve_error(node, "2n2l2c2t").empty());
    json cpu = minimal();
    cpu["cgroups"] = json::parse(R"([{"name": "a", "cpuset": {"cpus": [8]}}])");
    CHECK(resolve_error(cpu, "1n2l2c2t").find("CPU 8 does not exist") != std::string::npos);
    json child = minimal();
    child["cgroups"] = json::parse(
        R"([{"name": "a", "cpuset": {"cpus": [0, 1]}}, {"name": "a/b", "cpuset": {"cpus": [2]}}])");
    CHECK(resolve_error(child, "1n2l2c2t").find("not within its parent's CPUs") !=
          std::string::npos);
    json affinity = minimal();
    affinity["cgroups"] = json::parse(R"([{"name": "a", "cpuset": {"cpus": [0, 1]}}])");
    affinity["workers"][0]["cgroup"] = "a";
    affinity["workers"][0]["affinity"] = json::parse(R"({"cpu": 5})");
    CHECK(resolve_error(affinity, "1n2l2c2t").find("leaves no CPU") != std::string::npos);
}

TEST_CASE("cpusets, counts, holds and operations resolve to numbers", "[scenario]") {
    Scenario scenario = parse_scenario(json::parse(R"({
        "name": "r",
        "cgroups": [{"name": "a", "cpuset": {"halves": "first"}},
                    {"name": "b", "cpuset": {"overlap": "second"}},
                    {"name": "c", "cpuset": {"llcs": [1]}},
                    {"name": "d", "cpuset": {"nodes": [1]}},
                    {"name": "e", "cpuset": {"range": [2, 4]}}],
        "workers": [{"name": "w", "work": "spin", "cgroup": "a", "count": {"per_cpu": 2}},
                    {"name": "r", "work": "spin", "cgroup": "d", "affinity": {"random": 2}},
                    {"name": "s", "work": "smt_sibling_spin", "cgroup": "c"},
                    {"name": "late", "work": "spin"}],
        "steps": [{"hold": "2s"}, {"ops": [{"op": "swap_cpusets", "cgroups": ["a", "c"]},
                                           {"op": "spawn", "group": "late"}]},
                  {"hold": "25%"}]
    })"),
                                       "r");
    json r = resolve_scenario(scenario, Topology::parse("2n2l2c2t"), 10s, 7);
    auto cpus = [&](std::size_t i) {
        return r["cgroups"][i]["cpus"].get<std::vector<int>>();
    };
    CHECK(cpus(0) == std::vector<int>{0, 1, 2, 3});
    CHECK(cpus(1) == std::vector<int>{2, 3, 4, 5, 6, 7});
    CHECK(cpus(2) == std::vector<int>{4, 5, 6, 7});
    CHECK(cpus(3) == std::vector<int>{4, 5, 6, 7});
    CHECK(cpus(4) == std::vector<int>{2, 3, 4});
    CHECK(r["groups"][0]["count"] == 8);
    auto random = r["groups"][1]["affinity"].get<std::vector<int>>();
    CHECK(random.size() == 2);
    for (int cpu : random)
        CHECK((cpu >= 4 && cpu <= 7));
    CHECK(r["groups"][2]["params"]["pairs"] == json::parse("[[4, 5], [6, 7]]"));
    CHECK(r["groups"][3]["start_step"] == 1); // the spawn operation
    CHECK(r["steps"][0]["hold_ms"] == 2000);
    CHECK(r["steps"][1]["hold_ms"] == 5500); // what the others leave
    CHECK(r["steps"][2]["hold_ms"] == 2500);
    const json& swap = r["steps"][1]["ops"];
    REQUIRE(swap.size() == 2);
    CHECK(swap[0] == json::parse(R"({"op": "set_cpuset", "cgroup": "a", "cpus": [4, 5, 6, 7]})"));
    CHECK(swap[1] == json::parse(R"({"op": "set_cpuset", "cgroup": "c", "cpus": [0, 1, 2, 3]})"));
}
