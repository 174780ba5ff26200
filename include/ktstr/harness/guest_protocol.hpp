#pragma once

// What the guest init sends the host over its result channel (virtio-console, or COM2 for
// kernels without virtio), shared by both sides. A frame is
//     [kind: u8][length: u32 little-endian][payload: length bytes][tag: 16 bytes]
// where the tag is keyed BLAKE2b over (sequence: u64 little-endian, kind, length, payload)
// with a key made for this boot, and the sequence counts the frames sent from 0. The host
// puts the key in the initramfs; the init reads it and deletes it before anything else
// runs, so a workload that writes to a console device cannot make a frame the host takes.

#include <array>
#include <cstdint>
#include <sodium.h>
#include <span>

namespace ktstr::guest_protocol {

enum class FrameKind : std::uint8_t {
    stdout_data = 1,   // the command's standard output
    stderr_data = 2,   // the command's standard error
    exit_status = 3,   // payload: i32 in 0-255, the shell's convention (128 + signal); last
    init_error = 4,    // payload: text; init could not run the command; last
    console_ready = 5, // no payload; `ktstr shell`: the command's console is set up, input may come
    hello = 6,         // payload: u32 kVersion; the first frame, naming the channel
    scheduler_output = 7, // the scheduler's standard output and error, as they came
    report = 8,           // payload: a JSON object with a "type" (see guest/init/report.hpp)
    not_run = 9,          // no payload; the command was not started (the scheduler failed); last
    // payload: u32 ms until the hang report (kHangReportFile), from the init's own clock
    // reading before it sent this; at most once, before the scheduler starts, and only
    // with that file. The host takes the first.
    hang_report_due = 10,
};
inline constexpr FrameKind kLastKind = FrameKind::hang_report_due;
inline constexpr std::uint32_t kVersion = 4;

inline constexpr std::uint32_t kMaxPayload = 1 << 16;
inline constexpr std::uint32_t kHeaderSize = 5;
inline constexpr std::size_t kTagSize = 16;
inline constexpr std::size_t kKeySize = 32;
using Key = std::array<std::uint8_t, kKeySize>;
using Tag = std::array<std::uint8_t, kTagSize>;

inline Tag frame_tag(const Key& key, std::uint64_t sequence,
                     std::span<const std::uint8_t, kHeaderSize> header,
                     std::span<const std::uint8_t> payload) {
    std::uint8_t counter[8];
    for (int i = 0; i < 8; ++i)
        counter[i] = std::uint8_t(sequence >> (8 * i));
    crypto_generichash_state state;
    crypto_generichash_init(&state, key.data(), key.size(), kTagSize);
    crypto_generichash_update(&state, counter, sizeof counter);
    crypto_generichash_update(&state, header.data(), header.size());
    crypto_generichash_update(&state, payload.data(), payload.size());
    Tag tag;
    crypto_generichash_final(&state, tag.data(), tag.size());
    return tag;
}

// Files the host puts in the initramfs for init.
inline constexpr const char* kChannelKeyFile = "/ktstr/channel-key"; // kKeySize raw bytes
inline constexpr const char* kCommandFile = "/ktstr/command";        // argv, NUL-terminated each
inline constexpr const char* kModulesFile = "/ktstr/modules";        // module paths, one a line
inline constexpr const char* kLibraryPathFile = "/ktstr/library-path";
// Present for `ktstr shell`: the command gets the console as its terminal.
inline constexpr const char* kInteractiveFile = "/ktstr/interactive";
inline constexpr const char* kWindowSizeFile = "/ktstr/window-size"; // "rows cols"
// Present when the host's input is not a terminal: the command's console does not echo, so
// line editors (busybox's) read plain lines instead of querying a terminal that never
// answers. The host sends input only after console_ready, so none is echoed early.
inline constexpr const char* kLineInputFile = "/ktstr/line-input";
// The sched_ext scheduler to start before the command: argv, NUL-terminated each (absent:
// the kernel's own scheduler), and how long it may take to attach, in ms ("30000\n").
inline constexpr const char* kSchedulerFile = "/ktstr/scheduler";
inline constexpr const char* kSchedulerAttachTimeoutFile = "/ktstr/scheduler-attach-timeout-ms";
// Present when the command reports (the scenario agent): it gets descriptor 3, and each
// line it writes there, a JSON object with a "type", becomes a report frame.
inline constexpr const char* kReportsFile = "/ktstr/reports";
// The scenario agent and the resolved scenario it runs.
inline constexpr const char* kAgentPath = "/ktstr/agent";
inline constexpr const char* kScenarioFile = "/ktstr/scenario.json";

// When the host's timeout is near: the moment, on the guest's CLOCK_BOOTTIME (ms,
// "160000\n"), at which a real-time child of the init writes on the console what each
// process is doing (state, wait channel, kernel stack), so that a run that times out says
// where it hung. The init tells the host when that will be (hang_report_due): a guest
// whose console then says nothing at all, the report's marker line included, had stopped
// running.
inline constexpr const char* kHangReportFile = "/ktstr/hang-report-at-ms";
inline constexpr const char* kHangReportMarker = "ktstr-init: hang report";
inline constexpr const char* kHangReportLinePrefix = "ktstr-init:   "; // a process's line

// The guest init's first words on the kernel console: the host times boots by them.
inline constexpr const char* kInitStartedMarker = "ktstr-init: started";

} // namespace ktstr::guest_protocol
