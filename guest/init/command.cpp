#include "command.hpp"

#include "channel.hpp"
#include "scheduler.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <optional>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

namespace proto = ktstr::guest_protocol;

namespace ktstr::guest {
namespace {

// After the command exits, what its descendants still write is forwarded until they fall
// silent this long, or at most for kDrainLimit.
constexpr auto kDrainQuiet = std::chrono::milliseconds(100);
constexpr auto kDrainLimit = std::chrono::seconds(2);
constexpr int kReportFd = 3;

int shell_status(int wait_status) {
    return WIFSIGNALED(wait_status) ? 128 + WTERMSIG(wait_status) : WEXITSTATUS(wait_status);
}

// In the child: `fd` becomes descriptor `target`, and the original goes.
void move_fd(int fd, int target) {
    if (fd != target) {
        ::dup2(fd, target);
        ::close(fd);
    }
}

[[noreturn]] void exec_command(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& arg : argv)
        args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "ktstr init: cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(errno == ENOENT ? 127 : 126);
}

// A child of the init in its own session (and process group), with a pidfd that becomes
// readable when it ends.
struct Child {
    pid_t pid = -1;
    int pidfd = -1;
    std::optional<int> status;

    // Reaps the child if it has ended.
    void reap() {
        int wait_status = 0;
        if (!status && ::waitpid(pid, &wait_status, WNOHANG) == pid)
            status = shell_status(wait_status);
    }
    void watch(Poller& poller) {
        pidfd = int(::syscall(SYS_pidfd_open, pid, 0));
        if (pidfd < 0)
            fail("pidfd_open");
        poller.watch(pidfd, [this, &poller] {
            reap();
            if (status) {
                poller.forget(pidfd);
                ::close(pidfd);
            }
        });
    }
    // Runs until the child ends or the scheduler fails; in the second case the child's
    // whole process group goes.
    void wait(Poller& poller, SchedulerWatch* scheduler) {
        poller.run([&] { return status || (scheduler && scheduler->failed()); });
        if (!status) {
            ::kill(-pid, SIGKILL);
            poller.run([&] { return bool(status); });
        }
    }
};

} // namespace

[[noreturn]] void fail(const std::string& message) {
    std::string text = message + (errno ? std::string(": ") + std::strerror(errno) : "");
    if (channel_open())
        send_text(proto::FrameKind::init_error, text);
    else
        std::fprintf(stderr, "ktstr init: %s\n", text.c_str());
    ::sync();
    ::reboot(RB_AUTOBOOT);
    for (;;)
        ::pause();
}

namespace {

// Forks the command's process, which leads a session of its own (so that the whole
// process group can be signalled); returns 0 in the child.
pid_t fork_session_leader() {
    pid_t pid = ::fork();
    if (pid < 0)
        fail("fork");
    if (pid == 0)
        ::setsid();
    return pid;
}

} // namespace

