#pragma once

#include "ktstr/harness/run_plan.hpp"
#include "ktstr/harness/scheduler_fate.hpp"
#include "ktstr/harness/session.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace ktstr {

// A run's verdict: a name, ktstr's exit status for it, and what to tell the user. The
// statuses are documented in the README ("Verdicts").
struct Verdict {
    Verdict(std::string name, int status, std::string message = {}, std::string detail = {})
        : name(std::move(name)), status(status), message(std::move(message)),
          detail(std::move(detail)) {}
    std::string name;
    int status = 0;
    std::string message; // empty when there is nothing to say (passed)
    std::string detail;  // evidence: the guest's hang report, or the console's tail
};

namespace verdicts {
// name: status
inline constexpr int kPassed = 0;            // "passed": the command exited 0, scheduler fine
                                             // "command_failed": the command's own status
inline constexpr int kError = 1;             // "error": ktstr or the result channel failed
inline constexpr int kUsage = 2;             // bad options (before any boot)
inline constexpr int kNotAttached = 80;      // "scheduler_not_attached"
inline constexpr int kVerifierRejected = 81; // "scheduler_rejected_by_verifier"
inline constexpr int kEjected = 82;          // "scheduler_ejected"
inline constexpr int kSchedulerExited = 83;  // "scheduler_exited" (or crashed)
inline constexpr int kDetachFailed = 84;     // "scheduler_detach_failed"
inline constexpr int kKernelPanic = 85;      // "kernel_panic" (or oops)
inline constexpr int kTimeout = 124;         // "timeout": the guest hung
// 75 "sandbox_failure" (kSandboxFailureStatus), 128 + N "interrupted" by signal N
} // namespace verdicts

// The part of the console from the panic or oops report on, if the kernel printed one.
std::string find_panic(const std::string& console);

// Guest text made safe for the user's terminal and for JSON: carriage returns go, and
// bytes that are not printable ASCII (escape sequences among them), tabs and newlines
// aside, become '?'.
std::string printable(std::string_view text);

// The guest init's hang report (its marker line and one line per process), if it wrote one.
std::string find_hang_report(const std::string& console);

// Judges a run from what the session brought back.
Verdict judge_run(const RunPlan& plan, const SessionResult& result,
                  const std::optional<SchedulerFate>& fate);

// A verdict other than a pass, reached while this machine's own kernel reported trouble (a
// lockup, an RCU stall): under the emulated sandbox that run is the sandbox's failure (its
// stalled L1 stalls the guest's vCPUs, which the guest then blames on the scheduler);
// elsewhere the verdict stands and its message says what the host reported.
Verdict account_for_host(Verdict verdict, const SessionResult& result);

} // namespace ktstr
