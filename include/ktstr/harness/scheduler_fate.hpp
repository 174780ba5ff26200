#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace ktstr {

// sched_ext's enum scx_exit_kind, as the kernel names a disable in its log.
struct ExitKind {
    int value;          // 64, 1024, ...
    const char* name;   // "UNREG", "ERROR_STALL", ...
    const char* reason; // the kernel's words: "runnable task stall"
    bool error() const { return value >= 1024; }
};
// The kind the kernel's words name; value -1 for words this table does not know.
ExitKind exit_kind_of_reason(const std::string& reason);

// What a scheduler went through in one run, read from the guest init's report and the
// scheduler's own output: the facts a verdict is made from.
struct SchedulerFate {
    bool attached = false;
    std::string attach_error; // "timed out", "exited before attaching"
    std::string ops;          // the name the kernel shows (root/ops)
    std::optional<double> started_at_ms, attached_at_ms;
    bool verifier_rejected = false;
    std::string verifier_log_tail; // the end of libbpf's program load log
    struct Ejection {
        ExitKind kind{-1, "", ""};
        std::string reason;  // "runnable task stall"
        std::string message; // the kernel's detail: "spinme[128] failed to run for 7.072s"
        std::optional<double> at_ms, since_attach_ms;
    };
    std::optional<Ejection> ejection; // disabled before ktstr asked
    struct Exit {
        int status = 0, signal = 0;
        double at_ms = 0;
        bool before_stop = false, killed = false;
    };
    std::optional<Exit> exit;
    std::string final_state;
    bool detached_cleanly = false;
    std::string output_tail; // the last lines the scheduler printed
    nlohmann::json report;   // the init's report as sent
};

// Reads the fate out of the init's report ({"type": "scheduler"}) and the scheduler's
// output; none without a report.
std::optional<SchedulerFate> read_scheduler_fate(const std::vector<nlohmann::json>& reports,
                                                 const std::string& scheduler_output);

} // namespace ktstr