int run_command(const std::vector<std::string>& argv, Poller& poller, SchedulerWatch* scheduler) {
    int out[2], err[2], reports[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0 ||
        ::pipe2(reports, O_CLOEXEC) != 0)
        fail("pipe");
    Child child;
    child.pid = fork_session_leader();
    if (child.pid == 0) {
        move_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC), 0);
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
        // With the host's leave, descriptor 3 takes reports, one JSON object a line (the
        // scenario agent's); other commands get nothing but 0, 1 and 2.
        if (::access(proto::kReportsFile, F_OK) == 0) {
            if (reports[1] == kReportFd)
                ::fcntl(kReportFd, F_SETFD, 0);
            else
                ::dup2(reports[1], kReportFd);
            ::setenv("KTSTR_REPORT_FD", std::to_string(kReportFd).c_str(), 1);
        }
        exec_command(argv); // every other descriptor of the init is close-on-exec
    }
    ::close(out[1]);
    ::close(err[1]);
    ::close(reports[1]);
    child.watch(poller);

    struct Stream {
        int fd;
        proto::FrameKind kind;
    };
    Stream streams[3] = {{out[0], proto::FrameKind::stdout_data},
                         {err[0], proto::FrameKind::stderr_data},
                         {reports[0], proto::FrameKind::report}};
    std::vector<char> buffer(proto::kMaxPayload);
    std::string report_line;
    bool data_seen = false;
    auto open_streams = [&] {
        return streams[0].fd >= 0 || streams[1].fd >= 0 || streams[2].fd >= 0;
    };
    for (Stream& stream : streams)
        poller.watch(stream.fd, [&] {
            ssize_t n = ::read(stream.fd, buffer.data(), buffer.size());
            if (n > 0) {
                data_seen = true;
                if (stream.kind != proto::FrameKind::report) {
                    send_frame(stream.kind, buffer.data(), std::uint32_t(n));
                    return;
                }
                report_line.append(buffer.data(), std::size_t(n));
                for (auto end = report_line.find('\n'); end != std::string::npos;
                     end = report_line.find('\n')) {
                    if (end <= proto::kMaxPayload)
                        send_frame(proto::FrameKind::report, report_line.data(),
                                   std::uint32_t(end));
                    else
                        std::fprintf(stderr, "ktstr init: dropped a %zu-byte report\n", end);
                    report_line.erase(0, end + 1);
                }
                if (report_line.size() > proto::kMaxPayload)
                    report_line.clear(); // a line too long to be a report
            } else if (n == 0 || errno != EINTR) {
                poller.forget(stream.fd);
                ::close(stream.fd);
                stream.fd = -1;
            }
        });
    child.wait(poller, scheduler);
    // What descendants still write is forwarded while it keeps coming, for a little while.
    for (auto limit = Clock::now() + kDrainLimit; open_streams() && Clock::now() < limit;) {
        data_seen = false;
        poller.run([&] { return !open_streams() || data_seen; },
                   std::min(limit, Clock::now() + kDrainQuiet));
        if (!data_seen)
            break; // they fell silent
    }
    for (Stream& stream : streams)
        if (stream.fd >= 0) {
            poller.forget(stream.fd);
            ::close(stream.fd);
        }
    return *child.status;
}

int run_on_console(const std::vector<std::string>& argv, Poller& poller,
                   SchedulerWatch* scheduler) {
    // Closes (close-on-exec) once the child has set up its terminal and become the command:
    // only then may host input come. The init sends that word, as every frame, itself.
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) != 0)
        fail("pipe");
    Child child;
    child.pid = fork_session_leader();
    if (child.pid == 0) {
        int tty = ::open("/dev/ttyS0", O_RDWR | O_CLOEXEC);
        if (tty < 0 || ::ioctl(tty, TIOCSCTTY, 0) != 0)
            ::_exit(126);
        std::ifstream size(proto::kWindowSizeFile);
        winsize window{};
        if (size >> window.ws_row >> window.ws_col)
            ::ioctl(tty, TIOCSWINSZ, &window);
        termios mode{};
        if (::access(proto::kLineInputFile, F_OK) == 0 && ::tcgetattr(tty, &mode) == 0) {
            mode.c_lflag &= ~tcflag_t(ECHO);
            ::tcsetattr(tty, TCSANOW, &mode);
        }
        for (int fd = 0; fd < 3; ++fd)
            ::dup2(tty, fd); // dup2 clears close-on-exec on the copies; the original closes
        ::setenv("TERM", "linux", 0);
        exec_command(argv);
    }
    ::close(ready[1]);
    char byte;
    while (::read(ready[0], &byte, 1) < 0 && errno == EINTR) {
    }
    ::close(ready[0]);
    // The host holds its input until now, so none of it is echoed or lost before this.
    send_frame(proto::FrameKind::console_ready, nullptr, 0);
    child.watch(poller);
    child.wait(poller, scheduler);
    return *child.status;
}

} // namespace ktstr::guest
