#include "boot.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/fd.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/base/process.hpp"
#include "ktstr/harness/guest_channel.hpp"
#include "ktstr/harness/guest_protocol.hpp"
#include "ktstr/sandbox/sandbox.hpp"
#include "ktstr/vmm/topology.hpp"

#include <algorithm>
#include <chrono>
#include <fcntl.h>
#include <fmt/format.h>
#include <functional>
#include <iostream>
#include <optional>
#include <poll.h>
#include <signal.h>
#include <sstream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace ktstr {
namespace {

using Clock = std::chrono::steady_clock;
using Ms = std::optional<double>;

double ms_between(Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
}

// Kernel log lines that end a stage, in boot order (the init's own line last).
constexpr const char* kInitcallsDone = "Freeing unused kernel image";
constexpr const char* kInitExec = "as init process";

// What the probe command printed: stage ends on the guest's clock (seconds since the
// kernel's clock started).
struct GuestStages {
    Ms initcalls_done, init_exec, init_first_line, command_start;
    Ms output_written; // with an output test: its bytes are written
};

// The probe's output: the uptime line, with an output test its bytes (NULs) and a second
// uptime line, then "[   seconds] text" kernel log lines.
GuestStages parse_probe_output(const std::string& output) {
    GuestStages stages;
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);) {
        line.erase(0, line.find_first_not_of('\0'));
        auto open = line.find('['), close = line.find(']');
        if (open != 0 || close == std::string::npos) {
            double uptime = 0;
            if (std::istringstream(line) >> uptime)
                (stages.command_start ? stages.output_written : stages.command_start) = uptime;
            continue;
        }
        double at = 0;
        if (!(std::istringstream(line.substr(open + 1, close - open - 1)) >> at))
            continue;
        auto mark = [&](const char* text, Ms& stage) {
            if (!stage && line.find(text, close) != std::string::npos)
                stage = at;
        };
        mark(kInitcallsDone, stages.initcalls_done);
        mark(kInitExec, stages.init_exec);
        mark(guest_protocol::kInitStartedMarker, stages.init_first_line);
    }
    return stages;
}

// One boot, every time in milliseconds from its process start. The guest's stage ends are
// put on that clock through the init's first line, which the host sees on the console.
struct BootSample {
    Ms run_planned, kernel_read, initramfs_built, vmm_ready, init_seen, command_exited, torn_down;
    GuestStages guest;
    std::string exits;

    Ms kernel_clock_start() const {
        if (!init_seen || !guest.init_first_line)
            return std::nullopt;
        return *init_seen - *guest.init_first_line * 1000;
    }
    Ms on_host(const Ms& guest_seconds) const {
        Ms zero = kernel_clock_start();
        if (!zero || !guest_seconds)
            return std::nullopt;
        return *zero + *guest_seconds * 1000;
    }
};

Ms between(const Ms& from, const Ms& to) {
    if (!from || !to)
        return std::nullopt;
    return *to - *from;
}

