#include "ktstr/io/relay.hpp"

#include "ktstr/base/error.hpp"

#include <array>
#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/redirect_error.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <cerrno>
#include <unistd.h>

namespace ktstr {
namespace {

void write_all(int fd, const char* data, std::size_t size) {
    while (size > 0) {
        ssize_t n = ::write(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return; // the reader went away: drop the rest, as `cat` into a closed pipe would
        data += n;
        size -= static_cast<std::size_t>(n);
    }
}

asio::awaitable<void> relay(int from, int to) {
    auto executor = co_await asio::this_coro::executor;
    asio::posix::stream_descriptor source(executor, from);
    std::array<char, 65536> buffer;
    for (;;) {
        std::error_code ec;
        std::size_t n = co_await source.async_read_some(
            asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
        if (ec)
            break; // asio::error::eof, or the pipe broke
        write_all(to, buffer.data(), n);
    }
    source.release(); // the caller owns the descriptor
}

} // namespace

void relay_until_eof(const std::vector<std::pair<int, int>>& pairs) {
    asio::io_context context(1);
    for (auto [from, to] : pairs)
        asio::co_spawn(context, relay(from, to), asio::detached);
    context.run();
}

} // namespace ktstr
