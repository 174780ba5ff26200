#include "ktstr/sandbox/sandbox.hpp"

#include "ktstr/base/arch.hpp"
#include "ktstr/base/error.hpp"
#include "ktstr/base/fd.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/base/kernel_log.hpp"
#include "ktstr/base/process.hpp"
#include "ktstr/base/xz.hpp"
#include "ktstr/initramfs/cpio.hpp"
#include "ktstr/initramfs/shared_libraries.hpp"
#include "ktstr/io/relay.hpp"
#include "ktstr/kernel/debian_kernel.hpp"
#include "ktstr/kernel/kernel_cache.hpp"
#include "ktstr/kernel/module_tree.hpp"
#include "ktstr/vmm/kvm.hpp"
#include "ktstr/vmm/platform.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <fcntl.h>
#include <fmt/format.h>
#include <iostream>
#include <mutex>
#include <optional>
#include <termios.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace fs = std::filesystem;

namespace ktstr {
namespace {

// How QEMU emulates the L1 guest of one architecture, and how its init finds its way.
struct L1Machine {
    Arch arch;
    const char* qemu;
    const char* qemu_package;
    std::vector<std::string> machine; // accelerator, CPU, board
    // Modules the L1 loads: KVM where it is not built in, and 9p to see the host's files.
    std::vector<std::string> modules;
    const char* kernel_arguments;
    // The kernel console, then the two ports carrying the command's stdout and stderr.
    std::vector<std::string> output_devices;
    const char* out_tty;
    const char* err_tty;
    // The host's root is x86-64: an L1 of another architecture runs its own static busybox
    // in place of the host's shell and busybox.
    bool foreign_userland;
};

const L1Machine kX86L1{
    .arch = Arch::x86_64,
    .qemu = "qemu-system-x86_64",
    .qemu_package = "qemu-system-x86",
    // The emulated CPU is always an EPYC: KVM for AMD, SVM with nested paging.
    .machine = {"-accel", "tcg,thread=multi", "-cpu", "EPYC,+svm,+npt", "-M", "pc"},
    .modules = {"kvm_amd", "9p", "9pnet_virtio"},
    .kernel_arguments = "console=ttyS0",
    .output_devices = {"-serial", "chardev:out", "-serial", "chardev:err"},
    .out_tty = "/dev/ttyS1",
    .err_tty = "/dev/ttyS2",
    .foreign_userland = false,
};

const L1Machine kArm64L1{
    .arch = Arch::arm64,
    .qemu = "qemu-system-aarch64",
    .qemu_package = "qemu-system-arm",
    // EL2 for KVM in nVHE mode (KVM is built into Debian's arm64 kernel).
    .machine = {"-accel", "tcg,thread=multi", "-cpu", "max", "-M",
                "virt,virtualization=on,gic-version=3"},
    .modules = {"9p", "9pnet_virtio"},
    .kernel_arguments = "console=ttyAMA0 kvm-arm.mode=nvhe",
    // The board has one UART (the console); a PCI card brings two 16550s for the output.
    .output_devices = {"-device", "pci-serial-2x,chardev1=out,chardev2=err"},
    .out_tty = "/dev/ttyS0",
    .err_tty = "/dev/ttyS1",
    .foreign_userland = true,
};
constexpr const char* kMountOptions = "trans=virtio,version=9p2000.L,msize=512000";
// The L1 writes its heartbeat every 5 s at nice -20; this long without one is a hang.
constexpr std::chrono::seconds kL1HeartbeatLimit{120};

// PID 1 of the L1 guest (busybox sh). The run directory, shared read-write, carries the
// command in and its exit status out; the host's root is shared read-only.
constexpr const char* kL1Init = R"(#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "ktstr sandbox: L1 guest: $*" > @ERR_TTY@; poweroff -f; }
mkdir -p /proc /sys /dev /host /run/ktstr
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/ktstr-modules); do insmod "/lib/modules/$m" || fail "insmod $m failed"; done
[ -c /dev/kvm ] || fail "/dev/kvm did not appear"
opts=@MOUNT_OPTIONS@
mount -t 9p -o "$opts" ktstr_run /run/ktstr || fail "cannot mount the run directory"
mount -t 9p -o "$opts,ro,cache=loose" hostroot /host || fail "cannot mount the host's root"
# The host's root once more, before the writable shares cover parts of it: files that
# never change once written (cached kernels) are read through it, with the page cache.
mkdir -p /hostroot && mount --bind /host /hostroot || fail "cannot bind the host's root"
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mount -t tmpfs tmpfs /host/run
while read -r tag path; do
  mkdir -p "/host$path" && mount -t 9p -o "$opts" "$tag" "/host$path" || fail "cannot mount $path"
done < /run/ktstr/shares
while read -r path; do
  mount --bind "/hostroot$path" "/host$path" || fail "cannot bind $path"
done < /run/ktstr/cached
stty -F @OUT_TTY@ raw -echo
stty -F @ERR_TTY@ raw -echo
# A foreign userland: this busybox stands in for the host's (an x86-64 root's programs
# cannot run here).
if [ -n "@FOREIGN@" ]; then
  mount --bind /bin/busybox /host/bin/busybox || fail "cannot bind busybox"
  shell="/bin/busybox sh"
else
  shell=/bin/sh
fi
# A heartbeat the host watches: an L1 that hangs without ending is seen, and ended.
sh -c 'renice -n -20 -p $$ > /dev/null; while :; do date +%s > /run/ktstr/heartbeat; sleep 5; done' &
# The script holds the host's environment: it leaves the host's disk as soon as it is read.
cp /run/ktstr/command.sh /host/run/ktstr-command.sh && rm -f /run/ktstr/command.sh
run() { chroot /host $shell /run/ktstr-command.sh; echo $? > /run/ktstr/status; }
if [ -e /run/ktstr/interactive ]; then
  run < @OUT_TTY@ > @OUT_TTY@ 2> @ERR_TTY@
else
  # Pipes, not terminals, as the command would see under a test runner on the host.
  mkfifo /stdout /stderr
  cat /stdout > @OUT_TTY@ &
  relay_out=$!
  cat /stderr > @ERR_TTY@ &
  relay_err=$!
  run < /dev/null > /stdout 2> /stderr
  wait $relay_out $relay_err
fi
sync
poweroff -f
)";

