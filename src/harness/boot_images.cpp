#include "ktstr/harness/boot_images.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/base/process.hpp"
#include "ktstr/initramfs/cpio.hpp"
#include "ktstr/initramfs/shared_libraries.hpp"
#include "ktstr/kernel/module_tree.hpp"
#include "ktstr/vmm/platform.hpp"

#include <chrono>
#include <fmt/format.h>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace ktstr {
namespace {

constexpr const char* kBusybox = "/bin/busybox";
// The guest's hang report (guest_protocol::kHangReportFile) comes this long before the
// timeout, so that it reaches the host before the timeout ends the VM: the guest's clock
// starts a little after the host's timeout does (2 s later in the sandbox).
constexpr std::chrono::milliseconds kHangReportLead{20'000};

// The guest's uptime at which it reports a hang; none for runs without a timeout or with
// too short a one, nor for `ktstr shell` (the report would land in the user's terminal).
std::optional<std::chrono::milliseconds> hang_report_at(const RunPlan& plan) {
    if (!plan.timeout || *plan.timeout < kHangReportLead * 2 || plan.options.interactive)
        return std::nullopt;
    return *plan.timeout - kHangReportLead;
}

// What ktstr adds to the platform's command line for every guest: an oops ends the run
// like a panic (a scheduler that oopses a kworker must not pass), a panic stops the VM at
// once, nothing slow that a test VM does not need: no zeroing of every allocation, no
// crypto self-tests, no audit (with the platform's two UARTs, 1.3 s of a 5 s guest boot in
// the emulated sandbox).
constexpr std::string_view kHarnessCmdline = "quiet panic=-1 oops=panic mitigations=off "
                                             "init_on_alloc=0 cryptomgr.notests audit=0 "
                                             "rdinit=/init";

// A guest program built beside ktstr (the init, the scenario agent).
fs::path guest_program(const char* name) {
    fs::path program = fs::read_symlink("/proc/self/exe").parent_path() / name;
    if (!fs::exists(program))
        throw Error(fmt::format("the guest program {} is missing (build target {})",
                                program.string(), name));
    return program;
}

// Adds `file` at its own path, and for an ELF program its interpreter and libraries.
void add_with_libraries(CpioArchive& cpio, const LibraryResolver& resolver, const fs::path& file,
                        std::set<fs::path>& added, std::set<std::string>& library_dirs) {
    // Only an ELF program has an interpreter and libraries to bring along.
    std::ifstream head(file, std::ios::binary);
    char magic[4] = {};
    head.read(magic, sizeof magic);
    bool is_elf = std::string_view(magic, sizeof magic) == "\x7f"
                                                           "ELF";
    std::vector<fs::path> files = is_elf ? resolver.closure(file) : std::vector<fs::path>{file};
    for (const auto& path : files) {
        fs::path absolute = fs::absolute(path);
        if (!added.insert(absolute).second)
            continue;
        cpio.add_file(absolute.string(), read_binary_file(fs::canonical(absolute)),
                      std::uint32_t(fs::status(fs::canonical(absolute)).permissions()) & 0777);
        if (path != file)
            library_dirs.insert(absolute.parent_path().string());
    }
}

// Modules the guest init loads: virtio-mmio, which carries virtio-console (its output
// channel); a kernel given by path must have it built in (or falls back to COM2).
void add_modules(CpioArchive& cpio, const KernelChoice& kernel) {
    std::string list;
    if (kernel.cached) {
        ModuleTree tree(kernel.cached->modules_dir());
        for (const auto& module : tree.load_order({"virtio_mmio"})) {
            std::string path = "/lib/modules/" + kernel.cached->release + "/" + module.string();
            cpio.add_file(path, read_binary_file(tree.root() / module));
            list += path + "\n";
        }
    }
    cpio.add_file(guest_protocol::kModulesFile, list);
}

// What every run of this kernel shares: the init, the scenario agent, busybox with its
// applets, the modules. Built once and cached; the kernel unpacks it and the per-run
// archive one after the other.
std::vector<std::uint8_t> base_initramfs(const KernelChoice& kernel) {
    fs::path init = guest_program("ktstr-guest-init");
    fs::path agent = guest_program("ktstr-agent");
    // The same image given by path has no modules: that is another archive.
    std::string key = file_stamp(init) + file_stamp(agent) + file_stamp(kernel.image) +
                      (kernel.cached ? kernel.cached->modules_dir().string() : "no modules") +
                      (fs::exists(kBusybox) ? file_stamp(kBusybox) : std::string());
    fs::path cached = ktstr_cache_dir() / "initramfs" /
                      fmt::format("base-{:016x}.cpio", std::hash<std::string>{}(key));
    if (fs::exists(cached)) {
        std::error_code ec; // marks it used, for pruning
        fs::last_write_time(cached, fs::file_time_type::clock::now(), ec);
        try {
            return read_binary_file(cached);
        } catch (const Error&) {
            // Pruned by another run between the check and the read: build it again.
        }
    }

    CpioArchive cpio;
    cpio.add_char_device("dev/console", 5, 1);
    cpio.add_file("init", read_binary_file(init), 0755);
    cpio.add_file(guest_protocol::kAgentPath, read_binary_file(agent), 0755);
    // A static busybox with its applets behind the host's programs on PATH: the shell
    // commands a test writes inline (cat, grep, nproc) work without --include.
    if (fs::exists(kBusybox)) {
        cpio.add_file("ktstr/bin/busybox", read_binary_file(kBusybox), 0755);
        std::istringstream applets(capture_output({kBusybox, "--list"}));
        for (std::string applet; std::getline(applets, applet);)
            if (!applet.empty() && applet != "busybox")
                cpio.add_symlink("ktstr/bin/" + applet, "busybox");
    }
    add_modules(cpio, kernel);
    std::vector<std::uint8_t> bytes = cpio.finish();
    fs::create_directories(cached.parent_path());
    write_file_atomic(cached, std::span<const std::uint8_t>(bytes));
    // Every rebuild of the init or busybox, and every kernel, makes a new one.
    prune_stale_files(cached.parent_path(), "base-", std::chrono::days(7), cached);
    return bytes;
}

// The base archive followed by this run's: the command with its libraries, the includes,
// and what init needs to know.
} // namespace

std::vector<std::uint8_t> build_initramfs(const RunPlan& plan, const guest_protocol::Key& key) {
    const RunOptions& options = plan.options;
    CpioArchive cpio;
    LibraryResolver resolver;
    std::set<fs::path> added;
    std::set<std::string> library_dirs;

    std::vector<std::string> guest_argv = options.command;
    if (!options.command_in_guest) {
        std::string& program = guest_argv.front();
        if (program.find('/') == std::string::npos)
            program = find_program(program).value().string();
        program = fs::absolute(program).string();
        add_with_libraries(cpio, resolver, program, added, library_dirs);
    }
    for (const auto& [path, contents] : options.guest_files)
        cpio.add_file(path, contents);
    for (const auto& include : options.includes) {
        if (!fs::is_regular_file(include))
            throw UsageError("--include " + include + " is not a file");
        add_with_libraries(cpio, resolver, include, added, library_dirs);
    }

    auto nul_separated = [](const std::vector<std::string>& argv) {
        std::string text;
        for (const auto& arg : argv)
            text += arg + '\0';
        return text;
    };
    cpio.add_file(guest_protocol::kCommandFile, nul_separated(guest_argv));
    if (plan.scheduler) {
        add_with_libraries(cpio, resolver, plan.scheduler->path, added, library_dirs);
        std::vector<std::string> scheduler_argv = {plan.scheduler->path.string()};
        scheduler_argv.insert(scheduler_argv.end(), plan.scheduler->args.begin(),
                              plan.scheduler->args.end());
        cpio.add_file(guest_protocol::kSchedulerFile, nul_separated(scheduler_argv));
        cpio.add_file(guest_protocol::kSchedulerAttachTimeoutFile,
                      std::to_string(plan.attach_timeout.count()) + "\n");
        // libbpf reads the kernel's config for __kconfig values (this kernel has no
        // /proc/config.gz); a kernel given by path brings none.
        if (plan.kernel.cached)
            cpio.add_file("/boot/config-" + plan.kernel.cached->release,
                          read_binary_file(plan.kernel.cached->config()));
    }
    if (auto at = hang_report_at(plan))
        cpio.add_file(guest_protocol::kHangReportFile, std::to_string(at->count()) + "\n");
    cpio.add_file(guest_protocol::kChannelKeyFile, std::span<const std::uint8_t>(key), 0600);
    std::string dirs;
    for (const auto& dir : library_dirs)
        dirs += (dirs.empty() ? "" : ":") + dir;
    cpio.add_file(guest_protocol::kLibraryPathFile, dirs + "\n");
    if (options.interactive) {
        cpio.add_file(guest_protocol::kInteractiveFile, std::string());
        winsize window{};
        if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &window) == 0 && window.ws_row > 0)
            cpio.add_file(guest_protocol::kWindowSizeFile,
                          fmt::format("{} {}\n", window.ws_row, window.ws_col));
        if (!::isatty(STDIN_FILENO))
            cpio.add_file(guest_protocol::kLineInputFile, std::string());
    }
    std::vector<std::uint8_t> bytes = base_initramfs(plan.kernel);
    std::vector<std::uint8_t> run = cpio.finish();
    bytes.insert(bytes.end(), run.begin(), run.end());
    return bytes;
}

std::string kernel_command_line(const RunPlan& plan) {
    std::string line = fmt::format("{} {}", host_platform().base_command_line(), kHarnessCmdline);
    if (!plan.options.extra_cmdline.empty())
        line += " " + plan.options.extra_cmdline;
    return line;
}

} // namespace ktstr