// None when ktstr classified the boot as spoiled by the emulated sandbox.
std::optional<BootSample> time_ktstr_boot(const std::vector<std::string>& child_args) {
    fs::path self = fs::read_symlink("/proc/self/exe");
    std::vector<std::string> argv = {self.string(), "boot-once"};
    argv.insert(argv.end(), child_args.begin(), child_args.end());
    TempDir dir("ktstr-bench");
    UniqueFd out(::open((dir.path() / "stdout").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    UniqueFd log(::open((dir.path() / "stderr").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!out || !log)
        throw_errno("creating the boot's output files");
    SpawnOptions spawn;
    spawn.redirects = {{out.get(), STDOUT_FILENO}, {log.get(), STDERR_FILENO}};
    auto start = Clock::now();
    ExitStatus status = run_process(argv, spawn);
    std::string text = read_file(dir.path() / "stderr");
    if (status.code == kSandboxFailureStatus && !status.signaled)
        return std::nullopt;
    auto at = text.find("timeline ");
    if (!status.ok() || at == std::string::npos)
        throw Error("the ktstr boot failed (status " + std::to_string(status.code) + "):\n" + text);
    std::istringstream fields(text.substr(at + 9));
    BootSample sample;
    std::string code;
    fields >> code;
    for (Ms* stage :
         {&sample.run_planned, &sample.kernel_read, &sample.initramfs_built, &sample.vmm_ready,
          &sample.init_seen, &sample.command_exited, &sample.torn_down}) {
        std::string ns;
        fields >> ns;
        if (ns != "-" && !ns.empty())
            *stage = ms_between(start, Clock::time_point(Clock::duration(std::stoll(ns))));
    }
    auto exits_at = text.find("exits ");
    if (exits_at != std::string::npos)
        sample.exits = text.substr(exits_at + 6, text.find('\n', exits_at) - exits_at - 6);
    sample.guest = parse_probe_output(read_file(dir.path() / "stdout"));
    return sample;
}

// Keeps the command's output of a QEMU boot.
class StringSink : public ByteSink {
  public:
    std::size_t offer(std::span<const std::uint8_t> bytes) override {
        text.append(bytes.begin(), bytes.end());
        return bytes.size();
    }
    asio::awaitable<void> room() override { co_return; }
    std::string text;
};

// The same kernel, initramfs and command line under QEMU's fastest configuration
// (microvm with its RTC), the guest init talking over virtio-console as it does in ktstr.
BootSample time_qemu_boot(const RunOptions& options, unsigned cpus) {
    auto qemu = find_program("qemu-system-x86_64");
    if (!qemu)
        throw Error("qemu-system-x86_64 not found: install qemu-system-x86 (scripts/setup does)");
    BootImages images = build_boot_images(options);
    // microvm has no i8042 to reset through; a triple fault ends it under -no-reboot.
    for (auto at = images.command_line.find("reboot=k"); at != std::string::npos;
         at = images.command_line.find("reboot=k"))
        images.command_line.replace(at, 8, "reboot=t");
    TempDir dir("ktstr-bench-qemu");
    write_file_atomic(dir.path() / "initramfs.cpio",
                      std::span<const std::uint8_t>(images.initramfs));
    int console_pipe[2], channel_pipe[2];
    if (::pipe2(console_pipe, O_CLOEXEC) != 0 || ::pipe2(channel_pipe, O_CLOEXEC) != 0)
        throw_errno("pipe");
    UniqueFd console_read(console_pipe[0]), console_write(console_pipe[1]);
    UniqueFd channel_read(channel_pipe[0]), channel_write(channel_pipe[1]);
    std::vector<std::string> argv = {qemu->string(),
                                     "-M",
                                     "microvm,rtc=on",
                                     "-accel",
                                     "kvm",
                                     "-cpu",
                                     "host",
                                     "-smp",
                                     std::to_string(cpus),
                                     "-m",
                                     std::to_string(parse_memory_size(options.memory) >> 20),
                                     "-kernel",
                                     images.bzimage.string(),
                                     "-initrd",
                                     (dir.path() / "initramfs.cpio").string(),
                                     "-append",
                                     images.command_line,
                                     "-nodefaults",
                                     "-no-user-config",
                                     "-display",
                                     "none",
                                     "-no-reboot",
                                     "-chardev",
                                     "file,id=console,path=/proc/self/fd/3",
                                     "-serial",
                                     "chardev:console",
                                     "-device",
                                     "virtio-serial-device,max_ports=1",
                                     "-chardev",
                                     "file,id=channel,path=/proc/self/fd/4",
                                     "-device",
                                     "virtconsole,chardev=channel"};
    SpawnOptions spawn;
    spawn.quiet = true;
    spawn.redirects = {{console_write.get(), 3}, {channel_write.get(), 4}};
    auto start = Clock::now();
    ChildProcess child = start_process(argv, spawn);
    console_write.reset();
    channel_write.reset();

    BootSample sample;
    std::string console;
    StringSink command_output;
    GuestChannel channel(images.channel_key, {.stdout_sink = &command_output});
    pollfd fds[2] = {{console_read.get(), POLLIN, 0}, {channel_read.get(), POLLIN, 0}};
    char buffer[65536];
    auto deadline = start + std::chrono::seconds(180);
    while ((fds[0].fd >= 0 || fds[1].fd >= 0) && Clock::now() < deadline) {
        if (::poll(fds, 2, 1000) < 0 && errno != EINTR)
            throw_errno("poll");
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
                continue;
            ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
            if (n <= 0) {
                fds[i].fd = -1;
                continue;
            }
            if (i == 0) {
                console.append(buffer, std::size_t(n));
                if (!sample.init_seen &&
                    console.find(guest_protocol::kInitStartedMarker) != std::string::npos)
                    sample.init_seen = ms_between(start, Clock::now());
            } else {
                channel.source(0).offer(
                    std::span(reinterpret_cast<const std::uint8_t*>(buffer), std::size_t(n)));
                if (!sample.command_exited && channel.exit_status())
                    sample.command_exited = ms_between(start, Clock::now());
            }
        }
    }
    bool too_long = Clock::now() >= deadline;
    if (too_long)
        ::kill(child.pid(), SIGKILL);
    child.wait();
    sample.torn_down = ms_between(start, Clock::now());
    if (!sample.command_exited)
        throw Error(fmt::format("the QEMU boot did not run the command ({}):\n{}",
                                !channel.init_error().empty() ? channel.init_error()
                                : !channel.broken().empty()   ? channel.broken()
                                : too_long                    ? "no exit status within 180 s"
                                                              : "no exit status",
                                console));
    sample.guest = parse_probe_output(command_output.text);
    return sample;
}

std::string cell(Ms ms) { return ms ? fmt::format("{:9.1f} ms", *ms) : std::string("        n/a"); }

void print_boot(const std::string& who, const BootSample& s) {
    std::cout << fmt::format("{:<22} {} {} {} {}\n", who, cell(s.vmm_ready), cell(s.init_seen),
                             cell(s.command_exited), cell(s.torn_down));
}

struct StageRow {
    const char* name;
    std::function<Ms(const BootSample&)> duration;
};

// Each stage's duration; the host rows exist for ktstr only, and their sum plus the entry
// row is the "process start to kernel clock" row that QEMU has too.
// From one guest stage's end to another's.
std::function<Ms(const BootSample&)> guest_span(Ms GuestStages::*from, Ms GuestStages::*to) {
    return [from, to](const BootSample& s) {
        return between(s.on_host(s.guest.*from), s.on_host(s.guest.*to));
    };
}

Ms output_time(const BootSample& s) {
    return between(s.on_host(s.guest.command_start), s.on_host(s.guest.output_written));
}

std::vector<StageRow> stage_rows() {
    return {
        {"process start to run planned",
         [](const BootSample& s) {
             return s.run_planned;
         }},
        {"  kernel image read",
         [](const BootSample& s) {
             return between(s.run_planned, s.kernel_read);
         }},
        {"  initramfs built",
         [](const BootSample& s) {
             return between(s.kernel_read, s.initramfs_built);
         }},
        {"  VM built (memory, tables, vCPUs)",
         [](const BootSample& s) {
             return between(s.initramfs_built, s.vmm_ready);
         }},
        {"  vCPUs start to kernel clock (decompression, early set-up)",
         [](const BootSample& s) {
             return between(s.vmm_ready, s.kernel_clock_start());
         }},
        {"process start to kernel clock",
         [](const BootSample& s) {
             return s.kernel_clock_start();
         }},
        {"kernel clock to initcalls done",
         [](const BootSample& s) {
             return between(s.kernel_clock_start(), s.on_host(s.guest.initcalls_done));
         }},
        {"initcalls done to /init",
         guest_span(&GuestStages::initcalls_done, &GuestStages::init_exec)},
        {"/init to its first line (mounts)",
         guest_span(&GuestStages::init_exec, &GuestStages::init_first_line)},
        {"init's set-up (modules, channel) to command",
         guest_span(&GuestStages::init_first_line, &GuestStages::command_start)},
        {"  the command's output written (guest clock)", output_time},
        {"command to its exit status on the host",
         [](const BootSample& s) {
             return between(s.on_host(s.guest.command_start), s.command_exited);
         }},
        {"exit status to teardown",
         [](const BootSample& s) {
             return between(s.command_exited, s.torn_down);
         }},
        {"process start to /init's first line (host clock)",
         [](const BootSample& s) {
             return s.init_seen;
         }},
    };
}

Ms median(const std::vector<BootSample>& samples, const StageRow& row) {
    std::vector<double> values;
    for (const auto& sample : samples)
        if (Ms value = row.duration(sample))
            values.push_back(*value);
    if (values.empty())
        return std::nullopt;
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
}

} // namespace

std::vector<std::string> boot_probe_command(std::uint64_t output_bytes) {
    std::string output =
        output_bytes ? fmt::format("head -c {} /dev/zero; cat /proc/uptime; ", output_bytes) : "";
    return {"sh", "-c",
            fmt::format("cat /proc/uptime; {}dmesg | grep -e '{}' -e '{}' -e '{}'", output,
                        kInitcallsDone, kInitExec, guest_protocol::kInitStartedMarker)};
}

int boot_once(const RunOptions& options) {
    BootTimeline timeline;
    int status = run_in_vm(options, &timeline);
    auto ns = [](std::optional<Clock::time_point> t) {
        return t ? std::to_string(t->time_since_epoch().count()) : std::string("-");
    };
    std::cerr << fmt::format(
        "timeline {} {} {} {} {} {} {} {}\nexits {} {}\n", status, ns(timeline.started),
        ns(timeline.kernel_read), ns(timeline.initramfs_built), ns(timeline.vmm_ready),
        ns(timeline.init_started), ns(timeline.command_exited), ns(timeline.torn_down),
        timeline.exits.total(), timeline.exits.summary());
    return status;
}

int bench_boot(const RunOptions& options, const std::vector<std::string>& child_args, unsigned runs,
               bool with_qemu, std::uint64_t output_bytes) {
    Topology topology = Topology::parse(options.topology);
    std::cout << fmt::format("boot {} ({} vCPUs, {}){}\n", topology.to_string(), topology.cpus(),
                             options.memory,
                             host_kvm_runs_guests() ? "" : " [no usable /dev/kvm?]");
    std::cout << fmt::format("{:<22} {:>12} {:>12} {:>12} {:>12}\n", "(from process start)",
                             "VMM ready", "guest /init", "command exit", "teardown");
    std::vector<BootSample> ktstr, qemu;
    for (unsigned run = 0; run < runs; ++run) {
        if (auto sample = time_ktstr_boot(child_args)) {
            ktstr.push_back(*sample);
            print_boot(fmt::format("ktstr #{}", run + 1), ktstr.back());
        } else {
            std::cout << fmt::format("ktstr #{}: spoiled by the emulated sandbox (status {}), "
                                     "left out\n",
                                     run + 1, kSandboxFailureStatus);
        }
        if (with_qemu) {
            try { // the comparison goes on without a boot that QEMU did not finish
                qemu.push_back(time_qemu_boot(options, topology.cpus()));
                print_boot(fmt::format("qemu microvm,rtc #{}", run + 1), qemu.back());
            } catch (const Error& e) {
                std::cout << fmt::format("qemu microvm,rtc #{}: left out: {}\n", run + 1, e.what());
            }
        }
    }
    std::cout << fmt::format("\nwhere the time goes (median of {} ktstr boots, {} QEMU boots, "
                             "ms)\n  {:<60} {:>9} {:>9}\n",
                             ktstr.size(), qemu.size(), "stage", "ktstr", with_qemu ? "qemu" : "");
    for (const auto& row : stage_rows()) {
        auto show = [](Ms ms) {
            return ms ? fmt::format("{:9.1f}", *ms) : std::string(9, ' ');
        };
        std::cout << fmt::format("  {:<60} {} {}\n", row.name, show(median(ktstr, row)),
                                 with_qemu ? show(median(qemu, row)) : "");
    }
    if (output_bytes > 0) {
        StageRow output{"", output_time};
        auto rate = [&](const std::vector<BootSample>& samples) {
            Ms ms = median(samples, output);
            return ms && *ms > 0 ? fmt::format("{:.1f} MB/s", double(output_bytes) / *ms / 1000)
                                 : std::string("n/a");
        };
        std::cout << fmt::format("guest output of {} bytes over virtio-console: ktstr {}{}\n",
                                 output_bytes, rate(ktstr),
                                 with_qemu ? ", qemu " + rate(qemu) : std::string());
    }
    if (!ktstr.empty())
        std::cout << "ktstr VM exits seen by the VMM (last run): " << ktstr.back().exits << "\n";
    return 0;
}

} // namespace ktstr
