#include "ktstr/harness/scenario_test.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/checks/checks.hpp"
#include "ktstr/harness/guest_protocol.hpp"
#include "ktstr/harness/run_plan.hpp"
#include "ktstr/harness/run_result.hpp"
#include "ktstr/harness/scheduler_fate.hpp"
#include "ktstr/harness/session.hpp"
#include "ktstr/harness/verdict.hpp"
#include "ktstr/sandbox/sandbox.hpp"
#include "ktstr/scenario/catalogue.hpp"
#include "ktstr/vmm/platform.hpp"

#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <iostream>
#include <sstream>

namespace fs = std::filesystem;

namespace ktstr {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

inline constexpr const char* kTestResultSchema = "ktstr-test-result/1";
// Beyond the scenario's duration: the boot, the scheduler's attach, the stop.
constexpr std::chrono::seconds kTimeoutMargin{180};

// One scenario, checked and resolved before anything boots.
struct PlannedTest {
    Scenario scenario;
    json resolved;
    CheckSettings settings;
    RunPlan plan;
};

struct TestOutcome {
    std::string name;
    Verdict verdict;
    std::vector<CheckResult> checks;
    double seconds = 0;
    json result;
};

std::string text_of(const json& object, const char* key) {
    return object.contains(key) && object[key].is_string() ? object[key].get<std::string>() : "";
}

std::string scheduler_name(const RunPlan& plan) {
    return plan.scheduler ? plan.scheduler->name : "EEVDF";
}

PlannedTest plan_test(const std::string& spec, const TestOptions& options) {
    PlannedTest test;
    test.scenario = find_scenario(spec);
    Topology topology = Topology::parse(options.run.topology, host_platform().max_cpus());
    auto duration = options.duration ? parse_duration(*options.duration) : test.scenario.duration;
    test.resolved = resolve_scenario(test.scenario, topology, duration, options.seed);
    test.settings = CheckSettings::defaults();
    test.settings.apply(test.scenario.checks, "scenario " + test.scenario.name + ": checks");
    for (const auto& setting : options.settings)
        test.settings.set(setting);
    RunOptions run = options.run;
    run.command = {guest_protocol::kAgentPath, guest_protocol::kScenarioFile};
    run.command_in_guest = true;
    run.guest_files = {{guest_protocol::kScenarioFile, test.resolved.dump()},
                       {guest_protocol::kReportsFile, ""}};
    if (run.timeout == RunOptions().timeout)
        run.timeout = std::to_string((duration + kTimeoutMargin).count()) + "ms";
    run.json_path.reset();
    test.plan = make_run_plan(run);
    return test;
}

ScenarioRun run_data(const PlannedTest& test, const std::vector<json>& reports) {
    ScenarioRun run = scenario_run_from_reports(test.resolved, reports);
    // ktstr cannot tell whether a sched_ext scheduler implements cgroup weights: they are
    // judged under EEVDF, and under sched_ext only when asked to.
    run.cgroup_weights_honoured =
        !test.plan.scheduler || test.settings.get("cgroup_weights_sched_ext").has_value();
    return run;
}

// The test's verdict: the run's if the run failed, else the checks'.
Verdict judge_test(const Verdict& run_verdict, const std::vector<CheckResult>& checks,
                   const ScenarioRun& data) {
    if (run_verdict.name != "passed" && run_verdict.name != "command_failed")
        return run_verdict;
    if (!data.malformed.empty())
        return {"error", verdicts::kError,
                "the guest sent malformed reports: " + data.malformed.front()};
    if (data.agent.is_null())
        return {"error", verdicts::kError, "the scenario agent sent no summary"};
    if (!data.agent.value("errors", json::array()).empty())
        return {"scenario_error", verdicts::kError,
                "the scenario agent could not do everything the scenario asks: " +
                    data.agent["errors"].dump()};
    std::vector<std::string> failures;
    for (const auto& check : checks)
        for (const auto& failure : check.failures)
            failures.push_back(check.name + ": " + failure);
    if (!failures.empty())
        return {"check_failed", 1, fmt::format("{}", fmt::join(failures, "\n"))};
    return {"passed", 0};
}

json checks_json(const std::vector<CheckResult>& checks) {
    json out = json::array();
    for (const auto& check : checks)
        out.push_back({{"name", check.name},
                       {"applied", check.applied},
                       {"passed", check.passed()},
                       {"note", check.note},
                       {"measured", check.measured},
                       {"failures", check.failures}});
    return out;
}

void print_report(const std::string& title, const Verdict& verdict, const ScenarioRun& data,
                  const std::vector<CheckResult>& checks, double seconds) {
    std::cout << fmt::format("== {}: {} ({:.0f} s)\n", title, verdict.name, seconds);
    auto summaries = summarize(data);
    if (!summaries.empty()) {
        std::cout << fmt::format("  {:<16} {:>7} {:>9} {:>8} {:>10} {:>10} {:>10}\n", "cgroup",
                                 "workers", "cpu s", "spread", "worst gap", "wake p50", "wake p99");
        for (const auto& s : summaries)
            std::cout << fmt::format(
                "  {:<16} {:>7} {:>9.2f} {:>8} {:>7.0f} ms {:>10} {:>10}\n", s.cgroup, s.workers,
                s.cpu_seconds, s.spread_pct ? fmt::format("{:.1f} pt", *s.spread_pct) : "-",
                s.worst_gap_ms, s.wake_p50_us ? fmt::format("{:.0f} us", *s.wake_p50_us) : "-",
                s.wake_p99_us ? fmt::format("{:.0f} us", *s.wake_p99_us) : "-");
    }
    // Checks judge a run that went through; any other verdict is the run's own.
    bool judged = verdict.name == "passed" || verdict.name == "check_failed";
    if (!judged) {
        if (!verdict.message.empty())
            std::cout << "  " << verdict.message << "\n";
        // The evidence (a hang report, the console's tail), indented under it.
        std::istringstream detail(verdict.detail);
        for (std::string line; std::getline(detail, line);)
            std::cout << "    " << line << "\n";
        return;
    }
    std::string line = "  checks:";
    for (const auto& check : checks)
        line += fmt::format(" {} {}", check.name,
                            !check.applied   ? "n/a"
                            : check.passed() ? "ok"
                                             : "FAILED");
    std::cout << line << "\n";
    for (const auto& check : checks)
        for (const auto& failure : check.failures)
            std::cout << "  FAILED " << check.name << ": " << failure << "\n";
}

std::string xml_escape(const std::string& text) {
    std::string out;
    for (char c : text) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default:
            if (std::uint8_t(c) < 0x20 && c != '\n' && c != '\t')
                out += ' ';
            else
                out += c;
        }
    }
    return out;
}

