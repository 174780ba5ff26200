#include "ktstr/harness/guest_channel.hpp"

#include <cstring>
#include <fmt/format.h>

namespace ktstr {

using guest_protocol::FrameKind;

GuestChannelDecoder::GuestChannelDecoder(Handlers handlers) : handlers_(std::move(handlers)) {}

void GuestChannelDecoder::feed(std::span<const std::uint8_t> bytes) {
    if (!broken_.empty())
        return;
    pending_.insert(pending_.end(), bytes.begin(), bytes.end());
    std::size_t at = 0;
    while (pending_.size() - at >= guest_protocol::kHeaderSize) {
        auto kind = FrameKind(pending_[at]);
        std::uint32_t length =
            std::uint32_t(pending_[at + 1]) | std::uint32_t(pending_[at + 2]) << 8 |
            std::uint32_t(pending_[at + 3]) << 16 | std::uint32_t(pending_[at + 4]) << 24;
        if (kind < FrameKind::stdout_data || kind > FrameKind::console_ready) {
            broken_ = fmt::format("the guest sent a frame of unknown kind {}", int(kind));
            break;
        }
        if (length > guest_protocol::kMaxPayload) {
            broken_ = fmt::format("the guest sent a {}-byte frame (at most {})", length,
                                  guest_protocol::kMaxPayload);
            break;
        }
        if (pending_.size() - at - guest_protocol::kHeaderSize < length)
            break;
        deliver(kind, std::span(pending_).subspan(at + guest_protocol::kHeaderSize, length));
        at += guest_protocol::kHeaderSize + length;
    }
    pending_.erase(pending_.begin(), pending_.begin() + std::ptrdiff_t(at));
    if (!broken_.empty())
        pending_.clear();
}

void GuestChannelDecoder::deliver(FrameKind kind, std::span<const std::uint8_t> payload) {
    switch (kind) {
    case FrameKind::stdout_data:
        if (handlers_.on_stdout)
            handlers_.on_stdout(payload);
        break;
    case FrameKind::stderr_data:
        if (handlers_.on_stderr)
            handlers_.on_stderr(payload);
        break;
    case FrameKind::exit_status:
        if (payload.size() != sizeof(std::int32_t)) {
            broken_ = "the guest sent a malformed exit status";
            return;
        }
        std::int32_t status;
        std::memcpy(&status, payload.data(), sizeof status);
        exit_status_ = status;
        break;
    case FrameKind::init_error: init_error_.assign(payload.begin(), payload.end()); break;
    case FrameKind::console_ready:
        if (handlers_.on_console_ready)
            handlers_.on_console_ready();
        break;
    }
}

} // namespace ktstr
