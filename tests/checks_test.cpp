// Each check on made-up reports: it fires on the fault it is for, names the worker, cgroup,
// CPU and number, and stays quiet otherwise.
#include "ktstr/base/error.hpp"
#include "ktstr/checks/checks.hpp"
#include "ktstr/scenario/latency_histogram.hpp"

#include <catch2/catch_test_macros.hpp>

using namespace ktstr;
using nlohmann::json;

namespace {

// A resolved scenario with the given groups (each {name, cgroup, work, nice, cpus}).
json scenario(const json& groups, const json& cgroups = json::array()) {
    json resolved = {{"groups", json::array()}, {"cgroups", cgroups}};
    for (const auto& g : groups)
        resolved["groups"].push_back({{"name", g["name"]},
                                      {"cgroup", g.value("cgroup", "")},
                                      {"work", g.value("work", "spin")},
                                      {"nice", g.value("nice", 0)},
                                      {"policy", "normal"},
                                      {"affinity", g.value("affinity", json(nullptr))},
                                      {"cpus_in_cgroup", g["cpus"]}});
    return resolved;
}

json worker(const std::string& group, int index, double cpu_s, double wall_s = 10,
            const std::string& cgroup = "", const std::string& work = "spin") {
    return {{"type", "worker"},
            {"group", group},
            {"index", index},
            {"pid", 100 + index},
            {"cgroup", cgroup},
            {"work", work},
            {"ended", "stopped"},
            {"units", cpu_s > 0 ? 1000 : 0},
            {"wall_ns", wall_s * 1e9},
            {"cpu_ns", cpu_s * 1e9},
            {"off_cpu_ns", (wall_s - cpu_s) * 1e9},
            {"max_gap_ns", 50e6},
            {"max_gap_cpu", 1},
            {"max_gap_at_ms", 3000.0},
            {"cpus_by_epoch", {{"2", {0, 1}}}}};
}

json step(std::uint32_t epoch, const json& cgroups, const json& groups) {
    return {
        {"type", "step"}, {"index", 0}, {"epoch", epoch}, {"cgroups", cgroups}, {"groups", groups}};
}

CheckResult find(const std::vector<CheckResult>& results, const std::string& name) {
    for (const auto& result : results)
        if (result.name == name)
            return result;
    FAIL("no check " << name);
    return results.front();
}

std::vector<CheckResult> judge(const ScenarioRun& run) {
    return evaluate_checks(run, CheckSettings::defaults());
}

} // namespace

TEST_CASE("starvation: SCHED_IDLE workers are judged as a group", "[checks]") {
    ScenarioRun run;
    run.scenario = scenario(json::parse(R"([{"name": "idle", "cpus": [0, 1]}])"));
    run.scenario["groups"][0]["policy"] = "idle";
    run.workers = {worker("idle", 0, 0.08), worker("idle", 1, 0)};
    CHECK(find(judge(run), "starvation").passed()); // one of them ran: the group moved
    run.workers[0] = worker("idle", 0, 0);
    const auto result = find(judge(run), "starvation");
    REQUIRE(result.failures.size() == 1);
    CHECK(result.failures[0].find("no SCHED_IDLE worker of group idle did any work") !=
          std::string::npos);
}

TEST_CASE("starvation: a worker with no work fails, named", "[checks]") {
    ScenarioRun run;
    run.scenario = scenario(json::parse(R"([{"name": "spin", "cpus": [0, 1]}])"));
    run.workers = {worker("spin", 0, 5), worker("spin", 1, 0)};
    const auto result = find(judge(run), "starvation");
    REQUIRE(result.failures.size() == 1);
    CHECK(result.failures[0].find("spin#1 (pid 101, cgroup /) did no work") == 0);
    run.workers[1] = worker("spin", 1, 5);
    CHECK(find(judge(run), "starvation").passed());
}

