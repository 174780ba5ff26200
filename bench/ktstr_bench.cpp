// ktstr-bench: benchmark runs on the same machinery as ktstr.
#include "ktstr/base/error.hpp"
#include "ktstr/base/fd.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/base/process.hpp"
#include "ktstr/harness/guest_channel.hpp"
#include "ktstr/harness/guest_protocol.hpp"
#include "ktstr/harness/run.hpp"
#include "ktstr/sandbox/sandbox.hpp"
#include "ktstr/vmm/platform.hpp"
#include "ktstr/vmm/topology.hpp"
#include "wake_path.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fcntl.h>
#include <fmt/format.h>
#include <iostream>
#include <optional>
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using namespace ktstr;
using Clock = std::chrono::steady_clock;

namespace {

double ms_between(Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
}

// Time for a whole minimal VM lifetime: create the VM and vCPU, run to the port write and
// the halt, tear down. The floor under every boot.
int bench_vm_lifecycle(unsigned iterations) {
    std::vector<double> micros;
    for (unsigned i = 0; i < iterations; ++i) {
        auto start = Clock::now();
        KvmProbe probe = host_platform().self_check();
        auto end = Clock::now();
        if (!probe.passed)
            throw Error("the guest misbehaved: " + probe.detail);
        micros.push_back(ms_between(start, end) * 1000);
    }
    std::sort(micros.begin(), micros.end());
    auto at = [&](double q) {
        return micros[std::size_t(q * double(micros.size() - 1))];
    };
    std::cout << fmt::format("vm-lifecycle: {} runs, min {:.1f} us, p50 {:.1f} us, p99 {:.1f} us, "
                             "max {:.1f} us\n",
                             micros.size(), micros.front(), at(0.5), at(0.99), micros.back());
    return 0;
}

// One boot by ktstr, in a child process so that "process start" is real: the child prints
// its stage times as steady-clock nanoseconds, which every process shares.
int boot_once(const RunOptions& options) {
    BootTimeline timeline;
    int status = run_in_vm(options, &timeline);
    auto ns = [](std::optional<Clock::time_point> t) {
        return t ? std::to_string(t->time_since_epoch().count()) : std::string("-");
    };
    std::cerr << fmt::format("timeline {} {} {} {} {}\nexits {} {}\n", status,
                             ns(timeline.vmm_ready), ns(timeline.init_started),
                             ns(timeline.command_exited), ns(timeline.torn_down),
                             timeline.exits.total(), timeline.exits.summary());
    return status;
}

struct StageTimes {
    std::optional<double> setup_done, init_started, command_exited, torn_down;
    std::string exits;
};

std::string stage(std::optional<double> ms) {
    return ms ? fmt::format("{:9.1f} ms", *ms) : std::string("        n/a");
}

StageTimes time_ktstr_boot(const std::vector<std::string>& child_args) {
    fs::path self = fs::read_symlink("/proc/self/exe");
    std::vector<std::string> argv = {self.string(), "boot-once"};
    argv.insert(argv.end(), child_args.begin(), child_args.end());
    TempDir dir("ktstr-bench");
    UniqueFd log(::open((dir.path() / "stderr").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    SpawnOptions spawn;
    spawn.quiet = true;
    spawn.redirects = {{log.get(), STDERR_FILENO}};
    auto start = Clock::now();
    ExitStatus status = run_process(argv, spawn);
    std::string text = read_file(dir.path() / "stderr");
    auto at = text.find("timeline ");
    if (!status.ok() || at == std::string::npos)
        throw Error("the ktstr boot failed (status " + std::to_string(status.code) + "):\n" + text);
    std::istringstream fields(text.substr(at + 9));
    StageTimes times;
    std::string code, ready, init, exited, down;
    fields >> code >> ready >> init >> exited >> down;
    auto since_start = [&](const std::string& ns) -> std::optional<double> {
        if (ns == "-")
            return std::nullopt;
        return ms_between(start, Clock::time_point(Clock::duration(std::stoll(ns))));
    };
    times.setup_done = since_start(ready);
    times.init_started = since_start(init);
    times.command_exited = since_start(exited);
    times.torn_down = since_start(down);
    auto exits_at = text.find("exits ");
    times.exits = text.substr(exits_at + 6, text.find('\n', exits_at) - exits_at - 6);
    return times;
}

// The same kernel, initramfs and command line under QEMU's fastest configuration
// (microvm with its RTC), the guest init talking over virtio-console as it does in ktstr.
StageTimes time_qemu_boot(const RunOptions& options, unsigned cpus) {
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
                                     images.kernel.string(),
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

    StageTimes times;
    std::string console;
    GuestChannel channel(images.channel_key, {}); // output dropped; only the status counts
    pollfd fds[2] = {{console_read.get(), POLLIN, 0}, {channel_read.get(), POLLIN, 0}};
    char buffer[65536];
    auto deadline = start + std::chrono::seconds(300);
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
                if (!times.init_started &&
                    console.find(guest_protocol::kInitStartedMarker) != std::string::npos)
                    times.init_started = ms_between(start, Clock::now());
            } else {
                channel.source(0).offer(
                    std::span(reinterpret_cast<const std::uint8_t*>(buffer), std::size_t(n)));
                if (!times.command_exited && channel.exit_status())
                    times.command_exited = ms_between(start, Clock::now());
            }
        }
    }
    if (Clock::now() >= deadline)
        ::kill(child.pid(), SIGKILL);
    child.wait();
    times.torn_down = ms_between(start, Clock::now());
    if (!times.command_exited)
        throw Error("the QEMU boot did not run the command:\n" + console);
    return times;
}

