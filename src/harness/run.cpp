#include "ktstr/harness/run.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/fd.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/base/process.hpp"
#include "ktstr/harness/guest_channel.hpp"
#include "ktstr/harness/guest_protocol.hpp"
#include "ktstr/initramfs/cpio.hpp"
#include "ktstr/initramfs/shared_libraries.hpp"
#include "ktstr/kernel/debian_kernel.hpp"
#include "ktstr/kernel/kernel_cache.hpp"
#include "ktstr/kernel/module_tree.hpp"
#include "ktstr/vmm/topology.hpp"
#include "ktstr/vmm/x86_64/machine.hpp"

#include <charconv>
#include <csignal>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace ktstr {
namespace {

using Clock = BootTimeline::Clock;
constexpr std::uint64_t kMinMemory = 128ull << 20;
constexpr std::size_t kConsoleTail = 64 * 1024;
constexpr const char* kBusybox = "/bin/busybox";

// The command line ktstr gives every guest: console on COM1, reset through the i8042 on
// reboot, an oops ends the run like a panic (a scheduler that oopses a kworker must not
// pass), no PCI, nothing slow that a test VM does not need.
constexpr const char* kBaseCmdline =
    "console=ttyS0 quiet reboot=k panic=-1 oops=panic pci=off mitigations=off no_timer_check "
    "clocksource=kvm-clock i8042.noaux i8042.nomux i8042.dumbkbd rdinit=/init";

std::pair<std::uint64_t, std::string_view> split_number(std::string_view text) {
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end == text.data())
        return {0, {}};
    return {value, text.substr(std::size_t(end - text.data()))};
}

fs::path guest_init_path() {
    fs::path init = fs::read_symlink("/proc/self/exe").parent_path() / "ktstr-guest-init";
    if (!fs::exists(init))
        throw Error("the guest init " + init.string() +
                    " is missing (build target ktstr-guest-init)");
    return init;
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

// What every run of this kernel shares: the init, busybox with its applets, the modules.
// Built once and cached; the kernel unpacks it and the per-run archive one after the other.
std::vector<std::uint8_t> base_initramfs(const KernelChoice& kernel) {
    fs::path init = guest_init_path();
    std::string key = file_stamp(init) + file_stamp(kernel.image) +
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
std::vector<std::uint8_t> build_initramfs(const RunOptions& options, const KernelChoice& kernel,
                                          std::vector<std::string>& guest_argv) {
    CpioArchive cpio;
    LibraryResolver resolver;
    std::set<fs::path> added;
    std::set<std::string> library_dirs;

    guest_argv = options.command;
    std::string& program = guest_argv.front();
    if (program.find('/') == std::string::npos)
        program = find_program(program).value().string();
    program = fs::absolute(program).string();
    add_with_libraries(cpio, resolver, program, added, library_dirs);
    for (const auto& include : options.includes) {
        if (!fs::is_regular_file(include))
            throw UsageError("--include " + include + " is not a file");
        add_with_libraries(cpio, resolver, include, added, library_dirs);
    }

    std::string argv_file;
    for (const auto& arg : guest_argv)
        argv_file += arg + '\0';
    cpio.add_file(guest_protocol::kCommandFile, argv_file);
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
    std::vector<std::uint8_t> bytes = base_initramfs(kernel);
    std::vector<std::uint8_t> run = cpio.finish();
    bytes.insert(bytes.end(), run.begin(), run.end());
    return bytes;
}

void write_all(int fd, std::span<const std::uint8_t> bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n <= 0)
            return;
        bytes = bytes.subspan(std::size_t(n));
    }
}

constexpr std::uint8_t kEscapeKey = 0x1d; // Ctrl-]

