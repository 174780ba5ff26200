#pragma once

// ByteSinks for tests: one that keeps everything, one that takes only what its window has
// room for until the test drains it.

#include "ktstr/io/byte_sink.hpp"
#include "ktstr/io/wakeup.hpp"

#include <algorithm>
#include <string>

namespace ktstr::test {

struct StringSink : ByteSink {
    std::string text;
    std::size_t offer(std::span<const std::uint8_t> bytes) override {
        text.append(bytes.begin(), bytes.end());
        return bytes.size();
    }
    asio::awaitable<void> room() override { co_return; }
};

// Takes at most `window` bytes until drain() empties it.
struct WindowSink : ByteSink {
    WindowSink(asio::io_context& executor, std::size_t window)
        : window(window), drained(executor) {}
    std::size_t window;
    std::string held, taken;
    Wakeup drained;
    std::size_t offer(std::span<const std::uint8_t> bytes) override {
        std::size_t n = std::min(bytes.size(), window - held.size());
        held.append(bytes.begin(), bytes.begin() + std::ptrdiff_t(n));
        return n;
    }
    asio::awaitable<void> room() override {
        while (held.size() == window)
            co_await drained.wait();
    }
    void drain() {
        taken += held;
        held.clear();
        drained.notify();
    }
};

} // namespace ktstr::test
