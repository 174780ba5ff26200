#include "ktstr/io/event_fd.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/fd.hpp"

#include <asio/read.hpp>
#include <asio/use_awaitable.hpp>
#include <sys/eventfd.h>

namespace ktstr {

namespace {
int new_eventfd() {
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        throw_errno("eventfd");
    return fd;
}
} // namespace

EventFd::EventFd(asio::io_context& context) : descriptor_(context, new_eventfd()) {}

int EventFd::fd() const { return descriptor_.native_handle(); }

void EventFd::signal() const { signal_eventfd(fd()); }

asio::awaitable<std::uint64_t> EventFd::wait() {
    std::uint64_t count = 0;
    co_await asio::async_read(descriptor_, asio::buffer(&count, sizeof count), asio::use_awaitable);
    co_return count;
}

} // namespace ktstr
