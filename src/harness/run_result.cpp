#include "ktstr/harness/run_result.hpp"

#include "ktstr/sandbox/sandbox.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fmt/chrono.h>
#include <unistd.h>

namespace ktstr {
namespace {

using Clock = BootTimeline::Clock;

nlohmann::json optional_number(const std::optional<double>& value) {
    return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

nlohmann::json scheduler_json(const SchedulerChoice& choice,
                              const std::optional<SchedulerFate>& fate) {
    nlohmann::json json = {{"name", choice.name},
                           {"path", choice.path.string()},
                           {"sha256", choice.sha256},
                           {"args", choice.args},
                           {"source", choice.source}};
    if (!fate) {
        json["report"] = nullptr;
        return json;
    }
    const nlohmann::json& report = fate->report;
    nlohmann::json ejection = nullptr;
    if (fate->ejection) {
        const auto& e = *fate->ejection;
        ejection = {{"kind", e.kind.value},
                    {"kind_name", e.kind.name},
                    {"reason", e.reason},
                    {"message", e.message},
                    {"at_ms", optional_number(e.at_ms)},
                    {"since_attach_ms", optional_number(e.since_attach_ms)}};
    }
    nlohmann::json exit = nullptr;
    if (fate->exit)
        exit = {{"status", fate->exit->status},
                {"signal", fate->exit->signal},
                {"at_ms", fate->exit->at_ms},
                {"before_stop", fate->exit->before_stop},
                {"killed", fate->exit->killed}};
    json["report"] = {
        {"attached", fate->attached},
        {"attach_error", fate->attach_error},
        {"ops", fate->ops},
        {"started_at_ms", optional_number(fate->started_at_ms)},
        {"attached_at_ms", optional_number(fate->attached_at_ms)},
        {"verifier_rejected", fate->verifier_rejected},
        {"transitions", report.value("transitions", nlohmann::json::array())},
        {"kernel_log", report.value("kernel_log", nlohmann::json::array())},
        {"events", report.value("events", nlohmann::json::object())},
        {"ejection", ejection},
        {"exit", exit},
        {"final_state", fate->final_state},
        {"detached_cleanly", fate->detached_cleanly},
        {"dump", report.value("dump", "")},
        {"output_tail", fate->output_tail},
    };
    return json;
}

std::string stop_kind_name(StopReason::Kind kind) {
    switch (kind) {
    case StopReason::Kind::poweroff: return "poweroff";
    case StopReason::Kind::reset: return "reset";
    case StopReason::Kind::triple_fault: return "triple_fault";
    case StopReason::Kind::kvm_internal_error: return "kvm_internal_error";
    case StopReason::Kind::timeout: return "timeout";
    case StopReason::Kind::interrupted: return "interrupted";
    case StopReason::Kind::channel_broken: return "channel_broken";
    case StopReason::Kind::error: return "error";
    }
    return "error";
}

// The end of the guest's console, where a timeout or a crash says what happened, in
// printable ASCII so that the JSON stays valid whatever the guest printed.
std::string console_tail(std::string_view console) {
    constexpr std::size_t kTail = 16 * 1024;
    return printable(console.size() > kTail ? console.substr(console.size() - kTail) : console);
}

} // namespace

nlohmann::json run_result(const RunPlan& plan, const SessionResult& result,
                          const std::optional<SchedulerFate>& fate, const Verdict& verdict) {
    const BootTimeline& t = result.timeline;
    auto since_start = [&](std::optional<Clock::time_point> at) -> nlohmann::json {
        if (!at || *at < t.started)
            return nullptr;
        return std::chrono::duration<double, std::milli>(*at - t.started).count();
    };
    char host[256] = {};
    if (const char* outer = std::getenv(kHostNameVariable))
        std::snprintf(host, sizeof host, "%s", outer);
    else
        ::gethostname(host, sizeof host - 1);
    const RunOptions& options = plan.options;
    return {
        {"schema", kRunResultSchema},
        {"ktstr_version", KTSTR_VERSION},
        {"host", host},
        {"finished_at", fmt::format("{:%FT%TZ}", fmt::gmtime(std::time(nullptr)))},
        {"kernel",
         {{"image", plan.kernel.image.string()},
          {"release", plan.kernel.cached ? nlohmann::json(plan.kernel.cached->release)
                                         : nlohmann::json(nullptr)},
          {"cached", bool(plan.kernel.cached)}}},
        {"topology",
         {{"spec", plan.topology.to_string()},
          {"cpus", plan.topology.cpus()},
          {"nodes", plan.topology.nodes()},
          {"llcs", plan.topology.llcs()},
          {"cores_per_llc", plan.topology.cores_per_llc()},
          {"threads_per_core", plan.topology.threads_per_core()}}},
        {"memory_mib", plan.memory_bytes >> 20},
        {"scheduler",
         plan.scheduler ? scheduler_json(*plan.scheduler, fate) : nlohmann::json(nullptr)},
        {"scheduler_kind", plan.scheduler ? "sched_ext" : "kernel default (EEVDF)"},
        {"command",
         {{"argv", options.command},
          {"ran", !result.command_not_run && result.exit_status.has_value()},
          {"exit_status",
           result.exit_status ? nlohmann::json(*result.exit_status) : nlohmann::json(nullptr)}}},
        {"stop", {{"kind", stop_kind_name(result.stop.kind)}, {"message", result.stop.message}}},
        {"timings_ms",
         {{"vmm_ready", since_start(t.vmm_ready)},
          {"init_started", since_start(t.init_started)},
          {"hang_report_due", since_start(t.hang_report_due)},
          {"command_exited", since_start(t.command_exited)},
          {"torn_down", since_start(t.torn_down)}}},
        {"verdict",
         {{"name", verdict.name}, {"status", verdict.status}, {"message", verdict.message}}},
        {"console_tail", console_tail(result.console)},
    };
}

} // namespace ktstr