void print_times(const std::string& who, const StageTimes& t) {
    std::cout << fmt::format("{:<22} {} {} {} {}\n", who, stage(t.setup_done),
                             stage(t.init_started), stage(t.command_exited), stage(t.torn_down));
}

int bench_boot(const RunOptions& options, const std::vector<std::string>& child_args, unsigned runs,
               bool with_qemu) {
    Topology topology = Topology::parse(options.topology);
    std::cout << fmt::format("boot {} ({} vCPUs, {}), command: {}{}\n", topology.to_string(),
                             topology.cpus(), options.memory, options.command.front(),
                             host_kvm_runs_guests() ? "" : " [no usable /dev/kvm?]");
    std::cout << fmt::format("{:<22} {:>12} {:>12} {:>12} {:>12}\n", "(from process start)",
                             "VMM ready", "guest /init", "command exit", "teardown");
    std::string exits;
    for (unsigned run = 0; run < runs; ++run) {
        StageTimes ktstr = time_ktstr_boot(child_args);
        print_times(fmt::format("ktstr #{}", run + 1), ktstr);
        exits = ktstr.exits;
        if (with_qemu)
            print_times(fmt::format("qemu microvm,rtc #{}", run + 1),
                        time_qemu_boot(options, topology.cpus()));
    }
    std::cout << "ktstr VM exits seen by the VMM (last run): " << exits << "\n";
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"ktstr-bench: benchmarks on ktstr's VMM"};
    app.require_subcommand(1);
    unsigned iterations = 200;
    auto* lifecycle = app.add_subcommand(
        "vm-lifecycle", "Create, run and destroy a minimal one-vCPU VM, repeatedly");
    lifecycle->add_option("-n,--iterations", iterations, "How many VMs")
        ->capture_default_str()
        ->check(CLI::Range(1u, 1000000u));

    unsigned events = 200'000, rounds = 10;
    auto* wake = app.add_subcommand(
        "wake-path", "The event loop's wake path (eventfd -> loop -> eventfd) against a thread "
                     "blocked in read, on one CPU and on two; no VM");
    wake->add_option("-n,--events", events, "Round trips per variant and placement")
        ->capture_default_str()
        ->check(CLI::Range(1000u, 100'000'000u));
    wake->add_option("--rounds", rounds, "Interleaved rounds")
        ->capture_default_str()
        ->check(CLI::Range(1u, 1000u));

    RunOptions options;
    options.topology = "1n1l2c1t";
    options.memory = "512M";
    options.command = {"true"};
    unsigned runs = 3;
    bool with_qemu = false;
    auto add_boot_options = [&](CLI::App* command) {
        command->add_option("--kernel", options.kernel, "Kernel image path or cached version");
        command->add_option("--topology", options.topology, "NnNlNcNt")->capture_default_str();
        command->add_option("--memory", options.memory, "Guest memory")->capture_default_str();
    };
    auto* boot = app.add_subcommand(
        "boot", "Time one boot's stages (VMM ready, guest /init, command exit, teardown) and "
                "count its VM exits; --qemu boots the same images in QEMU microvm too");
    add_boot_options(boot);
    boot->add_option("-n,--runs", runs, "How many boots")->capture_default_str();
    boot->add_flag("--qemu", with_qemu, "Compare with qemu-system-x86_64 -M microvm,rtc=on");
    auto* once = app.add_subcommand("boot-once", "One timed boot (used by 'boot')");
    add_boot_options(once);
    once->group(""); // internal

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        if (lifecycle->parsed())
            return bench_vm_lifecycle(iterations);
        if (wake->parsed())
            return bench_wake_path(events, rounds);
        if (once->parsed())
            return boot_once(options);
        if (boot->parsed()) {
            validate_run_options(options);
            std::vector<std::string> child_args = {"--topology", options.topology, "--memory",
                                                   options.memory};
            if (options.kernel)
                child_args.insert(child_args.end(), {"--kernel", *options.kernel});
            return bench_boot(options, child_args, runs, with_qemu);
        }
    } catch (const std::exception& e) {
        std::cerr << "ktstr-bench: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
