#include "hang_report.hpp"

#include "channel.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sched.h>
#include <string>
#include <sys/prctl.h>
#include <unistd.h>

namespace proto = ktstr::guest_protocol;

namespace ktstr::guest {
namespace {

std::string first_line_of(const std::filesystem::path& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

std::int64_t uptime_ms() {
    timespec now{};
    ::clock_gettime(CLOCK_BOOTTIME, &now);
    return std::int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1'000'000;
}

// The marker line first, on its own (the host looks for it; reading a stuck process's
// stack can itself stall), then one line per process: "pid (comm) state in wchan: stack".
void report_hang() {
    std::string marker = std::string(proto::kHangReportMarker) + " at " +
                         std::to_string(uptime_ms() / 1000) +
                         " s of uptime, near the host's timeout; the processes:\n";
    write_all(STDERR_FILENO, marker.data(), marker.size());
    constexpr unsigned kKernelThread = 0x00200000; // PF_KTHREAD, in the flags field
    std::string self = std::to_string(::getpid());
    std::error_code ec;
    for (std::filesystem::directory_iterator it("/proc", ec), end; !ec && it != end;
         it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos || name == "1" ||
            name == self)
            continue;
        // "pid (comm) S ppid pgrp session tty tpgid flags ...": fields after the last ')'.
        std::string stat = first_line_of(it->path() / "stat");
        auto paren = stat.rfind(')');
        char state = 0;
        unsigned flags = 0;
        if (paren == std::string::npos ||
            std::sscanf(stat.c_str() + paren + 1, " %c %*d %*d %*d %*d %*d %u", &state, &flags) !=
                2 ||
            (flags & kKernelThread))
            continue;
        std::ifstream stack_in(it->path() / "stack");
        std::string stack, frame;
        for (int i = 0; i < 6 && std::getline(stack_in, frame); ++i)
            stack += (stack.empty() ? "" : " < ") + frame.substr(frame.find(' ') + 1);
        std::string line = proto::kHangReportLinePrefix + name + " (" +
                           first_line_of(it->path() / "comm") + ") " + state + " in " +
                           first_line_of(it->path() / "wchan") + ": " + stack + "\n";
        write_all(STDERR_FILENO, line.data(), line.size());
    }
}

} // namespace

void arm_hang_report() {
    long at_ms = 0;
    if (std::ifstream in(proto::kHangReportFile); !(in >> at_ms) || at_ms <= 0)
        return;
    std::int64_t armed_ms = uptime_ms();
    pid_t reporter = ::fork();
    if (reporter < 0)
        return;
    if (reporter == 0) {
        // Real-time above any workload's priority and any sched_ext scheduler's tasks, out
        // of the OOM killer's reach and named for what it is: only a guest that no longer
        // runs at all (or whose kernel is wedged) misses the moment.
        ::prctl(PR_SET_NAME, "ktstr-hangrep");
        if (int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC); fd >= 0) {
            write_all(fd, "-1000", 5);
            ::close(fd);
        }
        sched_param priority{.sched_priority = ::sched_get_priority_max(SCHED_FIFO)};
        ::sched_setscheduler(0, SCHED_FIFO, &priority);
        timespec at{.tv_sec = at_ms / 1000, .tv_nsec = (at_ms % 1000) * 1'000'000};
        while (::clock_nanosleep(CLOCK_BOOTTIME, TIMER_ABSTIME, &at, nullptr) == EINTR) {
        }
        report_hang();
        ::_exit(0);
    }
    // Measured before the fork: the host's idea of the moment errs late, never early.
    auto due_in = std::uint32_t(std::clamp<std::int64_t>(at_ms - armed_ms, 0, INT32_MAX));
    send_frame(proto::FrameKind::hang_report_due, &due_in, sizeof due_in);
}

} // namespace ktstr::guest
