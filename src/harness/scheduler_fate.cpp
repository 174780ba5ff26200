#include "ktstr/harness/scheduler_fate.hpp"

#include <array>
#include <sstream>

namespace ktstr {
namespace {

constexpr std::array kExitKinds = {
    ExitKind{64, "UNREG", "unregistered from user space"},
    ExitKind{65, "UNREG_BPF", "unregistered from BPF"},
    ExitKind{66, "UNREG_KERN", "unregistered from the main kernel"},
    ExitKind{67, "SYSRQ", "disabled by sysrq-S"},
    ExitKind{1024, "ERROR", "runtime error"},
    ExitKind{1025, "ERROR_BPF", "scx_bpf_error"},
    ExitKind{1026, "ERROR_STALL", "runnable task stall"},
};

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    return lines;
}

// The last `count` lines of `lines` before index `end`, joined.
std::string tail(const std::vector<std::string>& lines, std::size_t end, std::size_t count) {
    std::string text;
    for (std::size_t i = end > count ? end - count : 0; i < end; ++i)
        text += lines[i] + "\n";
    return text;
}

// libbpf prints the verifier's log between these markers when a program fails to load.
// Its conclusion is the line before "Verification failed: ..." (the refused instruction)
// with that line and the reason after it; older verifiers end with the refusal just before
// "processed N insns".
void read_verifier_log(const std::vector<std::string>& output, SchedulerFate& fate) {
    std::size_t begin = 0;
    for (std::size_t i = 0; i < output.size(); ++i) {
        if (output[i].find("-- BEGIN PROG LOAD LOG --") != std::string::npos)
            begin = i;
        if (output[i].find("-- END PROG LOAD LOG --") == std::string::npos)
            continue;
        fate.verifier_rejected = true;
        std::string conclusion;
        for (std::size_t j = begin; j < i; ++j) {
            if (!output[j].starts_with("Verification failed"))
                continue;
            std::size_t refused = j;
            while (refused > begin && (refused == j || output[refused].empty()))
                --refused;
            conclusion = output[refused] + "\n" + output[j] + "\n";
            std::size_t k = j + 1;
            while (k < i && output[k].empty())
                ++k;
            for (std::size_t end = std::min(i, k + 4); k < end && !output[k].empty(); ++k)
                conclusion += output[k] + "\n";
        }
        fate.verifier_log_tail = conclusion.empty() ? tail(output, i, 12) : conclusion;
    }
}

// "sched_ext: BPF scheduler "ktstr" disabled (runnable task stall)" and the line that
// gives the detail, "sched_ext: ktstr: spinme[128] failed to run for 7.072s".
void read_ejection(const nlohmann::json& kernel_log, const std::vector<std::string>& output,
                   SchedulerFate::Ejection& ejection) {
    constexpr std::string_view kDisabled = "\" disabled (";
    for (std::size_t i = 0; i < kernel_log.size(); ++i) {
        std::string line = kernel_log[i].value("line", "");
        auto at = line.find(kDisabled);
        if (line.find("BPF scheduler \"") == std::string::npos || at == std::string::npos)
            continue;
        std::size_t begin = at + kDisabled.size();
        ejection.reason = line.substr(begin, line.rfind(')') - begin);
        ejection.at_ms = kernel_log[i].value("at_ms", 0.0);
        if (i + 1 < kernel_log.size()) {
            std::string detail = kernel_log[i + 1].value("line", "");
            auto colon = detail.find(": ", detail.find("sched_ext: ") + 11);
            if (detail.starts_with("sched_ext: ") && colon != std::string::npos)
                ejection.message = detail.substr(colon + 2);
        }
        break;
    }
    // The scheduler's own account, when the kernel log said nothing (it may have been
    // lost): "EXIT: runnable task stall (spinme[128] failed to run for 7.072s) on CPU 2".
    for (const auto& line : output) {
        if (!line.starts_with("EXIT: ") || !ejection.reason.empty())
            continue;
        std::string rest = line.substr(6);
        auto paren = rest.find(" (");
        ejection.reason = rest.substr(0, paren);
        if (paren != std::string::npos && ejection.message.empty())
            ejection.message = rest.substr(paren + 2, rest.rfind(')') - paren - 2);
    }
    ejection.kind = exit_kind_of_reason(ejection.reason);
}

} // namespace

ExitKind exit_kind_of_reason(const std::string& reason) {
    for (const auto& kind : kExitKinds)
        if (reason == kind.reason)
            return kind;
    return {-1, "OTHER", ""};
}

std::optional<SchedulerFate> read_scheduler_fate(const std::vector<nlohmann::json>& reports,
                                                 const std::string& scheduler_output) {
    const nlohmann::json* report = nullptr;
    for (const auto& candidate : reports)
        if (candidate.value("type", "") == "scheduler")
            report = &candidate;
    if (!report)
        return std::nullopt;
    SchedulerFate fate;
    fate.report = *report;
    std::vector<std::string> output = lines_of(scheduler_output);
    fate.output_tail = tail(output, output.size(), 20);
    try {
        fate.attached = report->value("attached", false);
        fate.attach_error = report->value("attach_error", "");
        fate.ops = report->value("ops", "");
        for (auto [key, field] : {std::pair{"started_at_ms", &fate.started_at_ms},
                                  std::pair{"attached_at_ms", &fate.attached_at_ms}})
            if (report->contains(key) && (*report)[key].is_number())
                *field = (*report)[key].get<double>();
        fate.final_state = report->value("final_state", "");
        read_verifier_log(output, fate);
        if (report->value("ejected", false)) {
            SchedulerFate::Ejection ejection;
            read_ejection(report->value("kernel_log", nlohmann::json::array()), output, ejection);
            if (ejection.at_ms && fate.attached_at_ms)
                ejection.since_attach_ms = *ejection.at_ms - *fate.attached_at_ms;
            fate.ejection = ejection;
        }
        if (const auto& exit = (*report)["exit"]; exit.is_object()) {
            fate.exit = SchedulerFate::Exit{
                exit.value("status", 0), exit.value("signal", 0), exit.value("at_ms", 0.0),
                exit.value("before_stop", false), exit.value("killed", false)};
        }
    } catch (const nlohmann::json::exception&) {
        // A report of the wrong shape tells us no more than no report.
    }
    fate.detached_cleanly = fate.attached && !fate.ejection && fate.exit &&
                            !fate.exit->before_stop && !fate.exit->killed &&
                            fate.exit->signal == 0 && fate.exit->status == 0 &&
                            fate.final_state == "disabled";
    return fate;
}

} // namespace ktstr
