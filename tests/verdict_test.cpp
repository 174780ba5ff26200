// Verdicts from what a run brought back: the scheduler's fate read from the guest's report
// and its output, and the order in which failures count.
#include "ktstr/harness/verdict.hpp"

#include <catch2/catch_test_macros.hpp>
#include <cstdlib>

using namespace ktstr;
using nlohmann::json;

namespace {

json attached_report() {
    return {{"type", "scheduler"},
            {"attached", true},
            {"attach_error", ""},
            {"attached_at_ms", 1000.0},
            {"ops", "ktstr"},
            {"ejected", false},
            {"final_state", "disabled"},
            {"transitions", json::array()},
            {"kernel_log", json::array()},
            {"events", json::object()},
            {"exit",
             {{"status", 0},
              {"signal", 0},
              {"at_ms", 9000.0},
              {"before_stop", false},
              {"killed", false}}},
            {"dump", ""}};
}

RunPlan plan_with_scheduler() {
    RunPlan plan;
    plan.options.command = {"true"};
    plan.scheduler = SchedulerChoice{"scx_ktstr", "/x/scx_ktstr", {}, "test", std::string(64, '0')};
    return plan;
}

SessionResult finished_with(int status, json report, std::string output = {}) {
    SessionResult result;
    result.stop = {StopReason::Kind::reset, "reset"};
    result.exit_status = status;
    result.reports = {std::move(report)};
    result.scheduler_output = std::move(output);
    return result;
}

Verdict judge(const RunPlan& plan, const SessionResult& result) {
    return judge_run(plan, result, read_scheduler_fate(result.reports, result.scheduler_output));
}

} // namespace

TEST_CASE("a healthy scheduler leaves the verdict to the command", "[verdict]") {
    RunPlan plan = plan_with_scheduler();
    CHECK(judge(plan, finished_with(0, attached_report())).name == "passed");
    Verdict failed = judge(plan, finished_with(3, attached_report()));
    CHECK(failed.name == "command_failed");
    CHECK(failed.status == 3);
}

TEST_CASE("an ejection is read from the kernel's log, with its kind and victim", "[verdict]") {
    json report = attached_report();
    report["ejected"] = true;
    report["kernel_log"] = {
        {{"at_ms", 900.0}, {"line", "sched_ext: BPF scheduler \"ktstr\" enabled"}},
        {{"at_ms", 8500.0},
         {"line", "sched_ext: BPF scheduler \"ktstr\" disabled (runnable task stall)"}},
        {{"at_ms", 8500.1}, {"line", "sched_ext: ktstr: spinme[128] failed to run for 7.072s"}}};
    report["exit"]["before_stop"] = true;
    SessionResult result = finished_with(137, report);
    auto fate = read_scheduler_fate(result.reports, result.scheduler_output);
    REQUIRE(fate);
    REQUIRE(fate->ejection);
    CHECK(fate->ejection->kind.value == 1026);
    CHECK(fate->ejection->message == "spinme[128] failed to run for 7.072s");
    CHECK(*fate->ejection->since_attach_ms == 7500.0);
    Verdict verdict = judge_run(plan_with_scheduler(), result, fate);
    CHECK(verdict.name == "scheduler_ejected");
    CHECK(verdict.status == verdicts::kEjected);
    CHECK(verdict.message.find("spinme[128]") != std::string::npos);
    CHECK(verdict.message.find("ERROR_STALL (1026)") != std::string::npos);
}

TEST_CASE("without the kernel's words, the scheduler's EXIT line names the ejection", "[verdict]") {
    json report = attached_report();
    report["ejected"] = true;
    auto fate = read_scheduler_fate(
        {report}, "local=3\nEXIT: scx_bpf_error (scx_ktstr.bpf.c:255: injected) on CPU 2\n");
    REQUIRE(fate->ejection);
    CHECK(fate->ejection->kind.value == 1025);
    CHECK(fate->ejection->message == "scx_ktstr.bpf.c:255: injected");
}

