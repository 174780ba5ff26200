#include "scheduler.hpp"

#include "channel.hpp"
#include "command.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace proto = ktstr::guest_protocol;

namespace ktstr::guest {
namespace {

constexpr const char* kSchedExt = "/sys/kernel/sched_ext";
constexpr const char* kDumpEvent = "/sys/kernel/tracing/events/sched_ext/sched_ext_dump/enable";
constexpr const char* kTrace = "/sys/kernel/tracing/trace";
// State polls often enough to see "disabling", which lasts as long as the kernel takes to
// take the scheduler down; the event counters are only kept as a last snapshot.
constexpr auto kStatePeriod = std::chrono::milliseconds(20);
constexpr auto kEventsPeriod = std::chrono::seconds(1);
constexpr std::size_t kMaxKernelLines = 64;
constexpr std::size_t kMaxDump = 24 * 1024;

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    std::string value = text.str();
    while (!value.empty() && (value.back() == '\n' || value.back() == ' '))
        value.pop_back();
    return value;
}

nlohmann::json read_events() {
    nlohmann::json events = nlohmann::json::object();
    std::ifstream in(std::string(kSchedExt) + "/root/events");
    std::string name;
    long long value;
    while (in >> name >> value)
        events[name] = value;
    return events;
}

// The sched_ext_dump trace lines, without the tracer's prefix; at most kMaxDump bytes.
std::string read_dump() {
    std::ifstream in(kTrace);
    std::string dump;
    for (std::string line; std::getline(in, line) && dump.size() < kMaxDump;) {
        auto at = line.find("sched_ext_dump: ");
        if (at != std::string::npos)
            dump += line.substr(at + 16) + "\n";
    }
    return dump;
}

} // namespace

SchedulerWatch::SchedulerWatch(std::vector<std::string> argv,
                               std::chrono::milliseconds attach_timeout, Poller& poller)
    : argv_(std::move(argv)), attach_timeout_(attach_timeout), poller_(poller) {}

double SchedulerWatch::now_ms() const {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    return double(now.tv_sec) * 1000.0 + double(now.tv_nsec) / 1e6;
}

bool SchedulerWatch::start() {
    // The kernel's own account of an error exit, kept in the trace buffer.
    if (std::ofstream enable(kDumpEvent); enable)
        enable << "1\n";
    kmsg_ = ::open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (kmsg_ >= 0) {
        ::lseek(kmsg_, 0, SEEK_END); // only what comes from now on
        poller_.watch(kmsg_, [this] { read_kernel_log(); });
    }
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0)
        fail("pipe");
    started_at_ = now_ms();
    pid_ = ::fork();
    if (pid_ < 0)
        fail("fork");
    if (pid_ == 0) {
        ::setsid();
        int null = ::open("/dev/null", O_RDONLY);
        ::dup2(null, 0);
        ::close(null);
        ::dup2(out[1], 1);
        ::dup2(out[1], 2);
        std::vector<char*> args;
        for (const auto& arg : argv_)
            args.push_back(const_cast<char*>(arg.c_str()));
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        std::fprintf(stderr, "ktstr init: cannot run the scheduler %s: %s\n", args[0],
                     std::strerror(errno));
        ::_exit(127);
    }
    ::close(out[1]);
    output_ = out[0];
    pidfd_ = int(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd_ < 0)
        fail("pidfd_open");
    poller_.watch(output_, [this] { read_output(); });
    poller_.watch(pidfd_, [this] { reap(); });
    poller_.every(kStatePeriod, [this] { poll_state(); });
    poller_.every(kEventsPeriod, [this] {
        if (state_ == "enabled")
            events_ = read_events();
    });
    poller_.run([this] { return attached_ || exit_; }, Clock::now() + attach_timeout_);
    if (!attached_) {
        attach_error_ = exit_ ? "exited before attaching" : "timed out";
        return false;
    }
    events_ = read_events();
    return true;
}

void SchedulerWatch::read_output() {
    char buffer[16 * 1024];
    ssize_t n = ::read(output_, buffer, sizeof buffer);
    if (n > 0) {
        send_frame(proto::FrameKind::scheduler_output, buffer, std::uint32_t(n));
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        poller_.forget(output_);
        ::close(output_);
        output_ = -1;
    }
}