TEST_CASE("cpuset isolation: a CPU outside the cgroup's cpuset fails, but not while the "
          "cpusets change",
          "[checks]") {
    ScenarioRun run;
    run.scenario = scenario(json::parse(R"([{"name": "a", "cgroup": "a", "cpus": [0, 1]}])"));
    json w = worker("a", 0, 5, 10, "a");
    w["cpus_by_epoch"] = {{"1", {0, 1, 7}}, {"2", {0, 5}}};
    run.workers = {w};
    run.steps = {step(2, {{"a", {{"cpus_effective", {0, 1}}}}},
                      {{"a", {{"cgroup", "a"}, {"affinity", nullptr}}}})};
    const auto result = find(judge(run), "cpuset_isolation");
    REQUIRE(result.failures.size() == 1); // CPU 7 was in the odd (changing) epoch 1
    CHECK(result.failures[0].find("ran on CPU 5, outside cgroup a's cpuset (allowed: 0,1") !=
          std::string::npos);
    run.workers[0]["cpus_by_epoch"] = {{"2", {0, 1}}};
    CHECK(find(judge(run), "cpuset_isolation").passed());
}

TEST_CASE("fairness spread: only among workers that compete evenly", "[checks]") {
    ScenarioRun run;
    run.scenario = scenario(json::parse(R"([{"name": "spin", "cpus": [0, 1]}])"));
    run.workers = {worker("spin", 0, 9), worker("spin", 1, 9), worker("spin", 2, 6)};
    const auto unfair = find(judge(run), "fairness_spread");
    REQUIRE(unfair.failures.size() == 1);
    CHECK(unfair.failures[0].find("spread 30.0 points in cgroup /") != std::string::npos);
    CHECK(unfair.failures[0].find("spin#2 (pid 102, cgroup /) was off CPU 40.0 %") !=
          std::string::npos);
    run.workers[2] = worker("spin", 2, 8.5);
    CHECK(find(judge(run), "fairness_spread").passed());
    // A waker on the same CPUs preempts some spinners more than others: not judged.
    run.workers[2] = worker("spin", 2, 6);
    run.scenario = scenario(json::parse(
        R"([{"name": "spin", "cpus": [0, 1]}, {"name": "pp", "work": "futex_pingpong", "cpus": [0, 1]}])"));
    run.workers.push_back(worker("pp", 0, 1, 10, "", "futex_pingpong"));
    CHECK_FALSE(find(judge(run), "fairness_spread").applied);
    // Spinners that pin themselves to SMT siblings, beside free spinners: their shares are
    // their pinning's (mix-smt-siblings under EEVDF: free 50 % off CPU, pinned 6 %).
    run.scenario = scenario(json::parse(R"([{"name": "siblings", "work": "smt_sibling_spin",
                                             "cpus": [0, 1]},
                                            {"name": "free", "cpus": [0, 1]}])"));
    run.workers = {worker("siblings", 0, 9.4, 10, "", "smt_sibling_spin"),
                   worker("siblings", 1, 9.4, 10, "", "smt_sibling_spin"), worker("free", 0, 5),
                   worker("free", 1, 5)};
    CHECK_FALSE(find(judge(run), "fairness_spread").applied);
}

TEST_CASE("longest gap: a worker off its CPU too long fails, with where and when", "[checks]") {
    ScenarioRun run;
    run.scenario = scenario(json::parse(R"([{"name": "spin", "cpus": [0]}])"));
    run.agent = {{"type", "agent"}, {"started_ms", 1000.0}};
    run.workers = {worker("spin", 0, 5)};
    run.workers[0]["max_gap_ns"] = 2.5e9;
    run.workers[0]["max_gap_cpu"] = 3;
    const auto result = find(judge(run), "longest_gap");
    REQUIRE(result.failures.size() == 1);
    CHECK(result.failures[0].find("did not run for 2500 ms (on CPU 3, 2.0 s into the run; "
                                  "limit 2000 ms)") != std::string::npos);
}

TEST_CASE("nice weights: the CPU ratio must follow the weights under saturation", "[checks]") {
    ScenarioRun run;
    run.scenario = scenario(json::parse(R"([{"name": "n0", "cpus": [0, 1]},
                                            {"name": "n10", "nice": 10, "cpus": [0, 1]}])"));
    auto load = [&](double heavy, double light) {
        run.workers = {worker("n0", 0, heavy), worker("n0", 1, heavy), worker("n10", 0, light),
                       worker("n10", 1, light)};
        return find(judge(run), "nice_weights");
    };
    CHECK(load(9, 1).passed()); // 9:1 of the 9.3 asked: efficacy 0.98
    auto fifo = load(5, 5);     // weights ignored
    REQUIRE(fifo.failures.size() == 1);
    CHECK(fifo.failures[0].find("nice 0 workers got 1.00 times the CPU of nice 10 workers; the "
                                "weights ask for 9.31") != std::string::npos);
    CHECK_FALSE(load(-1, 1).applied == false); // still judged
    // Without saturation (one worker per CPU) weights decide nothing.
    run.workers = {worker("n0", 0, 10), worker("n10", 0, 10)};
    CHECK_FALSE(find(judge(run), "nice_weights").applied);
}