TEST_CASE("a scheduler that never attached: verifier rejection or not", "[verdict]") {
    json report = attached_report();
    report["attached"] = false;
    report["attach_error"] = "exited before attaching";
    report["exit"]["status"] = 1;
    report["exit"]["before_stop"] = true;
    SessionResult rejected = finished_with(0, report,
                                           "libbpf: prog 'x': BPF program load failed\n"
                                           "-- BEGIN PROG LOAD LOG --\nR1 invalid mem access\n"
                                           "-- END PROG LOAD LOG --\n");
    rejected.exit_status.reset();
    rejected.command_not_run = true;
    Verdict verdict = judge(plan_with_scheduler(), rejected);
    CHECK(verdict.name == "scheduler_rejected_by_verifier");
    CHECK(verdict.message.find("R1 invalid mem access") != std::string::npos);

    // The newer verifier's summary: the refusal, "Verification failed" and the reason.
    SessionResult explained = rejected;
    explained.scheduler_output = "-- BEGIN PROG LOAD LOG --\n97: (7b) *(u64 *)(r7 +16) = r1\n"
                                 "R7 invalid mem access 'scalar'\n\nVerification failed: "
                                 "Register Type Safety: Invalid dereference\n\nReason:\n  R7 "
                                 "is an integer scalar here\n\nAt:\n  qmap_dequeue\n"
                                 "processed 71 insns\n-- END PROG LOAD LOG --\n";
    std::string message = judge(plan_with_scheduler(), explained).message;
    CHECK(message.find("R7 invalid mem access 'scalar'\nVerification failed") != std::string::npos);
    CHECK(message.find("R7 is an integer scalar here") != std::string::npos);
    CHECK(message.find("qmap_dequeue") == std::string::npos);

    SessionResult silent = finished_with(0, report, "Failed to open skel\n");
    silent.exit_status.reset();
    silent.command_not_run = true;
    CHECK(judge(plan_with_scheduler(), silent).name == "scheduler_not_attached");
}

TEST_CASE("a crash, an exit on its own and an unclean detach are told apart", "[verdict]") {
    json crashed = attached_report();
    crashed["exit"]["signal"] = 11;
    crashed["exit"]["before_stop"] = true;
    Verdict verdict = judge(plan_with_scheduler(), finished_with(0, crashed));
    CHECK(verdict.name == "scheduler_exited");
    CHECK(verdict.message.find("signal 11") != std::string::npos);

    json stuck = attached_report();
    stuck["exit"]["killed"] = true;
    stuck["final_state"] = "enabled";
    CHECK(judge(plan_with_scheduler(), finished_with(0, stuck)).name == "scheduler_detach_failed");

    json refused = attached_report();
    refused["exit"]["status"] = 1;
    CHECK(judge(plan_with_scheduler(), finished_with(0, refused)).name ==
          "scheduler_detach_failed");
}

TEST_CASE("a kernel panic outranks the scheduler and the command", "[verdict]") {
    SessionResult result = finished_with(0, attached_report());
    result.console = "[ 3.1] BUG: kernel NULL pointer dereference\n[ 3.2] Kernel panic - not "
                     "syncing: Fatal exception\n";
    Verdict verdict = judge(plan_with_scheduler(), result);
    CHECK(verdict.name == "kernel_panic");
    CHECK(verdict.status == verdicts::kKernelPanic);
    CHECK(verdict.message.find("BUG: kernel NULL") != std::string::npos);
}

TEST_CASE("an entry-stack overrun counts as the sandbox's only inside the emulated sandbox",
          "[verdict]") {
    SessionResult result = finished_with(0, attached_report());
    result.console = "[ 3.5] BUG: ENTRY_TRAMPOLINE stack guard page was hit at fffffe62f1564ff8\n"
                     "[ 3.5] Oops: stack guard page: 0000 [#1] SMP NOPTI\n";
    ::unsetenv("KTSTR_IN_SANDBOX");
    CHECK(judge(plan_with_scheduler(), result).name == "kernel_panic");
    ::setenv("KTSTR_IN_SANDBOX", "emulated", 1);
    Verdict sandboxed = judge(plan_with_scheduler(), result);
    ::unsetenv("KTSTR_IN_SANDBOX");
    CHECK(sandboxed.name == "sandbox_failure");
    CHECK(sandboxed.status == 75);
}

