#pragma once

#include "ktstr/harness/guest_protocol.hpp"
#include "ktstr/vmm/exit_counts.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ktstr {

struct RunOptions {
    std::optional<std::string> kernel; // image path or cached version; newest cached otherwise
    std::string topology = "1n1l2c1t";
    std::string memory = "1G";
    bool hugepages = false;
    bool x2apic = false;          // split irqchip and x2APIC even for APIC IDs below 255
    std::string timeout = "120s"; // empty: none
    std::vector<std::string> includes;
    std::string extra_cmdline;
    bool verbose = false;     // echo the guest kernel's console
    bool interactive = false; // the command gets the console and this terminal (ktstr shell)
    // The sched_ext scheduler to run the command under (a built name or a path), with its
    // arguments; none: the kernel's own scheduler (EEVDF).
    std::optional<std::string> scheduler;
    std::vector<std::string> scheduler_args;
    std::string attach_timeout = "30s";
    std::optional<std::string> json_path; // where the run's result goes as JSON
    std::vector<std::string> command;
    // The command is already in the guest (the scenario agent), not a host program to pack.
    bool command_in_guest = false;
    // Files the guest gets besides the command's: path there, contents.
    std::vector<std::pair<std::string, std::string>> guest_files;
};

// "512M", "2G", "1536K" (binary units) -> bytes; throws UsageError.
std::uint64_t parse_memory_size(std::string_view text);
// "20s", "2m", "500ms", "1h", or plain seconds; throws UsageError.
std::chrono::milliseconds parse_duration(std::string_view text);

// Checks every option (topology, memory, timeout, kernel, command) and throws UsageError
// naming the first bad one; fetches a kernel when none is cached and none is named.
void validate_run_options(const RunOptions& options);

// When a run reached each stage, as the host saw it, and the VM exits it took.
struct BootTimeline {
    using Clock = std::chrono::steady_clock;
    Clock::time_point started = Clock::now();          // the run began (options checked)
    Clock::time_point kernel_read;                     // the kernel image is in memory
    Clock::time_point initramfs_built;                 // the initramfs is assembled
    Clock::time_point vmm_ready;                       // the VM is built; vCPUs start
    std::optional<Clock::time_point> init_started;     // the guest init's first console line
    std::optional<Clock::time_point> hang_report_due;  // when the init said its hang report comes
    std::optional<Clock::time_point> hang_report_seen; // when it came
    std::optional<Clock::time_point> console_last_output; // the console's last bytes
    std::optional<Clock::time_point> command_exited;      // its exit status arrived
    Clock::time_point torn_down;                          // the VM and its threads are gone
    ExitCounts exits;
};

// Boots the kernel with the topology, runs the command inside, streams its output and
// returns its exit status; a guest that panics, hangs past the timeout or breaks gets a
// message on stderr and a non-zero status. With `timeline`, records when each stage came.
int run_in_vm(const RunOptions& options, BootTimeline* timeline = nullptr);

// What `ktstr run` would boot, for handing to another VMM: kernel, initramfs, command line.
struct BootImages {
    std::filesystem::path kernel;
    std::filesystem::path bzimage; // the same kernel as a bzImage, for VMMs without PVH
    std::vector<std::uint8_t> initramfs;
    std::string command_line;
    guest_protocol::Key channel_key; // what the guest init's frames are tagged with
};
BootImages build_boot_images(const RunOptions& options);

} // namespace ktstr
