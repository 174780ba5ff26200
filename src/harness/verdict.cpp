#include "ktstr/harness/verdict.hpp"

#include "ktstr/sandbox/sandbox.hpp"

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <string_view>

namespace ktstr {
namespace {

// A timeout at least this long leaves any boot time to reach the init (seconds, even in
// the emulated sandbox).
constexpr std::chrono::seconds kBootAllowance{40};

std::string seconds(double ms) { return fmt::format("{:.1f} s", ms / 1000.0); }

// The scheduler's verdict, if it is the reason the run failed.
std::optional<Verdict> judge_scheduler(const std::string& name, const SchedulerFate& fate,
                                       std::chrono::milliseconds attach_timeout) {
    if (!fate.attached) {
        if (fate.verifier_rejected)
            return Verdict{"scheduler_rejected_by_verifier", verdicts::kVerifierRejected,
                           fmt::format("the BPF verifier rejected {}; the end of its log:\n{}",
                                       name, printable(fate.verifier_log_tail))};
        std::string why =
            fate.attach_error == "timed out"
                ? fmt::format("did not attach within {} s", double(attach_timeout.count()) / 1000.0)
                : "exited before it attached";
        if (fate.exit)
            why += fate.exit->signal ? fmt::format(" (killed by signal {})", fate.exit->signal)
                                     : fmt::format(" (status {})", fate.exit->status);
        return Verdict{"scheduler_not_attached", verdicts::kNotAttached,
                       fmt::format("scheduler {} {}; the command did not run. Its output "
                                   "ended with:\n{}",
                                   name, why, fate.output_tail)};
    }
    if (fate.ejection) {
        const auto& e = *fate.ejection;
        std::string kind = e.kind.value >= 0 ? fmt::format("{} ({})", e.kind.name, e.kind.value)
                                             : std::string("an exit kind ktstr does not know");
        std::string when = e.since_attach_ms ? seconds(*e.since_attach_ms) + " after it attached"
                                             : std::string("during the run");
        return Verdict{"scheduler_ejected", verdicts::kEjected,
                       fmt::format("the kernel ejected scheduler {} {}: {}{} [exit kind {}]", name,
                                   when, e.reason.empty() ? "(no reason given)" : e.reason,
                                   e.message.empty() ? "" : " (" + e.message + ")", kind)};
    }
    if (fate.exit && fate.exit->before_stop) {
        std::string how = fate.exit->signal
                              ? fmt::format("crashed (signal {}, {})", fate.exit->signal,
                                            ::strsignal(fate.exit->signal))
                              : fmt::format("exited by itself (status {})", fate.exit->status);
        std::string when =
            fate.attached_at_ms
                ? " " + seconds(fate.exit->at_ms - *fate.attached_at_ms) + " after it attached"
                : "";
        return Verdict{"scheduler_exited", verdicts::kSchedulerExited,
                       fmt::format("scheduler {} {}{}; its output ended with:\n{}", name, how, when,
                                   fate.output_tail)};
    }
    if (!fate.detached_cleanly) {
        std::string how = !fate.exit          ? "did not end"
                          : fate.exit->killed ? "did not end within 10 s of SIGINT and was killed"
                          : fate.exit->signal ? fmt::format("died of signal {}", fate.exit->signal)
                          : fate.exit->status
                              ? fmt::format("exited with status {}", fate.exit->status)
                              : "left sched_ext " + fate.final_state;
        return Verdict{
            "scheduler_detach_failed", verdicts::kDetachFailed,
            fmt::format("scheduler {} did not detach cleanly: asked to stop, it {}", name, how)};
    }
    return std::nullopt;
}

// Console text as evidence for a verdict; nothing when the user saw the whole console
// already (--verbose).
std::string evidence(const RunPlan& plan, std::string_view console_text) {
    return plan.options.verbose ? std::string() : printable(console_text);
}

// The console's last part, as evidence.
std::string console_evidence(const RunPlan& plan, std::string_view console) {
    constexpr std::size_t kShown = 4000;
    return evidence(plan,
                    console.size() > kShown ? console.substr(console.size() - kShown) : console);
}

Verdict judge_timeout(const RunPlan& plan, const SessionResult& result) {
    std::string message =
        fmt::format("the guest did not finish within {}; stopped it", plan.options.timeout);
    const BootTimeline& t = result.timeline;
    // A guest that wrote its hang report was alive: the report says where it hung.
    std::string report = find_hang_report(result.console);
    if (!report.empty() || t.hang_report_seen)
        return {"timeout", verdicts::kTimeout, message, evidence(plan, report)};
    std::string evidence = console_evidence(plan, result.console);
    std::string stopped; // how we know the guest no longer ran
    if (t.hang_report_due && *t.hang_report_due + std::chrono::seconds(10) <= t.torn_down &&
        !(t.console_last_output && *t.console_last_output >= *t.hang_report_due)) {
        auto due = std::chrono::duration<double, std::milli>(*t.hang_report_due - t.started);
        stopped = "the guest had stopped running: the hang report its init promised for " +
                  seconds(due.count()) + " into the run never came, nor anything else";
    } else if (!t.init_started && !t.hang_report_due && plan.timeout &&
               *plan.timeout >= kBootAllowance &&
               !(t.console_last_output &&
                 *t.console_last_output + std::chrono::seconds(20) > t.torn_down)) {
        stopped = "the guest kernel never started its init, and its console fell silent";
    }
    if (stopped.empty())
        return {"timeout", verdicts::kTimeout, message, evidence};
    message += "; " + stopped;
    // Seen only under the emulated sandbox, where nested SVM sometimes stops an L2 for good
    // (boots there take seconds, so a kernel that hangs in its own boot is the rare other
    // cause; its console above tells). Elsewhere either stays a timeout.
    if (std::getenv(kInSandboxVariable))
        return {"sandbox_failure", kSandboxFailureStatus,
                message + ": a failure of the emulated sandbox (nested KVM)", evidence};
    return {"timeout", verdicts::kTimeout, message, evidence};
}

} // namespace

std::string find_panic(const std::string& console) {
    if (console.find("Kernel panic") == std::string::npos &&
        console.find("Oops:") == std::string::npos)
        return {};
    // From the first line of the report: an oops starts with "BUG: ..." or "Oops: ...", and
    // with oops=panic the panic line only follows it.
    std::size_t at = std::string::npos;
    for (const char* marker : {"Kernel panic", "Oops:", "BUG:"})
        at = std::min(at, console.find(marker));
    std::size_t line = console.rfind('\n', at);
    return console.substr(line == std::string::npos ? 0 : line + 1);
}

std::string printable(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text)
        if (c != '\r') // the serial console ends its lines with "\r\n"
            out += (std::uint8_t(c) < 0x20 && c != '\n' && c != '\t') || std::uint8_t(c) > 0x7e
                       ? '?'
                       : c;
    return out;
}