// Puts the terminal on stdin in raw mode (keys go to the guest as typed) and restores it.
class RawTerminal {
  public:
    RawTerminal() {
        if (::tcgetattr(STDIN_FILENO, &saved_) != 0)
            return;
        termios raw = saved_;
        ::cfmakeraw(&raw);
        active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    RawTerminal(const RawTerminal&) = delete;
    RawTerminal& operator=(const RawTerminal&) = delete;
    ~RawTerminal() {
        if (active_)
            ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    }

  private:
    termios saved_{};
    bool active_ = false;
};

std::string kernel_command_line(const RunOptions& options) {
    return options.extra_cmdline.empty() ? kBaseCmdline
                                         : kBaseCmdline + (" " + options.extra_cmdline);
}

// The part of the console from the panic or oops report on, if the kernel printed one.
std::string find_panic(const std::string& console) {
    if (console.find("Kernel panic") == std::string::npos &&
        console.find("Oops:") == std::string::npos)
        return {};
    // From the first line of the report: an oops starts with "BUG: ..." or "Oops: ...", and
    // with oops=panic the panic line only follows it.
    std::size_t at = std::string::npos;
    for (const char* marker : {"Kernel panic", "Oops:", "BUG:"})
        at = std::min(at, console.find(marker));
    std::size_t line = console.rfind('\n', at);
    return console.substr(line == std::string::npos ? 0 : line + 1);
}

} // namespace

std::uint64_t parse_memory_size(std::string_view text) {
    auto [value, unit] = split_number(text);
    std::uint64_t shift = unit == "K" || unit == "k"   ? 10
                          : unit == "M" || unit == "m" ? 20
                          : unit == "G" || unit == "g" ? 30
                                                       : 64;
    if (unit.empty() || shift == 64 || value == 0)
        throw UsageError("memory size '" + std::string(text) + "' is not like 512M or 2G");
    if (value > (1ull << (63 - shift)))
        throw UsageError("memory size '" + std::string(text) + "' is too large");
    std::uint64_t bytes = value << shift;
    if (bytes < kMinMemory)
        throw UsageError(fmt::format("memory size {} is too small: a guest needs at least {} MiB",
                                     text, kMinMemory >> 20));
    if (bytes % (2ull << 20) != 0)
        throw UsageError(fmt::format("memory size {} is not a multiple of 2 MiB", text));
    return bytes;
}

std::chrono::milliseconds parse_duration(std::string_view text) {
    auto [value, unit] = split_number(text);
    std::uint64_t ms_per_unit = unit == "ms"                  ? 1
                                : unit == "s" || unit.empty() ? 1000
                                : unit == "m"                 ? 60'000
                                : unit == "h"                 ? 3'600'000
                                                              : 0;
    if (ms_per_unit == 0 || value == 0 || text.empty())
        throw UsageError("duration '" + std::string(text) + "' is not like 20s, 2m or 500ms");
    return std::chrono::milliseconds(value * ms_per_unit);
}

namespace {

struct PreparedRun {
    x86_64::MachineConfig config;
    KernelChoice kernel;
};

PreparedRun prepare(const RunOptions& options) {
    if (options.command.empty())
        throw UsageError("no command given (usage: ktstr run [options] -- CMD [ARGS...])");
    const std::string& program = options.command.front();
    if (program.find('/') == std::string::npos ? !find_program(program) : !fs::exists(program))
        throw UsageError("command '" + program + "' is not on this host");
    x86_64::MachineConfig config;
    config.topology = Topology::parse(options.topology);
    config.memory_bytes = parse_memory_size(options.memory);
    config.hugepages = options.hugepages;
    config.x2apic = options.x2apic;
    if (!options.timeout.empty())
        config.timeout = parse_duration(options.timeout);
    KernelCache cache;
    if (!options.kernel && !cache.newest(Arch::x86_64))
        fetch_debian_kernel(cache, Arch::x86_64, true, std::cerr);
    KernelChoice kernel = choose_kernel(options.kernel, Arch::x86_64, cache);
    check_kernel_image(kernel.image, Arch::x86_64);
    return {std::move(config), std::move(kernel)};
}

} // namespace

void validate_run_options(const RunOptions& options) { prepare(options); }

