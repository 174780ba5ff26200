// ktstr's guest init (PID 1): a static program. Mounts the kernel's filesystems, loads the
// modules it is given, opens the result channel, runs the command with its output framed
// to the host, sends the exit status, and resets the machine (the kernel runs with
// reboot=k: the VMM sees the reset).
#include "channel.hpp"
#include "command.hpp"
#include "hang_report.hpp"
#include "poller.hpp"
#include "scheduler.hpp"

#include <cerrno>
#include <fcntl.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace proto = ktstr::guest_protocol;
using namespace ktstr::guest;

namespace {

// The initramfs is the root, already writable: /tmp and /run stay as packed (a command
// under /tmp on the host is under /tmp here), and only get created when missing.
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
        {"cgroup2", "/sys/fs/cgroup", "cgroup2"},
        {"debugfs", "/sys/kernel/debug", "debugfs"},
        {"tracefs", "/sys/kernel/tracing", "tracefs"},
    };
    for (const auto& m : mounts) {
        ::mkdir(m.target, 0755);
        if (::mount(m.source, m.target, m.type, 0, nullptr) != 0 && errno != EBUSY)
            fail(std::string("cannot mount ") + m.target);
    }
    ::mkdir("/tmp", 01777);
    ::chmod("/tmp", 01777);
    ::mkdir("/run", 0755);
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

// NUL-terminated arguments; none if the file is missing.
std::vector<std::string> read_argv(const char* path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<std::string> argv;
    for (std::string arg; std::getline(in, arg, '\0');)
        argv.push_back(arg);
    return argv;
}

std::chrono::milliseconds attach_timeout() {
    std::ifstream in(proto::kSchedulerAttachTimeoutFile);
    long long ms = 30'000;
    in >> ms;
    return std::chrono::milliseconds(ms);
}

void send_report(const nlohmann::json& report) {
    std::string text = report.dump();
    if (text.size() > proto::kMaxPayload)
        text = nlohmann::json{{"type", report.value("type", "")}, {"truncated", true}}.dump();
    send_text(proto::FrameKind::report, text);
}

[[noreturn]] void reset_machine() {
    ::sync();
    ::reboot(RB_AUTOBOOT);
    for (;;)
        ::pause();
}

// A line on the kernel console (error level, so `quiet` lets it through) at the start.
void announce_start() {
    int kmsg = ::open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    if (kmsg < 0)
        return;
    std::string line = std::string("<3>") + proto::kInitStartedMarker + "\n";
    write_all(kmsg, line.data(), line.size());
    ::close(kmsg);
}

} // namespace

int main() {
    mount_filesystems();
    announce_start();
    load_modules();
    if (!open_channel())
        fail("cannot open the result channel (/dev/hvc0 or /dev/ttyS1, and the boot's key)");
    {
        // Closed before the command starts: ifstream's descriptors are inherited.
        std::ifstream library_path(proto::kLibraryPathFile);
        if (std::string dirs; std::getline(library_path, dirs))
            ::setenv("LD_LIBRARY_PATH", dirs.c_str(), 1);
    }
    ::setenv("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:/ktstr/bin", 1);
    ::setenv("HOME", "/root", 1);
    ::chdir("/");
    std::vector<std::string> command = read_argv(proto::kCommandFile);
    if (command.empty())
        fail("no command in the initramfs");

    Poller poller;
    arm_hang_report();
    std::optional<SchedulerWatch> scheduler;
    if (auto argv = read_argv(proto::kSchedulerFile); !argv.empty()) {
        scheduler.emplace(std::move(argv), attach_timeout(), poller);
        if (!scheduler->start()) {
            scheduler->settle(std::chrono::seconds(2));
            send_report(scheduler->report());
            send_frame(proto::FrameKind::not_run, nullptr, 0);
            reset_machine();
        }
    }
    bool interactive = ::access(proto::kInteractiveFile, F_OK) == 0;
    SchedulerWatch* watched = scheduler ? &*scheduler : nullptr;
    std::int32_t status = interactive ? run_on_console(command, poller, watched)
                                      : run_command(command, poller, watched);
    if (scheduler) {
        if (scheduler->failed())
            scheduler->settle(std::chrono::seconds(5));
        else
            scheduler->stop(std::chrono::seconds(10));
        send_report(scheduler->report());
    }
    send_frame(proto::FrameKind::exit_status, &status, sizeof status);
    reset_machine();
}