TEST_CASE("cgroup shares: equal weights, equal shares; other weights under EEVDF only",
          "[checks]") {
    ScenarioRun run;
    json cgroups = json::parse(R"([{"path": "a", "cpus": null, "weight": null},
                                    {"path": "b", "cpus": null, "weight": null}])");
    run.scenario = scenario(json::parse(R"([{"name": "a", "cgroup": "a", "cpus": [0, 1]},
                                            {"name": "b", "cgroup": "b", "cpus": [0, 1]}])"),
                            cgroups);
    run.workers = {worker("a", 0, 5, 10, "a"), worker("a", 1, 5, 10, "a"),
                   worker("b", 0, 3, 10, "b"), worker("b", 1, 3, 10, "b")};
    const auto unequal = find(judge(run), "cgroup_shares");
    REQUIRE(unequal.failures.size() == 1);
    // The victim is named first: b got 3 s per worker where a got 5.
    CHECK(unequal.failures[0].find("cgroup b got 1.67 times less CPU than cgroup a of equal "
                                   "weight") == 0);
    run.scenario["cgroups"][0]["weight"] = 300;
    run.scenario["cgroups"][1]["weight"] = 100;
    CHECK(find(judge(run), "cgroup_shares").passed()); // 1.67 of the 3 asked: efficacy 0.46
    run.workers = {worker("a", 0, 7.5, 10, "a"), worker("a", 1, 7.5, 10, "a"),
                   worker("b", 0, 2.5, 10, "b"), worker("b", 1, 2.5, 10, "b")};
    CHECK(find(judge(run), "cgroup_shares").passed());
    run.workers[0]["cpu_ns"] = 5e9, run.workers[1]["cpu_ns"] = 5e9;
    run.workers[2]["cpu_ns"] = 5e9, run.workers[3]["cpu_ns"] = 5e9;
    CHECK_FALSE(find(judge(run), "cgroup_shares").passed()); // weights ignored
    run.cgroup_weights_honoured = false; // a sched_ext scheduler, not asked to be judged
    const auto skipped = find(judge(run), "cgroup_shares");
    CHECK_FALSE(skipped.applied);
    CHECK(skipped.note.find("does not implement cgroup weights") != std::string::npos);
}

