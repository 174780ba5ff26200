#include "ktstr/sandbox/sandbox.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/fd.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/base/process.hpp"
#include "ktstr/base/xz.hpp"
#include "ktstr/initramfs/cpio.hpp"
#include "ktstr/initramfs/shared_libraries.hpp"
#include "ktstr/io/relay.hpp"
#include "ktstr/kernel/kernel_cache.hpp"
#include "ktstr/kernel/module_tree.hpp"
#include "ktstr/vmm/kvm.hpp"
#include "ktstr/vmm/self_check.hpp"

#include <algorithm>
#include <csignal>
#include <fcntl.h>
#include <fmt/format.h>
#include <iostream>
#include <unistd.h>

extern char** environ;

namespace fs = std::filesystem;

namespace ktstr {
namespace {

// Modules the L1 guest loads: KVM for AMD (the emulated CPU is always an EPYC) and 9p
// to see the host's files.
const std::vector<std::string> kL1Modules = {"kvm_amd", "9p", "9pnet_virtio"};
constexpr const char* kMountOptions = "trans=virtio,version=9p2000.L,msize=512000";

// PID 1 of the L1 guest (busybox sh). The run directory, shared read-write, carries the
// command in and its exit status out; the host's root is shared read-only.
constexpr const char* kL1Init = R"(#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "ktstr sandbox: L1 guest: $*" > /dev/ttyS2; poweroff -f; }
mkdir -p /proc /sys /dev /host /run/ktstr
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/ktstr-modules); do insmod "/lib/modules/$m" || fail "insmod $m failed"; done
[ -c /dev/kvm ] || fail "/dev/kvm did not appear after loading kvm_amd"
opts=@MOUNT_OPTIONS@
mount -t 9p -o "$opts" ktstr_run /run/ktstr || fail "cannot mount the run directory"
mount -t 9p -o "$opts,ro,cache=loose" hostroot /host || fail "cannot mount the host's root"
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mount -t tmpfs tmpfs /host/run
while read -r tag path; do
  mkdir -p "/host$path" && mount -t 9p -o "$opts" "$tag" "/host$path" || fail "cannot mount $path"
done < /run/ktstr/shares
stty -F /dev/ttyS1 raw -echo
stty -F /dev/ttyS2 raw -echo
cp /run/ktstr/command.sh /host/run/ktstr-command.sh
run() { chroot /host /bin/sh /run/ktstr-command.sh; echo $? > /run/ktstr/status; }
if [ -e /run/ktstr/interactive ]; then
  run < /dev/ttyS1 > /dev/ttyS1 2> /dev/ttyS2
else
  # Pipes, not terminals, as the command would see under a test runner on the host.
  mkfifo /stdout /stderr
  cat /stdout > /dev/ttyS1 &
  cat /stderr > /dev/ttyS2 &
  run < /dev/null > /stdout 2> /stderr
  wait
fi
sync
poweroff -f
)";

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

fs::path find_static_busybox() {
    for (fs::path candidate : {"/bin/busybox", "/usr/bin/busybox"})
        if (fs::exists(candidate) && is_static_elf(candidate))
            return candidate;
    throw Error("no static busybox found: install busybox-static (scripts/setup does)");
}

// The L1 initramfs depends only on the kernel and the host's busybox; cache it per kernel.
fs::path l1_initramfs(const KernelChoice& kernel) {
    fs::path busybox = find_static_busybox();
    std::string init = replace_all(kL1Init, "@MOUNT_OPTIONS@", kMountOptions);
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
        for (const auto& module : tree.load_order(kL1Modules)) {
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
            script += "export " + name + "=" + shell_quote(entry.substr(eq + 1)) + "\n";
    }
    script += "export KTSTR_IN_SANDBOX=1\n";
    script += "exec";
    for (const auto& arg : command)
        script += " " + shell_quote(arg);
    return script + "\n";
}

// Writable shares: the temporary directory, the working directory and the ktstr cache,
// outermost first; one inside another is covered by it.
std::vector<fs::path> writable_paths() {
    const char* tmpdir = std::getenv("TMPDIR");
    std::vector<fs::path> wanted;
    for (fs::path path :
         {fs::path(tmpdir && *tmpdir ? tmpdir : "/tmp"), fs::current_path(), ktstr_cache_dir()}) {
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
    if (options.arch != Arch::x86_64)
        throw UsageError("the emulated sandbox runs x86_64 guests only for now");
    auto qemu = find_program("qemu-system-x86_64");
    if (!qemu)
        throw Error("qemu-system-x86_64 not found: install qemu-system-x86 (scripts/setup does)");
    KernelChoice kernel = choose_kernel(options.kernel, options.arch, KernelCache());
    fs::path initramfs = l1_initramfs(kernel);

    TempDir run_dir("ktstr-sandbox");
    write_file_atomic(run_dir.path() / "command.sh", command_script(options.command));
    std::string shares;
    std::vector<std::string> argv = {
        qemu->string(),
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "EPYC,+svm,+npt",
        "-smp",
        "2",
        "-m",
        "4G",
        "-M",
        "pc",
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
        "-kernel",
        kernel.image.string(),
        "-initrd",
        initramfs.string(),
        "-append",
        "console=ttyS0 quiet panic=-1 rdinit=/init mitigations=off",
        "-serial",
        "file:" + (run_dir.path() / "console.log").string(),
    };
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
    argv.insert(argv.end(), {"-serial", "chardev:out", "-chardev",
                             "file,id=err,path=/proc/self/fd/4", "-serial", "chardev:err"});
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

    std::cerr << "ktstr sandbox: "
              << (Kvm::usable() ? "this host's /dev/kvm cannot run guests"
                                : "no /dev/kvm on this host")
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

    // Ctrl-C reaches QEMU through the terminal; stay alive to clean up after it.
    struct sigaction ignore {
    }, old_int{};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGINT, &ignore, &old_int);
    ChildProcess child = start_process(argv, spawn);
    out.write.reset();
    err.write.reset();
    relay_until_eof({{out.read.get(), STDOUT_FILENO}, {err.read.get(), STDERR_FILENO}});
    ExitStatus qemu_status = child.wait();
    ::sigaction(SIGINT, &old_int, nullptr);

    fs::path status_file = run_dir.path() / "status";
    if (!fs::exists(status_file)) {
        std::string console = fs::exists(run_dir.path() / "console.log")
                                  ? read_file(run_dir.path() / "console.log")
                                  : "";
        std::string log = read_file(run_dir.path() / "qemu.log");
        if (console.size() > 4000)
            console = "...\n" + console.substr(console.size() - 4000);
        std::cerr << console << log;
        throw Error(fmt::format("sandbox: the L1 guest ended (QEMU status {}) without running "
                                "the command to completion",
                                qemu_status.code));
    }
    return std::stoi(read_file(status_file));
}

} // namespace

bool host_kvm_runs_guests() {
    if (!Kvm::usable())
        return false;
#if defined(__x86_64__)
    std::string why;
    return kvm_runs_64bit_guests(why);
#else
    return true;
#endif
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
    if (options.force_emulation || !host_kvm_runs_guests())
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