// One JUnit file for the whole invocation: a test case per scenario, a <failure> for
// failed checks, an <error> for any other verdict.
void write_junit(const std::string& path, const std::vector<TestOutcome>& outcomes,
                 const std::vector<PlannedTest>& tests) {
    int failures = 0, errors = 0;
    double total = 0;
    std::string cases;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        const TestOutcome& outcome = outcomes[i];
        const PlannedTest& test = tests[i];
        total += outcome.seconds;
        cases +=
            fmt::format("    <testcase classname=\"ktstr.{}\" name=\"{} [{}, {}]\" "
                        "time=\"{:.3f}\">\n",
                        xml_escape(test.scenario.group.empty() ? "scenario" : test.scenario.group),
                        xml_escape(test.scenario.name), test.plan.topology.to_string(),
                        xml_escape(scheduler_name(test.plan)), outcome.seconds);
        if (outcome.verdict.name == "check_failed") {
            ++failures;
            cases += fmt::format(
                "      <failure message=\"{}\" type=\"check_failed\">{}</failure>\n",
                xml_escape(outcome.verdict.message.substr(0, outcome.verdict.message.find('\n'))),
                xml_escape(outcome.verdict.message));
        } else if (outcome.verdict.name != "passed") {
            ++errors;
            cases += fmt::format(
                "      <error message=\"{}\" type=\"{}\">{}</error>\n",
                xml_escape(outcome.verdict.message.substr(0, outcome.verdict.message.find('\n'))),
                outcome.verdict.name, xml_escape(outcome.verdict.message));
        }
        cases += "    </testcase>\n";
    }
    std::string xml = fmt::format(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<testsuites name=\"ktstr\" tests=\"{0}\" failures=\"{1}\" errors=\"{2}\" "
        "time=\"{3:.3f}\">\n"
        "  <testsuite name=\"ktstr test\" tests=\"{0}\" failures=\"{1}\" errors=\"{2}\" "
        "skipped=\"0\" time=\"{3:.3f}\">\n{4}  </testsuite>\n</testsuites>\n",
        outcomes.size(), failures, errors, total, cases);
    write_file_atomic(path, xml);
}

