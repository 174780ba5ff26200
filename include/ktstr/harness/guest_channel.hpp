#pragma once

#include "ktstr/harness/guest_protocol.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ktstr {

// Decodes the guest init's frames from a byte stream as it arrives. The guest is not
// trusted: an unknown kind or an oversized frame breaks the channel for good, and nothing
// after that is delivered.
class GuestChannelDecoder {
  public:
    struct Handlers {
        std::function<void(std::span<const std::uint8_t>)> on_stdout;
        std::function<void(std::span<const std::uint8_t>)> on_stderr;
        std::function<void()> on_console_ready = {};
    };
    explicit GuestChannelDecoder(Handlers handlers);

    void feed(std::span<const std::uint8_t> bytes);

    std::optional<int> exit_status() const { return exit_status_; }
    const std::string& init_error() const { return init_error_; }
    // Why the channel broke, or empty while it is fine.
    const std::string& broken() const { return broken_; }

  private:
    void deliver(guest_protocol::FrameKind kind, std::span<const std::uint8_t> payload);

    Handlers handlers_;
    std::vector<std::uint8_t> pending_;
    std::optional<int> exit_status_;
    std::string init_error_;
    std::string broken_;
};

} // namespace ktstr
