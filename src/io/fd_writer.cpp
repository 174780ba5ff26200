#include "ktstr/io/fd_writer.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/io/wakeup.hpp"

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace ktstr {

struct FdWriter::State {
    State(asio::io_context& executor, int fd, std::size_t capacity)
        : descriptor(executor), ring(capacity), data(executor), progress(executor) {
        int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (copy < 0)
            throw_errno("cannot duplicate descriptor " + std::to_string(fd));
        descriptor.assign(copy);
        // A file on disk never keeps a writer waiting for a reader, and io_uring writes at
        // "the current position" lose the position between writes on some filesystems
        // (seen on 9p): files are written directly, everything else through the ring.
        struct stat status {};
        direct =
            ::fstat(copy, &status) == 0 && (S_ISREG(status.st_mode) || S_ISBLK(status.st_mode));
    }
    asio::posix::stream_descriptor descriptor;
    std::function<void(const std::string&)> on_failure;
    std::vector<std::uint8_t> ring;
    std::size_t head = 0, size = 0;
    bool failed = false, closed = false;
    bool direct = false; // write(2) instead of the ring
    Wakeup data, progress;

    // `keep` holds the state for as long as the loop runs.
    asio::awaitable<void> write_loop(std::shared_ptr<State> keep);
};

asio::awaitable<void> FdWriter::State::write_loop(std::shared_ptr<State> /*keep*/) {
    for (;;) {
        while (size == 0 && !closed)
            co_await data.wait();
        if (closed)
            co_return;
        std::size_t chunk = std::min(size, ring.size() - head);
        std::error_code ec;
        std::size_t n = 0;
        if (direct) {
            ssize_t written;
            do {
                written = ::write(descriptor.native_handle(), ring.data() + head, chunk);
            } while (written < 0 && errno == EINTR);
            if (written < 0)
                ec = std::error_code(errno, std::system_category());
            else
                n = std::size_t(written);
        } else {
            n = co_await descriptor.async_write_some(asio::buffer(ring.data() + head, chunk),
                                                     asio::redirect_error(asio::use_awaitable, ec));
        }
        if (closed)
            co_return;
        if (ec) {
            failed = true;
            size = 0;
            if (on_failure)
                on_failure(ec.message());
        } else {
            head = (head + n) % ring.size();
            size -= n;
        }
        progress.notify();
    }
}

FdWriter::FdWriter(asio::io_context& executor, int fd,
                   std::function<void(const std::string&)> on_failure, std::size_t capacity)
    : state_(std::make_shared<State>(executor, fd, capacity)) {
    state_->on_failure = std::move(on_failure);
    asio::co_spawn(executor, state_->write_loop(state_), asio::detached);
}

FdWriter::~FdWriter() {
    state_->closed = true;
    state_->on_failure = nullptr;
    std::error_code ignored;
    state_->descriptor.close(ignored);
    state_->data.notify();
}

std::size_t FdWriter::offer(std::span<const std::uint8_t> bytes) {
    State& s = *state_;
    if (s.failed)
        return bytes.size(); // nobody reads any more: drop, as a closed pipe would
    std::size_t capacity = s.ring.size();
    std::size_t n = std::min(bytes.size(), capacity - s.size);
    std::size_t tail = (s.head + s.size) % capacity;
    std::size_t first = std::min(n, capacity - tail);
    std::memcpy(s.ring.data() + tail, bytes.data(), first);
    std::memcpy(s.ring.data(), bytes.data() + first, n - first);
    s.size += n;
    if (n > 0)
        s.data.notify();
    return n;
}

asio::awaitable<void> FdWriter::room() {
    std::shared_ptr<State> s = state_;
    while (!s->failed && !s->closed && s->size == s->ring.size())
        co_await s->progress.wait();
}

asio::awaitable<void> FdWriter::flushed() {
    std::shared_ptr<State> s = state_;
    while (!s->failed && !s->closed && s->size > 0)
        co_await s->progress.wait();
}

std::size_t FdWriter::buffered() const { return state_->size; }

} // namespace ktstr
