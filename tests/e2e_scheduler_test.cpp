// End to end: sched_ext schedulers under `ktstr run` — attached, watched, stopped, and
// judged — on the cached kernel with the schedulers `ktstr scheduler build` made for it.
#include "ktstr/base/files.hpp"
#include "test_support.hpp"

#include <catch2/catch_test_macros.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

using namespace ktstr;
namespace fs = std::filesystem;

namespace {

// A CPU load on every CPU of 1n2l2c1t, for a few seconds, while the scheduler runs.
constexpr const char* kLoad =
    "-- sh -c 'for i in 1 2 3 4; do timeout 4 yes > /dev/null & done; wait; echo load-done'";

struct Run {
    test::CommandResult result;
    nlohmann::json json;
};

// `ktstr run --json` with `args`; checks the JSON against the schema.
Run run_with_json(const std::string& args) {
    TempDir dir("ktstr-e2e-sched");
    fs::path json = dir.path() / "result.json";
    Run run{test::run_ktstr("run --topology 1n2l2c1t --json " + json.string() + " " + args), {}};
    INFO(run.result.err);
    REQUIRE(fs::exists(json));
    auto valid =
        test::run_shell(std::string(KTSTR_SOURCE_DIR) + "/tests/validate_json.sh " +
                        KTSTR_SOURCE_DIR + "/schemas/run-result.schema.json " + json.string());
    INFO(valid.out << valid.err);
    CHECK(valid.exit_code == 0);
    run.json = nlohmann::json::parse(read_file(json));
    return run;
}

} // namespace

TEST_CASE("a sound scheduler attaches, stays, detaches cleanly and passes",
          "[e2e][scheduler-pass]") {
    SECTION("scx_simple by name") {
        Run run = run_with_json(std::string("--scheduler scx_simple ") + kLoad);
        INFO(run.result.err);
        CHECK(run.result.exit_code == 0);
        CHECK(run.result.out == "load-done\n");
        CHECK(run.json["verdict"]["name"] == "passed");
        const auto& report = run.json["scheduler"]["report"];
        CHECK(report["attached"] == true);
        CHECK(report["ops"] == "simple");
        CHECK(report["detached_cleanly"] == true);
        std::string states;
        for (const auto& transition : report["transitions"])
            states += transition["state"].get<std::string>() + " ";
        CHECK(states.find("enabled") != std::string::npos);
        CHECK(states.ends_with("disabled "));
    }
    SECTION("scx_ktstr, sound by default, from a path outside the cache") {
        TempDir dir("ktstr-e2e-path");
        auto built = test::run_shell(std::string(KTSTR_BINARY) +
                                     " scheduler list | awk '$1 == \"scx_ktstr\" { print $NF }'");
        REQUIRE(!built.out.empty());
        fs::copy_file(built.out.substr(0, built.out.find('\n')), dir.path() / "my_scheduler");
        Run run =
            run_with_json("--scheduler " + (dir.path() / "my_scheduler").string() + " " + kLoad);
        INFO(run.result.err);
        CHECK(run.result.exit_code == 0);
        CHECK(run.json["scheduler"]["source"] == "given by path");
        CHECK(run.json["scheduler"]["report"]["detached_cleanly"] == true);
    }
    SECTION("no scheduler: the kernel's own, said so") {
        Run run = run_with_json("-- true");
        CHECK(run.result.exit_code == 0);
        CHECK(run.json["scheduler"].is_null());
        CHECK(run.json["scheduler_kind"] == "kernel default (EEVDF)");
    }
}

TEST_CASE("each fault of scx_ktstr gets its own named verdict", "[e2e][scheduler-faults]") {
    // A spinner named spinme, pinned to CPU 0 (for --bad-affinity), for 20 s at most.
    const std::string spinner = " --include /usr/bin/yes -- sh -c 'cp /usr/bin/yes /tmp/spinme; "
                                "taskset -c 0 /tmp/spinme > /dev/null & sleep 20; echo survived'";
    SECTION("stall: tasks named spinme are never dispatched") {
        Run run = run_with_json("--scheduler scx_ktstr --sched-arg=--stall-comm --sched-arg=spinme "
                                "--sched-arg=--timeout-ms --sched-arg=3000" +
                                spinner);
        INFO(run.result.err);
        CHECK(run.result.exit_code == 82);
        CHECK(run.json["verdict"]["name"] == "scheduler_ejected");
        const auto& ejection = run.json["scheduler"]["report"]["ejection"];
        CHECK(ejection["kind"] == 1026);
        CHECK(ejection["reason"] == "runnable task stall");
        CHECK(ejection["message"].get<std::string>().find("spinme") != std::string::npos);
        CHECK(run.result.out.find("survived") == std::string::npos); // ended at once
    }
    SECTION("error exit after 2 s") {
        Run run = run_with_json("--scheduler scx_ktstr --sched-arg=--error-after --sched-arg=2" +
                                spinner);
        INFO(run.result.err);
        CHECK(run.result.exit_code == 82);
        CHECK(run.json["scheduler"]["report"]["ejection"]["kind"] == 1025);
        CHECK(run.result.err.find("injected error") != std::string::npos);
    }
    SECTION("dispatch outside the task's affinity") {
        Run run = run_with_json("--scheduler scx_ktstr --sched-arg=--bad-affinity" + spinner);
        INFO(run.result.err);
        CHECK(run.result.exit_code == 82);
        CHECK(run.json["scheduler"]["report"]["ejection"]["kind"] == 1024);
        CHECK(run.result.err.find("not allowed") != std::string::npos);
    }
    SECTION("a program the verifier must reject") {
        Run run = run_with_json("--scheduler scx_ktstr --sched-arg=--fail-verify -- true");
        INFO(run.result.err);
        CHECK(run.result.exit_code == 81);
        CHECK(run.json["verdict"]["name"] == "scheduler_rejected_by_verifier");
        CHECK(run.json["command"]["ran"] == false);
        CHECK(run.result.err.find("verifier rejected scx_ktstr") != std::string::npos);
    }
    SECTION("a command that fails under a healthy scheduler is the command's failure") {
        Run run = run_with_json("--scheduler scx_ktstr -- sh -c 'exit 9'");
        CHECK(run.result.exit_code == 9);
        CHECK(run.json["verdict"]["name"] == "command_failed");
        CHECK(run.json["scheduler"]["report"]["detached_cleanly"] == true);
    }
}
