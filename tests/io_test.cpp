// The executor's output plumbing on real descriptors and threads.
#include "ktstr/base/files.hpp"
#include "ktstr/io/fd_writer.hpp"
#include "ktstr/io/thread_feed.hpp"
#include "test_sinks.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <catch2/catch_test_macros.hpp>
#include <csignal>
#include <fcntl.h>
#include <string>
#include <thread>
#include <unistd.h>

using namespace ktstr;

namespace {

std::span<const std::uint8_t> bytes_of(const std::string& text) {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

// Runs `body` as a coroutine on `executor` until it finishes.
void run_until_done(asio::io_context& executor, std::function<asio::awaitable<void>()> body) {
    bool done = false;
    asio::co_spawn(
        executor,
        [&]() -> asio::awaitable<void> {
            co_await body();
            done = true;
        },
        asio::detached);
    while (!done && executor.run_one() > 0) {
    }
    REQUIRE(done);
}

struct Pipe {
    int read = -1, write = -1;
    Pipe() {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        read = fds[0];
        write = fds[1];
    }
    ~Pipe() {
        if (read >= 0)
            ::close(read);
        if (write >= 0)
            ::close(write);
    }
};

} // namespace

TEST_CASE("FdWriter appends in order to a file", "[io]") {
    TempDir dir("ktstr-io-test");
    auto path = dir.path() / "out";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    {
        asio::io_context executor;
        FdWriter writer(executor, fd, nullptr, 8);
        std::string expected;
        for (std::string part : {"0\n1\n2\n", "done\n", "a longer line than the buffer\n"}) {
            expected += part;
            run_until_done(executor, [&]() -> asio::awaitable<void> {
                for (auto rest = bytes_of(part); !rest.empty();) {
                    rest = rest.subspan(writer.offer(rest));
                    if (!rest.empty())
                        co_await writer.room();
                }
                co_await writer.flushed();
            });
        }
        CHECK(read_file(path) == expected);
    }
    ::close(fd);
}

TEST_CASE("FdWriter holds back its producer while the reader does not read", "[io]") {
    Pipe pipe;
    // A small pipe, so that the kernel's buffer fills quickly too.
    ::fcntl(pipe.write, F_SETPIPE_SZ, 4096);
    asio::io_context executor;
    FdWriter writer(executor, pipe.write, nullptr, 4096);
    std::string block(4096, 'x');
    std::size_t taken = 0;
    for (int i = 0; i < 8; ++i) {
        taken += writer.offer(bytes_of(block));
        executor.poll();
    }
    CHECK(taken < 8 * block.size()); // bounded: the pipe and the buffer are full
    CHECK(taken >= block.size());
    bool room = false;
    asio::co_spawn(
        executor,
        [&]() -> asio::awaitable<void> {
            co_await writer.room();
            room = true;
        },
        asio::detached);
    executor.poll();
    CHECK_FALSE(room);
    std::string drained(1 << 16, '\0');
    while (!room) {
        REQUIRE(::read(pipe.read, drained.data(), drained.size()) > 0);
        executor.run_for(std::chrono::milliseconds(10));
    }
    CHECK(room);
}

TEST_CASE("FdWriter reports a reader that went away, then drops", "[io]") {
    ::signal(SIGPIPE, SIG_IGN); // as ktstr does: a closed pipe is an error, not a death
    Pipe pipe;
    ::close(pipe.read);
    pipe.read = -1;
    asio::io_context executor;
    std::string failure;
    FdWriter writer(executor, pipe.write, [&](const std::string& why) { failure = why; });
    CHECK(writer.offer(bytes_of("lost")) == 4);
    run_until_done(executor, [&]() -> asio::awaitable<void> { co_await writer.flushed(); });
    CHECK_FALSE(failure.empty());
    CHECK(writer.offer(bytes_of("dropped")) == 7);
}

TEST_CASE("ThreadFeed carries a thread's bytes in order and releases it on close", "[io]") {
    asio::io_context executor;
    test::StringSink sink;
    ThreadFeed feed(executor, sink, 16);
    std::string expected;
    for (int i = 0; i < 2000; ++i)
        expected += std::to_string(i) + ",";
    std::thread writer([&] {
        for (std::size_t at = 0; at < expected.size(); at += 7)
            REQUIRE(feed.write(bytes_of(expected.substr(at, 7))));
    });
    while (sink.text.size() < expected.size())
        executor.run_for(std::chrono::milliseconds(5));
    writer.join();
    CHECK(sink.text == expected);

    // A writer waiting for room is let go by close(), and later writes are refused.
    test::WindowSink window(executor, 1);
    ThreadFeed blocked(executor, window, 4);
    std::thread stuck([&] { CHECK_FALSE(blocked.write(bytes_of("more than fits here"))); });
    executor.run_for(std::chrono::milliseconds(50));
    blocked.close();
    stuck.join();
    CHECK_FALSE(blocked.write(bytes_of("x")));
}