TEST_CASE("a timeout whose guest missed its hang report stopped running; the sandbox's only "
          "inside the emulated sandbox",
          "[verdict]") {
    using namespace std::chrono_literals;
    RunPlan plan;
    plan.options.command = {"true"};
    plan.options.timeout = "70s";
    plan.timeout = 70s;
    SessionResult result;
    result.stop = {StopReason::Kind::timeout, "timed out after 70 s"};
    result.timeline.init_started = result.timeline.started + 5s;
    result.timeline.hang_report_due = result.timeline.started + 41s;
    result.timeline.torn_down = result.timeline.started + 71s;
    result.console = "[ 5.0] ktstr-init: started\n";
    ::unsetenv("KTSTR_IN_SANDBOX");
    Verdict outside = judge_run(plan, result, std::nullopt);
    CHECK(outside.name == "timeout");
    CHECK(outside.message.find("the guest had stopped running") != std::string::npos);
    CHECK(outside.message.find("41.0 s into the run") != std::string::npos);
    ::setenv("KTSTR_IN_SANDBOX", "emulated", 1);
    Verdict frozen = judge_run(plan, result, std::nullopt);
    // A guest that wrote its report was alive: its timeout is its own, sandbox or not.
    result.console += "ktstr-init: hang report at 40 s of uptime, near the host's timeout; ...\n";
    Verdict alive = judge_run(plan, result, std::nullopt);
    // Nor is a report missed when it was not due yet, 10 s before the end (a slow boot).
    result.console = "[ 5.0] ktstr-init: started\n";
    result.timeline.hang_report_due = result.timeline.started + 62s;
    Verdict not_due = judge_run(plan, result, std::nullopt);
    // Nor when the init never said when it would come.
    result.timeline.hang_report_due.reset();
    Verdict not_promised = judge_run(plan, result, std::nullopt);
    // Nor when the console spoke after the report was due (a report lost in the noise).
    result.timeline.hang_report_due = result.timeline.started + 41s;
    result.timeline.console_last_output = result.timeline.started + 50s;
    Verdict spoke = judge_run(plan, result, std::nullopt);
    // Nor when the report was seen, though the console's tail no longer holds it.
    result.timeline.console_last_output.reset();
    result.timeline.hang_report_seen = result.timeline.started + 41s;
    Verdict seen = judge_run(plan, result, std::nullopt);
    ::unsetenv("KTSTR_IN_SANDBOX");
    CHECK(frozen.name == "sandbox_failure");
    CHECK(frozen.status == 75);
    CHECK(alive.name == "timeout");
    CHECK(alive.message.find("stopped running") == std::string::npos);
    CHECK(not_due.name == "timeout");
    CHECK(not_promised.name == "timeout");
    CHECK(spoke.name == "timeout");
    CHECK(spoke.message.find("stopped running") == std::string::npos);
    CHECK(seen.name == "timeout");
    CHECK(seen.message.find("stopped running") == std::string::npos);
}

TEST_CASE("a timeout long enough for any boot whose kernel never started the init is the "
          "sandbox's only inside the emulated sandbox",
          "[verdict]") {
    using namespace std::chrono_literals;
    RunPlan plan;
    plan.options.command = {"true"};
    plan.options.timeout = "120s";
    plan.timeout = 120s;
    SessionResult result;
    result.stop = {StopReason::Kind::timeout, "timed out after 120 s"};
    result.timeline.torn_down = result.timeline.started + 121s;
    result.console = "[ 0.0] Linux version 7.3.4\n";
    ::unsetenv("KTSTR_IN_SANDBOX");
    Verdict outside = judge_run(plan, result, std::nullopt);
    ::setenv("KTSTR_IN_SANDBOX", "emulated", 1);
    Verdict inside = judge_run(plan, result, std::nullopt);
    // A console that still spoke near the end was a boot still going.
    result.timeline.console_last_output = result.timeline.started + 110s;
    Verdict speaking = judge_run(plan, result, std::nullopt);
    result.timeline.console_last_output = result.timeline.started + 2s;
    Verdict silent = judge_run(plan, result, std::nullopt);
    // A short timeout may end a slow boot: that stays a timeout.
    plan.options.timeout = "20s";
    plan.timeout = 20s;
    Verdict short_timeout = judge_run(plan, result, std::nullopt);
    ::unsetenv("KTSTR_IN_SANDBOX");
    CHECK(outside.name == "timeout");
    CHECK(outside.message.find("never started its init") != std::string::npos);
    CHECK(outside.detail == result.console); // the console shows where the boot stopped
    CHECK(inside.name == "sandbox_failure");
    CHECK(inside.status == 75);
    CHECK(short_timeout.name == "timeout");
    CHECK(speaking.name == "timeout");
    CHECK(silent.name == "sandbox_failure");
    CHECK(short_timeout.message.find("never started") == std::string::npos);
}

