#include "ktstr/io/relay.hpp"

#include "ktstr/io/fd_writer.hpp"

#include <array>
#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/redirect_error.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <csignal>
#include <fcntl.h>
#include <memory>
#include <unistd.h>

namespace ktstr {
namespace {

asio::awaitable<void> relay(asio::io_context& context, int from, FdWriter& to, int& running) {
    asio::posix::stream_descriptor source(context, ::fcntl(from, F_DUPFD_CLOEXEC, 0));
    std::array<std::uint8_t, 65536> buffer;
    for (;;) {
        std::error_code ec;
        std::size_t n = co_await source.async_read_some(
            asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
        if (ec)
            break; // asio::error::eof, or the pipe broke
        for (std::span<const std::uint8_t> rest(buffer.data(), n); !rest.empty();) {
            rest = rest.subspan(to.offer(rest));
            if (!rest.empty())
                co_await to.room();
        }
    }
    co_await to.flushed();
    if (--running == 0)
        context.stop();
}

} // namespace

int relay_until_eof(const std::vector<std::pair<int, int>>& pairs,
                    const std::function<void(int)>& on_signal) {
    asio::io_context context(1);
    std::vector<std::unique_ptr<FdWriter>> writers;
    int running = int(pairs.size());
    for (auto [from, to] : pairs) {
        // A reader that went away loses the rest, as `cat` into a closed pipe would.
        writers.push_back(std::make_unique<FdWriter>(context, to, nullptr));
        asio::co_spawn(context, relay(context, from, *writers.back(), running), asio::detached);
    }
    int received = 0;
    asio::signal_set signals(context, SIGINT, SIGTERM);
    asio::steady_timer grace(context);
    std::function<void()> watch = [&] {
        signals.async_wait([&](const std::error_code& ec, int signal) {
            if (ec)
                return;
            if (received == 0) { // the first: end the sources, let the last output through
                grace.expires_after(std::chrono::seconds(1));
                grace.async_wait([&](const std::error_code& timer_ec) {
                    if (!timer_ec)
                        context.stop();
                });
            }
            received = signal;
            on_signal(signal);
            watch();
        });
    };
    watch();
    if (running > 0)
        context.run();
    return received;
}

} // namespace ktstr
