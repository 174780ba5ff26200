#include "ktstr/base/hang_watchdog.hpp"

#include "ktstr/base/files.hpp"

#include <filesystem>
#include <fmt/format.h>
#include <unistd.h>

namespace ktstr {
namespace {

std::string first_line(const std::filesystem::path& path) {
    try {
        std::string text = read_file(path);
        return text.substr(0, text.find('\n'));
    } catch (const std::exception&) {
        return "?";
    }
}

// The kernel stack's frames joined on one line, at most `frames` of them.
std::string kernel_stack(const std::filesystem::path& path, int frames) {
    std::string text;
    try {
        text = read_file(path);
    } catch (const std::exception&) {
        return "";
    }
    std::string out;
    std::size_t start = 0;
    for (int i = 0; i < frames && start < text.size(); ++i) {
        std::size_t end = text.find('\n', start);
        std::string frame = text.substr(start, end - start);
        if (auto space = frame.find(' '); space != std::string::npos)
            frame = frame.substr(space + 1); // "[<0>] name+0x1/0x2"
        out += (out.empty() ? "" : " < ") + frame;
        if (end == std::string::npos)
            break;
        start = end + 1;
    }
    return out;
}

} // namespace

std::string describe_threads() {
    std::string out;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
        std::string stat = first_line(task.path() / "stat");
        // "tid (comm) S ...": the state follows the last ')'.
        std::string state = "?";
        if (auto paren = stat.rfind(')'); paren != std::string::npos && paren + 2 < stat.size())
            state = stat.substr(paren + 2, 1);
        std::string syscall = first_line(task.path() / "syscall");
        out += fmt::format("  thread {} ({}): state {}, waiting in {}, syscall {}",
                           task.path().filename().string(), first_line(task.path() / "comm"), state,
                           first_line(task.path() / "wchan"), syscall.substr(0, syscall.find(' ')));
        if (std::string stack = kernel_stack(task.path() / "stack", 6); !stack.empty())
            out += ", kernel stack " + stack;
        out += "\n";
    }
    return out;
}

HangWatchdog::HangWatchdog(std::chrono::milliseconds limit, std::string what, int status) {
    thread_ = std::thread([this, limit, what = std::move(what), status] {
        std::unique_lock lock(mutex_);
        if (disarmed_.wait_for(lock, limit, [this] { return done_; }))
            return;
        std::string report = fmt::format("ktstr: {} did not end within {} s of starting; it "
                                         "hung. What each thread was doing:\n{}",
                                         what, double(limit.count()) / 1000.0, describe_threads());
        [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, report.data(), report.size());
        ::_exit(status);
    });
}

HangWatchdog::~HangWatchdog() {
    {
        std::lock_guard lock(mutex_);
        done_ = true;
    }
    disarmed_.notify_one();
    thread_.join();
}

} // namespace ktstr
