#pragma once

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <cstdint>

namespace ktstr {

// A non-blocking eventfd that coroutines on the executor can wait on: the notification
// half of an ioeventfd, or a wake-up between threads. It must go before its io_context.
class EventFd {
  public:
    explicit EventFd(asio::io_context& context);
    // Waits on an eventfd made elsewhere, through a duplicate of `fd`.
    EventFd(asio::io_context& context, int fd);
    int fd() const;
    // Adds one to the counter (from any thread).
    void signal() const;
    // Completes with the counter's value (resetting it) once it is non-zero.
    asio::awaitable<std::uint64_t> wait();

  private:
    mutable asio::posix::stream_descriptor descriptor_;
};

} // namespace ktstr
