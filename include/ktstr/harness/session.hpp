#pragma once

#include "ktstr/harness/run.hpp"
#include "ktstr/harness/run_plan.hpp"
#include "ktstr/vmm/vm_stop.hpp"

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace ktstr {

// What one boot left for the verdict.
struct SessionResult {
    StopReason stop;
    std::optional<int> exit_status;      // the command's, from the guest init
    std::string init_error;              // the init could not run the command
    std::string channel_broken;          // the result channel broke (and the run stopped)
    std::string output_failure;          // our stdout or stderr failed (the reader went away)
    std::string console;                 // the tail of the guest kernel's console
    bool command_not_run = false;        // the init did not start it (the scheduler failed)
    std::vector<nlohmann::json> reports; // what the init reported (the scheduler's fate)
    std::string scheduler_output;        // the tail of the scheduler's stdout and stderr
    std::string host_trouble;            // what this machine's kernel reported meanwhile
    BootTimeline timeline;
};

// Boots the plan's kernel and runs the command, with its output streamed to this process's
// stdout and stderr through the event loop (a stalled reader slows the guest, never a
// stop), and, for `ktstr shell`, this terminal as the guest's console. With `count_exits`,
// the timeline counts the VM exits (which costs a little on each).
SessionResult run_session(const RunPlan& plan, bool count_exits = false);

} // namespace ktstr