// Watches the L1 guest's heartbeat (see kL1Init) from a thread of its own; an L1 that has
// not beaten for `limit` has hung (seen in the sandbox: under load it sometimes stops
// without ending), and QEMU is killed so that the run ends as the sandbox's failure.
class L1HeartbeatWatch {
  public:
    L1HeartbeatWatch(fs::path heartbeat, const ChildProcess& qemu, std::chrono::seconds limit)
        : thread_([this, heartbeat = std::move(heartbeat), &qemu, limit] {
              auto last = fs::file_time_type::clock::now(); // the boot counts as a beat
              std::unique_lock lock(mutex_);
              while (!done_) {
                  done_changed_.wait_for(lock, std::chrono::seconds(2));
                  std::error_code ec;
                  if (auto beat = fs::last_write_time(heartbeat, ec); !ec && beat > last)
                      last = beat;
                  if (!done_ && fs::file_time_type::clock::now() - last > limit) {
                      hung_ = true;
                      qemu.kill(SIGKILL);
                      return;
                  }
              }
          }) {}
    L1HeartbeatWatch(const L1HeartbeatWatch&) = delete;
    L1HeartbeatWatch& operator=(const L1HeartbeatWatch&) = delete;
    ~L1HeartbeatWatch() { stop(); }

    // Ends the watch; then says whether it found the L1 hung.
    bool stop() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        done_changed_.notify_one();
        if (thread_.joinable())
            thread_.join();
        return hung_;
    }

  private:
    std::mutex mutex_;
    std::condition_variable done_changed_;
    bool done_ = false;
    bool hung_ = false;
    std::thread thread_;
};

struct Pipe {
    UniqueFd read, write;
    Pipe() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0)
            throw_errno("pipe");
        read.reset(fds[0]);
        write.reset(fds[1]);
    }
};

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
    for (auto pos = text.find(from); pos != std::string::npos;
         pos = text.find(from, pos + to.size()))
        text.replace(pos, from.size(), to);
    return text;
}

bool is_static_elf(const fs::path& file) {
    try {
        return !read_elf_dependencies(file).interpreter;
    } catch (const Error&) {
        return false; // not an ELF file
    }
}

// The L1's busybox: the host's for an x86-64 L1, Debian's for another architecture.
fs::path find_static_busybox(const L1Machine& machine) {
    if (machine.foreign_userland)
        return fetch_static_busybox(machine.arch, std::cerr);
    for (fs::path candidate : {"/bin/busybox", "/usr/bin/busybox"})
        if (fs::exists(candidate) && is_static_elf(candidate))
            return candidate;
    throw Error("no static busybox found: install busybox-static (scripts/setup does)");
}

