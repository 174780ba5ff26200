#pragma once

#include "ktstr/io/byte_sink.hpp"

#include <asio/io_context.hpp>
#include <memory>

namespace ktstr {

// Bytes from other threads (a vCPU thread emulating a UART) into a ByteSink on the
// executor, through a bounded queue. A writer waits while the queue is full, so a slow sink
// slows the guest; close() (when the VM stops) releases every writer and refuses what comes
// after, while what was queued still reaches the sink.
class ThreadFeed {
  public:
    static constexpr std::size_t kDefaultCapacity = 64 * 1024;
    // `sink` must outlive every run of `executor` while this feed exists.
    ThreadFeed(asio::io_context& executor, ByteSink& sink, std::size_t capacity = kDefaultCapacity);
    ThreadFeed(const ThreadFeed&) = delete;
    ThreadFeed& operator=(const ThreadFeed&) = delete;
    ~ThreadFeed();

    // Any thread. Returns false (and drops the bytes) once closed.
    bool write(std::span<const std::uint8_t> bytes);
    // Any thread.
    void close();
    // Executor: completes once the sink has taken everything queued.
    asio::awaitable<void> flushed();

  private:
    struct State; // shared with the forwarding loop
    std::shared_ptr<State> state_;
};

} // namespace ktstr