void SchedulerWatch::read_kernel_log() {
    // One record per read: "level,seq,usec,flags;text" then continuation lines.
    char record[8192];
    for (;;) {
        ssize_t n = ::read(kmsg_, record, sizeof record - 1);
        if (n < 0 && errno == EPIPE)
            continue; // records were overwritten before we read them
        if (n <= 0)
            return;
        std::string text(record, std::size_t(n));
        auto semicolon = text.find(';');
        if (semicolon == std::string::npos)
            continue;
        std::string line = text.substr(semicolon + 1, text.find('\n', semicolon) - semicolon - 1);
        if (line.find("sched_ext") == std::string::npos || kernel_log_.size() >= kMaxKernelLines)
            continue;
        std::istringstream header(text.substr(0, semicolon));
        std::string level, sequence, micros;
        std::getline(header, level, ',');
        std::getline(header, sequence, ',');
        std::getline(header, micros, ',');
        double at_ms = micros.empty() ? now_ms() : std::stod(micros) / 1000.0;
        kernel_log_.push_back({{"at_ms", at_ms}, {"line", line}});
    }
}

void SchedulerWatch::poll_state() {
    std::string state = read_text(std::string(kSchedExt) + "/state");
    if (state.empty() || state == state_)
        return;
    double at = now_ms();
    transitions_.push_back({{"state", state}, {"at_ms", at}});
    if (state == "enabled" && !attached_) {
        ops_ = read_text(std::string(kSchedExt) + "/root/ops");
        if (!ops_.empty()) {
            attached_ = true;
            attached_at_ = at;
        }
    }
    if (state_ == "enabled" && state != "enabled" && !stop_requested_ && attached_)
        ejected_ = true;
    state_ = state;
    if (ejected_ && dump_.empty() && state == "disabled")
        dump_ = read_dump();
}

void SchedulerWatch::reap() {
    int wait_status = 0;
    if (::waitpid(pid_, &wait_status, WNOHANG) != pid_)
        return;
    exit_ = Exit{WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 0,
                 WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0, now_ms()};
    poller_.forget(pidfd_);
    ::close(pidfd_);
    pidfd_ = -1;
    poll_state(); // a scheduler that ended has been disabled by now
}

void SchedulerWatch::stop(std::chrono::milliseconds limit) {
    if (exit_)
        return;
    stop_requested_ = true;
    stop_requested_at_ = now_ms();
    ::kill(pid_, SIGINT);
    auto deadline = Clock::now() + limit;
    if (!poller_.run([this] { return exit_ && state_ == "disabled"; }, deadline)) {
        if (!exit_) {
            killed_ = true;
            ::kill(pid_, SIGKILL);
            poller_.run([this] { return bool(exit_); }, Clock::now() + std::chrono::seconds(5));
        }
    }
    poller_.run([this] { return output_ < 0; }, Clock::now() + std::chrono::milliseconds(200));
}

void SchedulerWatch::settle(std::chrono::milliseconds limit) {
    poller_.run([this] { return bool(exit_) && state_ == "disabled"; }, Clock::now() + limit);
    if (dump_.empty() && ejected_)
        dump_ = read_dump();
    poller_.run([this] { return output_ < 0; }, Clock::now() + std::chrono::milliseconds(200));
}

nlohmann::json SchedulerWatch::report() const {
    nlohmann::json exit = nullptr;
    if (exit_)
        exit = {{"status", exit_->status},
                {"signal", exit_->signal},
                {"at_ms", exit_->at_ms},
                {"before_stop", !stop_requested_},
                {"killed", killed_}};
    return {{"type", "scheduler"},
            {"argv", argv_},
            {"started_at_ms", started_at_},
            {"attached", attached_},
            {"attach_error", attach_error_},
            {"attached_at_ms", attached_at_ ? nlohmann::json(*attached_at_) : nullptr},
            {"ops", ops_},
            {"ejected", ejected_},
            {"stop_requested_at_ms",
             stop_requested_at_ ? nlohmann::json(*stop_requested_at_) : nullptr},
            {"final_state", state_},
            {"transitions", transitions_},
            {"kernel_log", kernel_log_},
            {"events", events_},
            {"exit", exit},
            {"dump", dump_}};
}

} // namespace ktstr::guest
