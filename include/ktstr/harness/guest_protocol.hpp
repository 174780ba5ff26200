#pragma once

// What the guest init sends the host over its channel (a serial port or virtio-console):
// frames of [kind: u8][length: u32 little-endian][payload]. Shared by both sides.

#include <cstdint>

namespace ktstr::guest_protocol {

enum class FrameKind : std::uint8_t {
    stdout_data = 1,   // the command's standard output
    stderr_data = 2,   // the command's standard error
    exit_status = 3,   // payload: i32, the shell's convention (128 + signal)
    init_error = 4,    // payload: text; init could not run the command
    console_ready = 5, // no payload; `ktstr shell`: the command's console is set up, input may come
};

inline constexpr std::uint32_t kMaxPayload = 1 << 16;
inline constexpr std::uint32_t kHeaderSize = 5;

// Files the host puts in the initramfs for init.
inline constexpr const char* kCommandFile = "/ktstr/command"; // argv, NUL-terminated each
inline constexpr const char* kModulesFile = "/ktstr/modules"; // module paths, one a line
inline constexpr const char* kLibraryPathFile = "/ktstr/library-path";
// Present for `ktstr shell`: the command gets the console as its terminal.
inline constexpr const char* kInteractiveFile = "/ktstr/interactive";
inline constexpr const char* kWindowSizeFile = "/ktstr/window-size"; // "rows cols"
// Present when the host's input is not a terminal: the command's console does not echo, so
// line editors (busybox's) read plain lines instead of querying a terminal that never
// answers. The host sends input only after console_ready, so none is echoed early.
inline constexpr const char* kLineInputFile = "/ktstr/line-input";

// The guest init's first words on the kernel console: the host times boots by them.
inline constexpr const char* kInitStartedMarker = "ktstr-init: started";

} // namespace ktstr::guest_protocol
