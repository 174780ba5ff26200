#pragma once

// The init's end of the result channel (ktstr/harness/guest_protocol.hpp).

#include "ktstr/harness/guest_protocol.hpp"

#include <cstdint>
#include <string>

namespace ktstr::guest {

// Reads this boot's key (and deletes it), opens virtio-console (hvc0) when its driver
// comes up, else COM2, greets the host on it, and removes the device's node so that
// workloads do not stumble on it. Returns false when no device could be opened.
bool open_channel();
bool channel_open();

void send_frame(guest_protocol::FrameKind kind, const void* data, std::uint32_t size);
void send_text(guest_protocol::FrameKind kind, const std::string& text);

// Frames carry a sequence number kept in this process: only the init itself sends them
// (never a forked child).

// Writes all of `size` bytes, retrying after signals; gives up on other errors.
void write_all(int fd, const void* data, std::size_t size);

} // namespace ktstr::guest