// The L1 initramfs depends only on the kernel and the busybox; cache it per kernel.
fs::path l1_initramfs(const KernelChoice& kernel, const L1Machine& machine) {
    fs::path busybox = find_static_busybox(machine);
    std::string init = replace_all(kL1Init, "@MOUNT_OPTIONS@", kMountOptions);
    init = replace_all(init, "@OUT_TTY@", machine.out_tty);
    init = replace_all(init, "@ERR_TTY@", machine.err_tty);
    init = replace_all(init, "@FOREIGN@", machine.foreign_userland ? "yes" : "");
    // Rebuilt when the init script, the kernel or busybox changes.
    std::string key = fmt::format(
        "{:016x}", std::hash<std::string>{}(init + file_stamp(kernel.image) + file_stamp(busybox)));
    fs::path cache_dir = ktstr_cache_dir() / "sandbox";
    fs::path cached = cache_dir / ("l1-" + key + ".cpio");
    if (fs::exists(cached))
        return cached;

    CpioArchive cpio;
    cpio.add_char_device("dev/console", 5, 1);
    cpio.add_file("init", init, 0755);
    cpio.add_file("bin/busybox", read_binary_file(busybox), 0755);
    std::string module_list;
    if (kernel.cached) {
        ModuleTree tree(kernel.cached->modules_dir());
        for (const auto& module : tree.load_order(machine.modules)) {
            // busybox insmod hands the bytes to init_module, which wants them uncompressed.
            std::vector<std::uint8_t> bytes = read_binary_file(tree.root() / module);
            std::string name = module.filename().string();
            if (name.ends_with(".xz")) {
                bytes = xz_decompress(bytes);
                name.resize(name.size() - 3);
            }
            cpio.add_file("lib/modules/" + name, bytes);
            module_list += name + "\n";
        }
    }
    // A kernel given by path has no module tree here: KVM and 9p must be built in.
    cpio.add_file("etc/ktstr-modules", module_list);
    fs::create_directories(cache_dir);
    write_file_atomic(cached, cpio.finish());
    return cached;
}

std::string command_script(const std::vector<std::string>& command) {
    std::string script = "cd " + shell_quote(fs::current_path().string()) + " || exit 127\n";
    for (char** env = environ; *env; ++env) {
        std::string entry = *env;
        auto eq = entry.find('=');
        std::string name = entry.substr(0, eq);
        bool valid = eq != std::string::npos && !name.empty() && !std::isdigit(name[0]) &&
                     name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                            "0123456789_") == std::string::npos;
        if (valid && name != "PWD" && name != "OLDPWD" && name != "SHLVL" && name != "_")
            script += fmt::format("export {}={}\n", name, shell_quote(entry.substr(eq + 1)));
    }
    script += fmt::format("export {}=emulated\n", kInSandboxVariable);
    // Results name the machine the run was for, not the emulated guest it ran in.
    if (!std::getenv(kHostNameVariable)) {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        script += fmt::format("export {}={}\n", kHostNameVariable, shell_quote(host));
    }
    script += "exec";
    for (const auto& arg : command)
        script += " " + shell_quote(arg);
    return script + "\n";
}

// Writable shares: the temporary directory, the working directory and the ktstr cache,
// outermost first; one inside another is covered by it.
std::vector<fs::path> writable_paths() {
    std::vector<fs::path> wanted;
    for (fs::path path : {temp_dir(), fs::current_path(), ktstr_cache_dir()}) {
        fs::create_directories(path);
        wanted.push_back(fs::canonical(path));
    }
    std::sort(wanted.begin(), wanted.end(), [](const fs::path& a, const fs::path& b) {
        return a.string().size() < b.string().size();
    });
    std::vector<fs::path> paths;
    for (const auto& path : wanted) {
        bool covered = path == "/";
        for (const auto& other : paths) {
            auto rel = path.lexically_relative(other);
            covered |= !rel.empty() && !rel.string().starts_with("..");
        }
        if (!covered)
            paths.push_back(path);
    }
    return paths;
}

