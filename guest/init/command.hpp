#pragma once

#include "poller.hpp"

#include <string>
#include <vector>

namespace ktstr::guest {

class SchedulerWatch;

// Runs the command with its standard output and error framed to the host, and returns its
// status in the shell's convention (128 + signal). Its exit ends the run: output that
// descendants still write after it is forwarded only for a short while. A scheduler that
// fails meanwhile (`scheduler`, may be null) ends the command at once.
int run_command(const std::vector<std::string>& argv, Poller& poller, SchedulerWatch* scheduler);

// `ktstr shell`: the command owns the console (COM1) as its controlling terminal.
int run_on_console(const std::vector<std::string>& argv, Poller& poller, SchedulerWatch* scheduler);

// For a fatal error: the reason goes to the host (or the console) and the machine resets.
[[noreturn]] void fail(const std::string& message);

} // namespace ktstr::guest
