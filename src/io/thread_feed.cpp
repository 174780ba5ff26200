#include "ktstr/io/thread_feed.hpp"

#include "ktstr/io/event_fd.hpp"
#include "ktstr/io/wakeup.hpp"

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>

namespace ktstr {

struct ThreadFeed::State {
    State(asio::io_context& executor, ByteSink& sink, std::size_t capacity)
        : sink(&sink), capacity(capacity), arrived(executor), progress(executor) {}
    ByteSink* sink; // null once the feed is gone
    const std::size_t capacity;
    std::mutex mutex;
    std::condition_variable room;
    std::deque<std::uint8_t> queue;
    bool closed = false;
    bool forwarding = false; // bytes taken from the queue, not yet in the sink
    EventFd arrived;         // written by the threads, read by the executor
    Wakeup progress;         // executor only

    // `keep` holds the state for as long as the loop runs.
    asio::awaitable<void> forward_loop(std::shared_ptr<State> keep);
};

asio::awaitable<void> ThreadFeed::State::forward_loop(std::shared_ptr<State> /*keep*/) {
    constexpr std::size_t kChunk = 4096;
    std::vector<std::uint8_t> chunk;
    for (;;) {
        {
            std::lock_guard lock(mutex);
            std::size_t n = std::min(queue.size(), kChunk);
            chunk.assign(queue.begin(), queue.begin() + std::ptrdiff_t(n));
            queue.erase(queue.begin(), queue.begin() + std::ptrdiff_t(n));
            forwarding = n > 0;
        }
        if (chunk.empty()) {
            progress.notify();
            co_await arrived.wait();
            if (!sink)
                co_return;
            continue;
        }
        room.notify_all();
        std::span<const std::uint8_t> rest(chunk);
        while (sink && !rest.empty()) {
            rest = rest.subspan(sink->offer(rest));
            if (!rest.empty())
                co_await sink->room();
        }
        if (!sink)
            co_return;
    }
}

ThreadFeed::ThreadFeed(asio::io_context& executor, ByteSink& sink, std::size_t capacity)
    : state_(std::make_shared<State>(executor, sink, capacity)) {
    asio::co_spawn(executor, state_->forward_loop(state_), asio::detached);
}

ThreadFeed::~ThreadFeed() {
    close();
    state_->sink = nullptr;
    state_->arrived.signal();
}

bool ThreadFeed::write(std::span<const std::uint8_t> bytes) {
    State& s = *state_;
    std::unique_lock lock(s.mutex);
    while (!bytes.empty()) {
        s.room.wait(lock, [&] { return s.closed || s.queue.size() < s.capacity; });
        if (s.closed)
            return false;
        bool was_empty = s.queue.empty();
        std::size_t n = std::min(bytes.size(), s.capacity - s.queue.size());
        s.queue.insert(s.queue.end(), bytes.begin(), bytes.begin() + std::ptrdiff_t(n));
        bytes = bytes.subspan(n);
        // The forwarder empties the queue before it waits again: only the first byte of a
        // batch needs to wake it.
        if (was_empty)
            s.arrived.signal();
    }
    return true;
}

void ThreadFeed::close() {
    std::lock_guard lock(state_->mutex);
    state_->closed = true;
    state_->room.notify_all();
}

asio::awaitable<void> ThreadFeed::flushed() {
    std::shared_ptr<State> s = state_;
    for (;;) {
        {
            std::lock_guard lock(s->mutex);
            if (s->queue.empty() && !s->forwarding)
                co_return;
        }
        co_await s->progress.wait();
    }
}

} // namespace ktstr