std::string find_hang_report(const std::string& console) {
    std::size_t at = console.rfind(guest_protocol::kHangReportMarker);
    if (at == std::string::npos)
        return {};
    constexpr std::string_view kProcessLine = guest_protocol::kHangReportLinePrefix;
    std::size_t end = console.find('\n', at);
    while (end != std::string::npos &&
           console.compare(end + 1, kProcessLine.size(), kProcessLine) == 0)
        end = console.find('\n', end + 1);
    return console.substr(at, end == std::string::npos ? std::string::npos : end + 1 - at);
}

Verdict judge_run(const RunPlan& plan, const SessionResult& result,
                  const std::optional<SchedulerFate>& fate) {
    const StopReason& stop = result.stop;
    if (!result.output_failure.empty())
        return {"interrupted", 128 + SIGPIPE, result.output_failure + "; stopped the guest"};
    if (!result.channel_broken.empty())
        return {"error", verdicts::kError, result.channel_broken + "; stopped the guest"};
    // Under the emulated sandbox, KVM on (emulated) SVM sometimes resets an L2 that had done
    // nothing wrong; seen only there, and only in that reset state.
    if (stop.kind == StopReason::Kind::triple_fault && stop.in_reset_state &&
        std::getenv(kInSandboxVariable))
        return {"sandbox_failure", kSandboxFailureStatus,
                stop.message + ", reported in the CPU's reset state: a failure of the emulated "
                               "sandbox (nested SVM), not of the guest"};
    // Seen there too, under load: KVM itself fails to run the L2 (suberror 1, an emulation
    // failure, with an L2 that had done nothing unusual; QEMU's L2s die the same way there).
    if (stop.kind == StopReason::Kind::kvm_internal_error && std::getenv(kInSandboxVariable))
        return {"sandbox_failure", kSandboxFailureStatus,
                stop.message + ": a failure of the emulated sandbox (nested KVM)"};
    if (std::string panic = find_panic(result.console); !panic.empty()) {
        // Under the emulated sandbox the guest's CPU state is sometimes corrupted (its GS base
        // among others): the kernel faults in its own entry code until it runs off the entry
        // stack. No workload or scheduler reaches that state; outside the sandbox it stays a
        // panic like any other.
        if (std::getenv(kInSandboxVariable) &&
            panic.find("ENTRY_TRAMPOLINE stack guard page was hit") != std::string::npos)
            return {"sandbox_failure", kSandboxFailureStatus,
                    "the guest kernel ran off its entry stack (" +
                        panic.substr(0, panic.find('\n')) +
                        "): corrupted CPU state, a failure of the emulated sandbox (nested SVM)"};
        return {"kernel_panic", verdicts::kKernelPanic,
                "the guest kernel panicked:\n" + printable(panic)};
    }
    if (plan.scheduler) {
        if (!fate && (result.exit_status || result.command_not_run))
            return {"error", verdicts::kError, "the guest init sent no scheduler report"};
        if (fate)
            if (auto verdict = judge_scheduler(plan.scheduler->name, *fate, plan.attach_timeout))
                return *verdict;
    }
    if (result.exit_status)
        return *result.exit_status == 0 ? Verdict{"passed", verdicts::kPassed, ""}
                                        : Verdict{"command_failed", *result.exit_status, ""};
    if (!result.init_error.empty())
        return {"error", verdicts::kError, "the guest init failed: " + result.init_error};
    switch (stop.kind) {
    case StopReason::Kind::timeout: return judge_timeout(plan, result);
    case StopReason::Kind::interrupted:
        return {"interrupted", 128 + (stop.signal ? stop.signal : SIGINT), stop.message};
    default:
        return {"error", verdicts::kError,
                "the guest stopped before the command finished: " + stop.message,
                console_evidence(plan, result.console)};
    }
}

Verdict account_for_host(Verdict verdict, const SessionResult& result) {
    if (verdict.status == verdicts::kPassed || result.host_trouble.empty())
        return verdict;
    if (std::getenv(kInSandboxVariable)) {
        std::string said = verdict.message.substr(0, verdict.message.find('\n'));
        return {"sandbox_failure", kSandboxFailureStatus,
                fmt::format("{}{}, while the emulated sandbox's L1 kernel reported: {}",
                            verdict.name, said.empty() ? "" : " (" + said + ")",
                            result.host_trouble),
                verdict.detail};
    }
    verdict.message += (verdict.message.empty() ? "" : "; ") +
                       std::string("meanwhile this machine's kernel reported: ") +
                       result.host_trouble;
    return verdict;
}

} // namespace ktstr
