// ktstr's guest init (PID 1): a static program. Mounts the kernel's filesystems, loads the
// modules it is given, runs the command with its output framed to the host, sends the exit
// status, and resets the machine (the kernel runs with reboot=k: the VMM sees the reset).
#include "ktstr/harness/guest_protocol.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <string>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <vector>

namespace proto = ktstr::guest_protocol;

namespace {

int channel = -1;

void write_all(int fd, const void* data, std::size_t size) {
    auto* bytes = static_cast<const char*>(data);
    while (size > 0) {
        ssize_t n = ::write(fd, bytes, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        bytes += n;
        size -= std::size_t(n);
    }
}

void send_frame(proto::FrameKind kind, const void* data, std::uint32_t size) {
    std::uint8_t header[proto::kHeaderSize] = {std::uint8_t(kind), std::uint8_t(size),
                                               std::uint8_t(size >> 8), std::uint8_t(size >> 16),
                                               std::uint8_t(size >> 24)};
    write_all(channel, header, sizeof header);
    write_all(channel, data, size);
}

[[noreturn]] void reset_machine() {
    ::sync();
    ::reboot(RB_AUTOBOOT);
    for (;;)
        ::pause();
}

[[noreturn]] void fail(const std::string& message) {
    std::string text = message + (errno ? std::string(": ") + std::strerror(errno) : "");
    if (channel >= 0)
        send_frame(proto::FrameKind::init_error, text.data(), std::uint32_t(text.size()));
    else
        std::fprintf(stderr, "ktstr init: %s\n", text.c_str());
    reset_machine();
}

void mount_filesystems() {
    struct Mount {
        const char* source;
        const char* target;
        const char* type;
    };
    const Mount mounts[] = {
        {"proc", "/proc", "proc"},
        {"sysfs", "/sys", "sysfs"},
        {"devtmpfs", "/dev", "devtmpfs"},
        {"tmpfs", "/tmp", "tmpfs"},
        {"tmpfs", "/run", "tmpfs"},
        {"cgroup2", "/sys/fs/cgroup", "cgroup2"},
        {"debugfs", "/sys/kernel/debug", "debugfs"},
        {"tracefs", "/sys/kernel/tracing", "tracefs"},
    };
    for (const auto& m : mounts) {
        ::mkdir(m.target, 0755);
        if (::mount(m.source, m.target, m.type, 0, nullptr) != 0 && errno != EBUSY)
            fail(std::string("cannot mount ") + m.target);
    }
}

void load_modules() {
    std::ifstream list(proto::kModulesFile);
    for (std::string path; std::getline(list, path);) {
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            fail("cannot open module " + path);
        // MODULE_INIT_COMPRESSED_FILE: the kernel decompresses .ko.xz itself.
        int flags = path.ends_with(".xz") ? 4 : 0;
        if (::syscall(SYS_finit_module, fd, "", flags) != 0 && errno != EEXIST)
            fail("cannot load module " + path);
        ::close(fd);
    }
}

// virtio-console (hvc0) when its driver comes up, else COM2: every byte written to a UART
// costs a VM exit.
int open_channel() {
    int fd = -1;
    for (int tries = 0; tries < 200 && fd < 0; ++tries) {
        fd = ::open("/dev/hvc0", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
            ::usleep(10'000);
    }
    if (fd < 0)
        fd = ::open("/dev/ttyS1", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        fail("cannot open /dev/hvc0 or /dev/ttyS1");
    termios raw{};
    if (::tcgetattr(fd, &raw) == 0) {
        ::cfmakeraw(&raw);
        ::tcsetattr(fd, TCSANOW, &raw);
    }
    return fd;
}

std::vector<std::string> read_command() {
    std::ifstream in(proto::kCommandFile, std::ios::binary);
    std::vector<std::string> argv;
    for (std::string arg; std::getline(in, arg, '\0');)
        argv.push_back(arg);
    if (argv.empty())
        fail("no command in the initramfs");
    return argv;
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

// Waits for `child`, reaping every other process on the way (PID 1's duty); returns its
// status in the shell's convention.
int wait_for(pid_t child) {
    for (;;) {
        int status = 0;
        pid_t pid = ::waitpid(-1, &status, 0);
        if (pid == child)
            return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        if (pid < 0 && errno != EINTR)
            fail("lost the command's process");
    }
}

// Interactive: the command owns the console (COM1) as its controlling terminal, sized
// like the host's.
int run_on_console(const std::vector<std::string>& argv) {
    pid_t child = ::fork();
    if (child < 0)
        fail("fork");
    if (child == 0) {
        ::setsid();
        int tty = ::open("/dev/ttyS0", O_RDWR);
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
        // The host holds its input until now, so none of it is echoed or lost before this.
        send_frame(proto::FrameKind::console_ready, nullptr, 0);
        for (int fd = 0; fd < 3; ++fd)
            ::dup2(tty, fd);
        ::setenv("TERM", "linux", 0);
        exec_command(argv);
    }
    return wait_for(child);
}

int run(const std::vector<std::string>& argv) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
        fail("pipe");
    pid_t child = ::fork();
    if (child < 0)
        fail("fork");
    if (child == 0) {
        ::setsid();
        int null = ::open("/dev/null", O_RDONLY);
        ::dup2(null, 0);
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
        exec_command(argv);
    }
    ::close(out[1]);
    ::close(err[1]);

    pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    const proto::FrameKind kinds[2] = {proto::FrameKind::stdout_data,
                                       proto::FrameKind::stderr_data};
    std::vector<char> buffer(proto::kMaxPayload);
    int open_streams = 2;
    while (open_streams > 0) {
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            fail("poll");
        }
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = ::read(fds[i].fd, buffer.data(), buffer.size());
            if (n > 0) {
                send_frame(kinds[i], buffer.data(), std::uint32_t(n));
            } else if (n == 0 || errno != EINTR) {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open_streams;
            }
        }
    }
    return wait_for(child);
}

} // namespace

// A line on the kernel console (error level, so `quiet` lets it through) at the start.
void announce_start() {
    int kmsg = ::open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    if (kmsg < 0)
        return;
    std::string line = std::string("<3>") + proto::kInitStartedMarker + "\n";
    write_all(kmsg, line.data(), line.size());
    ::close(kmsg);
}

int main() {
    mount_filesystems();
    announce_start();
    load_modules();
    channel = open_channel();
    std::ifstream library_path(proto::kLibraryPathFile);
    if (std::string dirs; std::getline(library_path, dirs))
        ::setenv("LD_LIBRARY_PATH", dirs.c_str(), 1);
    ::setenv("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:/ktstr/bin", 1);
    ::setenv("HOME", "/root", 1);
    ::chdir("/");
    bool interactive = ::access(proto::kInteractiveFile, F_OK) == 0;
    std::int32_t status = interactive ? run_on_console(read_command()) : run(read_command());
    send_frame(proto::FrameKind::exit_status, &status, sizeof status);
    reset_machine();
}
