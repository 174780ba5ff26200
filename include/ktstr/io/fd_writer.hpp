#pragma once

#include "ktstr/io/byte_sink.hpp"

#include <asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>

namespace ktstr {

// Output for a host descriptor (stdout, stderr, a terminal) written by the executor through
// io_uring from a bounded buffer. A reader that stops reading fills the buffer, and then
// offer() takes nothing: the producer waits, the executor never does. If the descriptor
// fails (the reader closed its pipe), `on_failure` is told once and later bytes are dropped.
class FdWriter : public ByteSink {
  public:
    static constexpr std::size_t kDefaultCapacity = 256 * 1024;
    FdWriter(asio::io_context& executor, int fd, std::function<void(const std::string&)> on_failure,
             std::size_t capacity = kDefaultCapacity);
    FdWriter(const FdWriter&) = delete;
    FdWriter& operator=(const FdWriter&) = delete;
    ~FdWriter() override;

    std::size_t offer(std::span<const std::uint8_t> bytes) override;
    asio::awaitable<void> room() override;
    // Completes once everything offered has been written (or dropped after a failure).
    asio::awaitable<void> flushed();
    std::size_t buffered() const;

  private:
    struct State; // shared with the write loop, which may outlive this object
    std::shared_ptr<State> state_;
};

} // namespace ktstr