TEST_CASE("a timeout shows the guest's hang report, without what came after it", "[verdict]") {
    RunPlan plan;
    plan.options.command = {"sleep", "1000"};
    plan.options.timeout = "70s";
    SessionResult result;
    result.stop = {StopReason::Kind::timeout, "timed out after 70 s"};
    result.console = "[ 5.0] ktstr-init: started\n"
                     "ktstr-init: hang report at 50 s of uptime, near the host's timeout; the "
                     "processes:\n"
                     "ktstr-init:   97 (sleep) S in hrtimer_nanosleep: do_nanosleep\n"
                     "ktstr-init:   98 (sh) S in do_wait: kernel_wait4\n"
                     "[ 61.0] random: crng reseeded\n";
    Verdict verdict = judge_run(plan, result, std::nullopt);
    CHECK(verdict.name == "timeout");
    CHECK(verdict.detail == result.console.substr(result.console.find("ktstr-init: hang"),
                                                  result.console.find("[ 61.0]") -
                                                      result.console.find("ktstr-init: hang")));
    CHECK(find_hang_report("[ 5.0] ktstr-init: started\n").empty());
    // What the guest wrote reaches the user's terminal without its control characters.
    result.console = "ktstr-init: hang report at 50 s\nktstr-init:   97 (\x1b]0;x\x07) S\n";
    CHECK(judge_run(plan, result, std::nullopt).detail ==
          "ktstr-init: hang report at 50 s\nktstr-init:   97 (?]0;x?) S\n");
}

TEST_CASE("a KVM internal error counts as the sandbox's only inside the emulated sandbox",
          "[verdict]") {
    RunPlan plan;
    plan.options.command = {"true"};
    SessionResult result;
    result.stop = {StopReason::Kind::kvm_internal_error, "vCPU 6: KVM internal error (suberror 1)"};
    ::unsetenv("KTSTR_IN_SANDBOX");
    Verdict outside = judge_run(plan, result, std::nullopt);
    ::setenv("KTSTR_IN_SANDBOX", "emulated", 1);
    Verdict inside = judge_run(plan, result, std::nullopt);
    ::unsetenv("KTSTR_IN_SANDBOX");
    CHECK(outside.name == "error");
    CHECK(outside.message.find("suberror 1") != std::string::npos);
    CHECK(inside.name == "sandbox_failure");
    CHECK(inside.status == 75);
}

TEST_CASE("a failure while this machine's kernel reported trouble is the sandbox's only inside "
          "the emulated sandbox; a pass stands",
          "[verdict]") {
    SessionResult result;
    result.host_trouble = "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:";
    Verdict ejected{"scheduler_ejected", verdicts::kEjected,
                    "the kernel ejected scheduler scx_simple\nmore", "console"};
    ::unsetenv("KTSTR_IN_SANDBOX");
    Verdict outside = account_for_host(ejected, result);
    CHECK(outside.name == "scheduler_ejected");
    CHECK(outside.status == verdicts::kEjected);
    CHECK(outside.message.ends_with("; meanwhile this machine's kernel reported: " +
                                    result.host_trouble));
    ::setenv("KTSTR_IN_SANDBOX", "emulated", 1);
    Verdict inside = account_for_host(ejected, result);
    CHECK(inside.name == "sandbox_failure");
    CHECK(inside.status == 75);
    CHECK(inside.message == "scheduler_ejected (the kernel ejected scheduler scx_simple), while "
                            "the emulated sandbox's L1 kernel reported: " +
                                result.host_trouble);
    CHECK(inside.detail == "console");
    CHECK(account_for_host({"passed", verdicts::kPassed}, result).name == "passed");
    result.host_trouble.clear();
    CHECK(account_for_host(ejected, result).name == "scheduler_ejected");
    ::unsetenv("KTSTR_IN_SANDBOX");
}
