#pragma once

#include <asio/awaitable.hpp>
#include <cstdint>
#include <span>

namespace ktstr {

// Where a producer on the executor puts bytes without ever blocking the executor: offer()
// takes what fits now, room() waits until more fits. A producer that cannot hand its bytes
// on holds them (a device keeps the guest's buffer), which is how backpressure reaches the
// guest instead of the event loop.
class ByteSink {
  public:
    virtual ~ByteSink() = default;
    // Takes a prefix of `bytes`, possibly empty, and returns its length. Executor thread.
    virtual std::size_t offer(std::span<const std::uint8_t> bytes) = 0;
    // Completes once offer() can take at least one more byte.
    virtual asio::awaitable<void> room() = 0;
};

} // namespace ktstr