json test_result(const PlannedTest& test, const SessionResult& session,
                 const std::optional<SchedulerFate>& fate, const Verdict& run_verdict,
                 const Verdict& verdict, const std::vector<CheckResult>& checks) {
    std::vector<json> raw;
    for (const auto& report : session.reports)
        if (report.value("type", "") != "scheduler")
            raw.push_back(report);
    return {{"schema", kTestResultSchema},
            {"scenario", scenario_to_json(test.scenario)},
            {"resolved", test.resolved},
            {"settings", test.settings.to_json()},
            {"run", run_result(test.plan, session, fate, run_verdict)},
            {"reports", raw},
            {"checks", checks_json(checks)},
            {"verdict",
             {{"name", verdict.name}, {"status", verdict.status}, {"message", verdict.message}}}};
}

fs::path json_path_for(const TestOptions& options, const PlannedTest& test, std::size_t count) {
    fs::path target(*options.json);
    if (count == 1 && !fs::is_directory(target))
        return target;
    return target / fmt::format("{}-{}-{}.json", test.scenario.name, test.plan.topology.to_string(),
                                scheduler_name(test.plan));
}

} // namespace

namespace {

std::vector<PlannedTest> plan_tests(const TestOptions& options) {
    if (options.scenarios.empty())
        throw UsageError("no scenario given (ktstr scenario list shows them)");
    std::vector<PlannedTest> tests;
    for (const auto& spec : options.scenarios)
        tests.push_back(plan_test(spec, options));
    if (options.json && tests.size() > 1 && !fs::is_directory(*options.json))
        throw UsageError("--json " + *options.json + ": with several scenarios, a directory");
    if (options.junit && !fs::is_directory(fs::absolute(*options.junit).parent_path()))
        throw UsageError("--junit " + *options.junit + ": its directory does not exist");
    return tests;
}

} // namespace

void run_tests_dry(const TestOptions& options) { plan_tests(options); }

