#include "ktstr/harness/run.hpp"

#include "ktstr/base/files.hpp"
#include "ktstr/harness/boot_images.hpp"
#include "ktstr/harness/guest_channel.hpp"
#include "ktstr/harness/run_plan.hpp"
#include "ktstr/harness/run_result.hpp"
#include "ktstr/harness/scheduler_fate.hpp"
#include "ktstr/harness/session.hpp"
#include "ktstr/harness/verdict.hpp"

#include <iostream>

namespace ktstr {

// options -> a checked plan -> boot images and a booted machine (session) -> the scheduler's
// fate -> verdict, told on stderr and written as JSON.
int run_in_vm(const RunOptions& options, BootTimeline* timeline) {
    RunPlan plan = make_run_plan(options);
    SessionResult result = run_session(plan, timeline != nullptr);
    if (timeline)
        *timeline = result.timeline;
    std::optional<SchedulerFate> fate =
        read_scheduler_fate(result.reports, result.scheduler_output);
    Verdict verdict = account_for_host(judge_run(plan, result, fate), result);
    if (!verdict.detail.empty())
        std::cerr << verdict.detail;
    if (!verdict.message.empty())
        std::cerr << "ktstr: " << verdict.message << "\n";
    if (options.json_path)
        write_file_atomic(*options.json_path,
                          run_result(plan, result, fate, verdict).dump(2) + "\n");
    return verdict.status;
}

BootImages build_boot_images(const RunOptions& options) {
    RunPlan plan = make_run_plan(options);
    guest_protocol::Key key = GuestChannel::make_key();
    std::filesystem::path bzimage =
        plan.kernel.cached ? plan.kernel.cached->image() : plan.kernel.image;
    return {plan.kernel.image, bzimage, build_initramfs(plan, key), kernel_command_line(plan), key};
}

} // namespace ktstr
