#pragma once

// The sched_ext scheduler under test, from the guest's side: started before the command,
// proven attached, watched for the whole run, stopped at the end, and described to the
// host in a report (the host judges it).

#include "poller.hpp"

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ktstr::guest {

class SchedulerWatch {
  public:
    SchedulerWatch(std::vector<std::string> argv, std::chrono::milliseconds attach_timeout,
                   Poller& poller);
    // Starts the scheduler and waits until sched_ext is enabled with an ops name set, the
    // scheduler exits, or the attach timeout passes. Returns whether it attached.
    bool start();
    // The kernel disabled the scheduler without being asked to (an ejection), or the
    // scheduler process ended by itself.
    bool failed() const { return ejected_ || (exit_ && !stop_requested_); }
    // Asks it to detach (SIGINT) and waits for sched_ext to be disabled and the process to
    // end; a scheduler that takes longer than `limit` is killed.
    void stop(std::chrono::milliseconds limit);
    // After a failure: gives the scheduler a moment to report and end on its own.
    void settle(std::chrono::milliseconds limit);
    // {"type": "scheduler", ...}: what happened, for the host's verdict.
    nlohmann::json report() const;

  private:
    void read_output();
    void read_kernel_log();
    void poll_state();
    void reap();
    double now_ms() const;

    std::vector<std::string> argv_;
    std::chrono::milliseconds attach_timeout_;
    Poller& poller_;
    int pid_ = -1, pidfd_ = -1, output_ = -1, kmsg_ = -1;
    std::string state_ = "disabled";
    std::string ops_;
    bool attached_ = false, ejected_ = false, stop_requested_ = false, killed_ = false;
    std::optional<double> attached_at_, stop_requested_at_;
    std::string attach_error_;
    struct Exit {
        int status = 0, signal = 0;
        double at_ms = 0;
    };
    std::optional<Exit> exit_;
    nlohmann::json transitions_ = nlohmann::json::array();
    nlohmann::json kernel_log_ = nlohmann::json::array();
    nlohmann::json events_ = nlohmann::json::object();
    std::string dump_;
    double started_at_ = 0;
};

} // namespace ktstr::guest