int run_tests(const TestOptions& options) {
    std::vector<PlannedTest> tests = plan_tests(options);
    std::vector<TestOutcome> outcomes;
    int status = 0, sandbox_failures = 0;
    for (std::size_t i = 0; i < tests.size(); ++i) {
        const PlannedTest& test = tests[i];
        std::string title = fmt::format("{} on {} under {}", test.scenario.name,
                                        test.plan.topology.to_string(), scheduler_name(test.plan));
        if (tests.size() > 1)
            std::cout << fmt::format("[{}/{}] {}\n", i + 1, tests.size(), title) << std::flush;
        auto start = Clock::now();
        std::vector<json> baseline;
        bool baseline_spoiled = false;
        if (options.baseline && test.plan.scheduler) {
            RunPlan under_default = test.plan;
            under_default.scheduler.reset();
            SessionResult reference = run_session(under_default);
            Verdict reference_verdict =
                account_for_host(judge_run(under_default, reference, std::nullopt), reference);
            baseline_spoiled = reference_verdict.name == "sandbox_failure";
            for (const auto& report : reference.reports)
                if (text_of(report, "type") == "worker")
                    baseline.push_back(report);
            std::cout << fmt::format("  baseline under EEVDF: {} ({} workers reported)\n",
                                     reference_verdict.name, baseline.size());
        }
        SessionResult session = run_session(test.plan);
        std::optional<SchedulerFate> fate =
            read_scheduler_fate(session.reports, session.scheduler_output);
        Verdict run_verdict = judge_run(test.plan, session, fate);
        if (baseline_spoiled)
            run_verdict = {"sandbox_failure", kSandboxFailureStatus,
                           "the baseline run was spoiled by the emulated sandbox"};
        ScenarioRun data = run_data(test, session.reports);
        data.baseline_workers = scenario_run_from_reports(test.resolved, baseline).workers;
        std::vector<CheckResult> checks = evaluate_checks(data, test.settings);
        Verdict verdict = account_for_host(judge_test(run_verdict, checks, data), session);
        double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        print_report(title, verdict, data, checks, seconds);
        TestOutcome outcome{test.scenario.name, verdict, checks, seconds,
                            test_result(test, session, fate, run_verdict, verdict, checks)};
        outcome.result["baseline_reports"] = baseline;
        // A run the sandbox spoiled says nothing about the scheduler: no result is kept, and
        // the invocation ends with the sandbox's status, so that a caller tries again.
        bool spoiled = verdict.name == "sandbox_failure";
        if (options.json && !spoiled)
            write_file_atomic(json_path_for(options, test, tests.size()),
                              outcome.result.dump(2) + "\n");
        if (spoiled)
            sandbox_failures += 1;
        else if (status == 0)
            status = verdict.status;
        outcomes.push_back(std::move(outcome));
    }
    if (tests.size() > 1) {
        int passed = 0;
        for (const auto& outcome : outcomes)
            passed += outcome.verdict.name == "passed";
        std::cout << fmt::format("{} of {} scenarios passed\n", passed, outcomes.size());
    }
    if (options.junit)
        write_junit(*options.junit, outcomes, tests);
    if (sandbox_failures > 0) {
        std::cout << fmt::format("{} scenario(s) spoiled by the emulated sandbox (status {})\n",
                                 sandbox_failures, kSandboxFailureStatus);
        return kSandboxFailureStatus;
    }
    return status;
}

int check_result(const std::string& path, const std::vector<std::string>& settings_text,
                 const std::optional<std::string>& json_out) {
    json stored = json::parse(read_file(path), nullptr, false);
    if (stored.is_discarded() || stored.value("schema", "") != kTestResultSchema)
        throw UsageError(path + " is not a ktstr test result (" + kTestResultSchema + ")");
    CheckSettings settings = CheckSettings::defaults();
    settings.apply(stored.value("settings", json::object()), path + ": settings");
    for (const auto& setting : settings_text)
        settings.set(setting);
    std::vector<json> reports = stored.value("reports", std::vector<json>{});
    ScenarioRun data = scenario_run_from_reports(stored["resolved"], reports);
    data.baseline_workers =
        scenario_run_from_reports(stored["resolved"],
                                  stored.value("baseline_reports", std::vector<json>{}))
            .workers;
    data.cgroup_weights_honoured = stored["run"]["scheduler"].is_null() ||
                                   settings.get("cgroup_weights_sched_ext").has_value();
    std::vector<CheckResult> checks = evaluate_checks(data, settings);
    const json& run_verdict = stored["run"]["verdict"];
    Verdict verdict = judge_test({run_verdict.value("name", "error"),
                                  run_verdict.value("status", 1), run_verdict.value("message", "")},
                                 checks, data);
    print_report(fmt::format("{} (from {})", stored["scenario"].value("name", "?"), path), verdict,
                 data, checks, 0);
    if (json_out) {
        stored["settings"] = settings.to_json();
        stored["checks"] = checks_json(checks);
        stored["verdict"] = {
            {"name", verdict.name}, {"status", verdict.status}, {"message", verdict.message}};
        write_file_atomic(*json_out, stored.dump(2) + "\n");
    }
    return verdict.status;
}

} // namespace ktstr