BootImages build_boot_images(const RunOptions& options) {
    auto [config, kernel] = prepare(options);
    std::vector<std::string> guest_argv;
    return {kernel.image, build_initramfs(options, kernel, guest_argv),
            kernel_command_line(options)};
}

int run_in_vm(const RunOptions& options, BootTimeline* timeline) {
    auto [config, kernel] = prepare(options);
    config.bzimage = read_binary_file(kernel.image);
    std::vector<std::string> guest_argv;
    config.initrd = build_initramfs(options, kernel, guest_argv);
    config.command_line = kernel_command_line(options);
    if (timeline) {
        config.exit_counts = &timeline->exits;
        config.on_started = [timeline] {
            timeline->vmm_ready = Clock::now();
        };
    }

    std::mutex console_mutex;
    std::string console;
    config.com1_output = [&](std::span<const std::uint8_t> bytes) {
        std::lock_guard lock(console_mutex);
        console.append(bytes.begin(), bytes.end());
        if (timeline && !timeline->init_started &&
            console.find(guest_protocol::kInitStartedMarker) != std::string::npos)
            timeline->init_started = Clock::now();
        if (console.size() > 2 * kConsoleTail)
            console.erase(0, console.size() - kConsoleTail);
        if (options.interactive)
            write_all(STDOUT_FILENO, bytes);
        else if (options.verbose)
            write_all(STDERR_FILENO, bytes);
    };
    // ktstr shell: this terminal, raw, is the guest console's other end.
    std::optional<RawTerminal> raw_terminal;
    UniqueFd input_gate;
    if (options.interactive) {
        // Input waits for the guest's console (see guest_protocol::console_ready).
        input_gate = make_eventfd();
        config.com1_input_gate_fd = input_gate.get();
        config.com1_input_fd = STDIN_FILENO;
        if (::isatty(STDIN_FILENO)) {
            config.input_escape = kEscapeKey;
            raw_terminal.emplace();
        } else { // end of file for the guest's line discipline: one Ctrl-D ends a partial line
            config.com1_input_at_end = {0x04, 0x04};
        }
    }
    GuestChannelDecoder channel({[](auto bytes) { write_all(STDOUT_FILENO, bytes); },
                                 [](auto bytes) { write_all(STDERR_FILENO, bytes); },
                                 [&input_gate] {
                                     if (input_gate)
                                         signal_eventfd(input_gate.get());
                                 }});
    // The guest uses one channel, but nothing stops a hostile one from writing to both.
    std::mutex channel_mutex;
    auto feed_channel = [&](std::span<const std::uint8_t> bytes) {
        std::lock_guard lock(channel_mutex);
        channel.feed(bytes);
        if (timeline && !timeline->command_exited && channel.exit_status())
            timeline->command_exited = Clock::now();
    };
    config.com2_output = feed_channel;
    config.virtio_console_output = feed_channel;

    StopReason stop = x86_64::run_machine(config);
    if (timeline)
        timeline->torn_down = Clock::now();
    raw_terminal.reset();

    std::lock_guard lock(console_mutex);
    if (auto status = channel.exit_status())
        return *status;
    auto fail = [&](const std::string& message, int code) {
        std::cerr << "ktstr: " << message << "\n";
        return code;
    };
    if (!channel.init_error().empty())
        return fail("the guest init failed: " + channel.init_error(), 1);
    if (!channel.broken().empty())
        return fail(channel.broken(), 1);
    if (std::string panic = find_panic(console); !panic.empty())
        return fail("the guest kernel panicked:\n" + panic, 1);
    switch (stop.kind) {
    case StopReason::Kind::timeout:
        return fail(fmt::format("the guest did not finish within {}; stopped it", options.timeout),
                    124);
    case StopReason::Kind::interrupted:
        return fail(stop.message, 128 + (stop.signal ? stop.signal : SIGINT));
    default:
        if (!options.verbose && !console.empty())
            std::cerr << console.substr(console.size() > 4000 ? console.size() - 4000 : 0);
        return fail("the guest stopped before the command finished: " + stop.message, 1);
    }
}

} // namespace ktstr
