#include "ktstr/io/event_fd.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/fd.hpp"

#include <asio/read.hpp>
#include <asio/use_awaitable.hpp>
#include <fcntl.h>

namespace ktstr {

namespace {
int duplicate(int fd) {
    int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        throw_errno("cannot duplicate an eventfd");
    return copy;
}
} // namespace

EventFd::EventFd(asio::io_context& context) : descriptor_(context, make_eventfd().release()) {}

EventFd::EventFd(asio::io_context& context, int fd) : descriptor_(context, duplicate(fd)) {}

int EventFd::fd() const { return descriptor_.native_handle(); }

void EventFd::signal() const { signal_eventfd(fd()); }

asio::awaitable<std::uint64_t> EventFd::wait() {
    std::uint64_t count = 0;
    co_await asio::async_read(descriptor_, asio::buffer(&count, sizeof count), asio::use_awaitable);
    co_return count;
}

} // namespace ktstr