TEST_CASE("wake latency percentiles pool workers' histograms per cgroup", "[checks]") {
    LatencyHistogram histogram;
    for (int i = 0; i < 98; ++i)
        histogram.add(50'000);
    histogram.add(40'000'000, 2);
    ScenarioRun run;
    run.scenario =
        scenario(json::parse(R"([{"name": "pp", "work": "futex_pingpong", "cpus": [0]}])"));
    json w = worker("pp", 0, 1, 10, "", "futex_pingpong");
    json buckets = json::object();
    for (const auto& [bucket, count] : histogram.nonzero())
        buckets[std::to_string(bucket)] = count;
    w["wake"] = {{"count", histogram.total()}, {"max_ns", histogram.max()}, {"buckets", buckets}};
    run.workers = {w};
    CheckSettings settings = CheckSettings::defaults();
    settings.set("wake_p99_us=5000");
    settings.set("wake_p50_us=100");
    auto results = evaluate_checks(run, settings);
    CHECK(find(results, "wake_latency_p50").passed());
    const auto p99 = find(results, "wake_latency_p99");
    REQUIRE(p99.failures.size() == 1);
    CHECK(p99.failures[0].find("p99 wake-up latency in cgroup / is") == 0);
}

TEST_CASE("wake latencies against a baseline: delayed wake-ups fail, the floor absorbs jitter",
          "[checks]") {
    // Each worker woke 100 times: `typical_ns` for 98 of them, `tail_ns` for 2.
    auto woken = [](double typical_ns, double tail_ns) {
        LatencyHistogram histogram;
        histogram.add(std::uint64_t(typical_ns), 98);
        histogram.add(std::uint64_t(tail_ns), 2);
        json w = worker("t", 0, 1, 10, "", "timer_latency");
        json buckets = json::object();
        for (const auto& [bucket, count] : histogram.nonzero())
            buckets[std::to_string(bucket)] = count;
        w["wake"] = {
            {"count", histogram.total()}, {"max_ns", histogram.max()}, {"buckets", buckets}};
        return w;
    };
    ScenarioRun run;
    run.scenario =
        scenario(json::parse(R"([{"name": "t", "work": "timer_latency", "cpus": [0, 1]}])"));
    run.baseline_workers = {woken(2e6, 8e6)};
    run.workers = {woken(2.2e6, 9e6)}; // sound: about the baseline
    auto sound = evaluate_checks(run, CheckSettings::defaults());
    CHECK(find(sound, "wake_p50_vs_baseline").passed());
    CHECK(find(sound, "wake_p99_vs_baseline").passed());
    CHECK(find(sound, "wake_p50_vs_baseline").applied);
    run.workers = {woken(22e6, 30e6)}; // every wake-up 20 ms late
    auto delayed = evaluate_checks(run, CheckSettings::defaults());
    const auto p50 = find(delayed, "wake_p50_vs_baseline");
    REQUIRE(p50.failures.size() == 1);
    CHECK(p50.failures[0].find("p50 wake-up latency in cgroup / is") == 0);
    CHECK(p50.failures[0].find("times the baseline's") != std::string::npos);
    // Baselines of a few microseconds count as the floor (1 ms): 300 us is no regression.
    run.baseline_workers = {woken(5e3, 20e3)};
    run.workers = {woken(300e3, 900e3)};
    auto tiny = evaluate_checks(run, CheckSettings::defaults());
    CHECK(find(tiny, "wake_p50_vs_baseline").passed());
    CHECK(find(tiny, "wake_p99_vs_baseline").passed());
    // Without a baseline nothing is judged.
    run.baseline_workers.clear();
    CHECK_FALSE(
        find(evaluate_checks(run, CheckSettings::defaults()), "wake_p99_vs_baseline").applied);
}

TEST_CASE("settings: unknown names and bad values are refused, null turns a check off",
          "[checks]") {
    CheckSettings settings = CheckSettings::defaults();
    CHECK_THROWS_AS(settings.set("max_gap=3"), UsageError);
    CHECK_THROWS_AS(settings.set("max_gap_ms=soon"), UsageError);
    CHECK_THROWS_AS(settings.set("max_gap_ms"), UsageError);
    settings.set("max_gap_ms=null");
    ScenarioRun run;
    run.scenario = scenario(json::parse(R"([{"name": "spin", "cpus": [0]}])"));
    run.workers = {worker("spin", 0, 5)};
    run.workers[0]["max_gap_ns"] = 9e9;
    auto results = evaluate_checks(run, settings);
    CHECK_FALSE(find(results, "longest_gap").applied);
}

TEST_CASE("reports of the wrong shape are set aside, never trusted", "[checks]") {
    json bad_cpus = worker("spin", 0, 5);
    bad_cpus["cpus_by_epoch"] = {{"two", {0}}};
    json bad_units = worker("spin", 1, 5);
    bad_units["units"] = "many";
    json bad_step = {{"type", "step"},
                     {"epoch", 2},
                     {"cgroups", {{"a", {{"cpus_effective", "0-3"}}}}},
                     {"groups", json::object()}};
    ScenarioRun run = scenario_run_from_reports(
        scenario(json::parse(R"([{"name": "spin", "cpus": [0]}])")),
        {bad_cpus, bad_units, bad_step, json{{"type", "mystery"}}, worker("spin", 2, 5)});
    CHECK(run.malformed.size() == 4);
    CHECK(run.workers.size() == 1);
    CHECK(run.steps.empty());
}

TEST_CASE("the latency histogram keeps values within 1/16 and merges by adding", "[checks]") {
    for (std::uint64_t value : {0ull, 15ull, 16ull, 17ull, 1000ull, 123456789ull, 1ull << 39}) {
        CAPTURE(value);
        std::size_t bucket = LatencyHistogram::bucket_of(value);
        std::uint64_t low = LatencyHistogram::lower_bound(bucket);
        CHECK(low <= value);
        CHECK(double(value - low) <= double(value) / 16.0);
        CHECK(LatencyHistogram::bucket_of(low) == bucket);
    }
    LatencyHistogram a, b;
    a.add(1000, 50);
    b.add(100'000, 50);
    a.merge(b);
    CHECK(a.total() == 100);
    CHECK(a.percentile(50) <= 1000);
    CHECK(a.percentile(51) > 90'000);
}