int run_emulated(const SandboxOptions& options) {
    const L1Machine& machine = options.arch == Arch::x86_64 ? kX86L1 : kArm64L1;
    auto qemu = find_program(machine.qemu);
    if (!qemu)
        throw Error(fmt::format("{} not found: install {} (scripts/setup does)", machine.qemu,
                                machine.qemu_package));
    KernelChoice kernel = choose_kernel(options.kernel, options.arch, KernelCache());
    // The L2's kernel boots through PVH once unpacked; the L1 sees the cache read-only.
    if (kernel.cached)
        unpack_pvh_image(*kernel.cached);
    fs::path initramfs = l1_initramfs(kernel, machine);

    TempDir run_dir("ktstr-sandbox");
    write_file_atomic(run_dir.path() / "command.sh", command_script(options.command));
    fs::permissions(run_dir.path() / "command.sh", fs::perms::owner_read | fs::perms::owner_write);
    std::string shares;
    std::vector<std::string> argv = {qemu->string()};
    argv.insert(argv.end(), machine.machine.begin(), machine.machine.end());
    argv.insert(argv.end(), {
                                "-smp",
                                "2",
                                "-m",
                                "4G",
                                "-nodefaults",
                                "-no-reboot",
                                "-display",
                                "none",
                                "-kernel",
                                kernel.image.string(),
                                "-initrd",
                                initramfs.string(),
                                "-append",
                                fmt::format("{} quiet panic=-1 rdinit=/init mitigations=off",
                                            machine.kernel_arguments),
                                "-serial",
                                "file:" + (run_dir.path() / "console.log").string(),
                            });
    // The command's output reaches ours through pipes (fds 3 and 4 in QEMU), so that it is
    // written through our own descriptors; QEMU's own messages go to a log. On a terminal,
    // the command's stdout and stdin are QEMU's stdio instead, for interactive use.
    bool interactive = ::isatty(STDIN_FILENO);
    if (interactive) {
        write_file_atomic(run_dir.path() / "interactive", std::string());
        argv.insert(argv.end(), {"-chardev", "stdio,id=out,signal=off"});
    } else {
        argv.insert(argv.end(), {"-chardev", "file,id=out,path=/proc/self/fd/3"});
    }
    argv.insert(argv.end(), {"-chardev", "file,id=err,path=/proc/self/fd/4"});
    argv.insert(argv.end(), machine.output_devices.begin(), machine.output_devices.end());
    auto add_share = [&](const std::string& tag, const fs::path& path, bool read_only) {
        argv.insert(argv.end(),
                    {"-fsdev",
                     fmt::format("local,id={0},path={1},security_model=none,multidevs=remap{2}",
                                 tag, path.string(), read_only ? ",readonly=on" : ""),
                     "-device", fmt::format("virtio-9p-pci,fsdev={0},mount_tag={0}", tag)});
    };
    add_share("hostroot", "/", true);
    add_share("ktstr_run", run_dir.path(), false);
    auto writable = writable_paths();
    for (std::size_t i = 0; i < writable.size(); ++i) {
        std::string tag = fmt::format("rw{}", i);
        add_share(tag, writable[i], false);
        shares += tag + " " + writable[i].string() + "\n";
    }
    write_file_atomic(run_dir.path() / "shares", shares);
    // Cached kernels are written once and never changed: read-only and cached in the L1
    // (uncached 9p reads a bzImage at about 19 MB/s there, cached 9p at 100 MB/s cold).
    std::string cached;
    if (fs::path kernels = ktstr_cache_dir() / "kernels"; fs::is_directory(kernels))
        cached += fs::canonical(kernels).string() + "\n";
    write_file_atomic(run_dir.path() / "cached", cached);

    std::cerr << "ktstr sandbox: "
              << (options.arch != host_arch()
                      ? fmt::format("{} guests need an emulated {} host", arch_name(options.arch),
                                    arch_name(options.arch))
                  : Kvm::usable() ? std::string("this host's /dev/kvm cannot run guests")
                                  : std::string("no /dev/kvm on this host"))
              << "; running under nested KVM in a QEMU TCG guest (timings are emulated)"
              << std::endl;
    UniqueFd qemu_log(::open((run_dir.path() / "qemu.log").c_str(),
                             O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    Pipe out, err;
    SpawnOptions spawn;
    spawn.redirects = {{out.write.get(), 3}, {err.write.get(), 4}, {qemu_log.get(), STDERR_FILENO}};
    if (!interactive)
        spawn.redirects.emplace_back(devnull.get(), STDIN_FILENO);

    // QEMU's stdio makes the terminal raw; whatever ends QEMU, the terminal comes back.
    std::optional<termios> saved_terminal;
    if (termios mode{}; interactive && ::tcgetattr(STDIN_FILENO, &mode) == 0)
        saved_terminal = mode;
    ChildProcess child = start_process(argv, spawn);
    out.write.reset();
    err.write.reset();
    L1HeartbeatWatch heartbeat(run_dir.path() / "heartbeat", child, kL1HeartbeatLimit);
    // SIGINT and SIGTERM end QEMU, and with it the L1 guest and everything in it.
    int signal = relay_until_eof({{out.read.get(), STDOUT_FILENO}, {err.read.get(), STDERR_FILENO}},
                                 [&](int) { child.kill(SIGKILL); });
    ExitStatus qemu_status = child.wait();
    bool l1_hung = heartbeat.stop();
    if (saved_terminal)
        ::tcsetattr(STDIN_FILENO, TCSANOW, &*saved_terminal);
    if (signal != 0) {
        std::cerr << "ktstr sandbox: stopped by " << (signal == SIGINT ? "SIGINT" : "SIGTERM")
                  << std::endl;
        return 128 + signal;
    }

    std::string console =
        fs::exists(run_dir.path() / "console.log") ? read_file(run_dir.path() / "console.log") : "";
    if (l1_hung)
        throw SandboxFailure(fmt::format("the emulated L1 guest stopped responding (no heartbeat "
                                         "for {} s); killed it",
                                         kL1HeartbeatLimit.count()));
    fs::path status_file = run_dir.path() / "status";
    if (!fs::exists(status_file)) {
        std::string log = read_file(run_dir.path() / "qemu.log");
        if (console.size() > 4000)
            console = "...\n" + console.substr(console.size() - 4000);
        std::cerr << console << log;
        throw SandboxFailure(fmt::format("the emulated L1 guest ended (QEMU status {}) before the "
                                         "command did",
                                         qemu_status.code));
    }
    int status = std::stoi(read_file(status_file));
    // A command that failed while the L1 kernel itself was in trouble failed for the
    // sandbox's reasons; its verdict cannot be trusted either way.
    if (std::string trouble = kernel_trouble_line(console); status != 0 && !trouble.empty())
        throw SandboxFailure("the command failed (status " + std::to_string(status) +
                             ") while the emulated L1 kernel reported: " + trouble);
    return status;
}

} // namespace

// Whether KVM runs guests cannot change while this host's kernel runs, so the probe (a small
// guest) runs once per host boot: its answer is kept in the cache under the boot's id. A
// sandbox's L1 shares the cache but boots anew each time, so it probes and keeps nothing.
bool host_kvm_runs_guests() {
    if (!Kvm::usable())
        return false;
    std::string boot_id;
    try {
        if (!std::getenv(kInSandboxVariable))
            boot_id = read_file("/proc/sys/kernel/random/boot_id");
    } catch (const Error&) {
    }
    boot_id = boot_id.substr(0, boot_id.find('\n'));
    fs::path cached = ktstr_cache_dir() / "kvm-runs-guests";
    std::string key = boot_id + " " + std::string(arch_name(host_arch())) + " ";
    if (!boot_id.empty()) {
        try {
            if (std::string said = read_file(cached); said.starts_with(key))
                return said.substr(key.size()).starts_with("yes");
        } catch (const Error&) {
        }
    }
    bool runs = host_platform().runs_guests().passed;
    if (!boot_id.empty()) {
        try {
            fs::create_directories(cached.parent_path());
            write_file_atomic(cached, key + (runs ? "yes\n" : "no\n"));
        } catch (const std::exception&) { // an unwritable cache: probe again next time
        }
    }
    return runs;
}

std::string shell_quote(const std::string& word) {
    std::string quoted = "'";
    for (char c : word)
        quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return quoted + "'";
}

int run_in_sandbox(const SandboxOptions& options) {
    if (options.command.empty())
        throw UsageError(
            "sandbox: no command given (usage: ktstr sandbox [options] -- CMD [ARGS...])");
    if (options.kernel) // a bad --kernel is an error wherever the command would run
        choose_kernel(options.kernel, options.arch, KernelCache());
    // Another architecture's guests run only under emulation.
    if (options.force_emulation || options.arch != host_arch() || !host_kvm_runs_guests())
        return run_emulated(options);
    std::cerr << "ktstr sandbox: this host's /dev/kvm works; running the command directly"
              << std::endl;
    std::cout.flush();
    std::vector<char*> args;
    for (const auto& arg : options.command)
        args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::cerr << "ktstr sandbox: cannot run " << options.command[0] << ": " << std::strerror(errno)
              << std::endl;
    return errno == ENOENT ? 127 : 126;
}

} // namespace ktstr
