#pragma once

#include <utility>

namespace ktstr {

// Owns one file descriptor and closes it once.
class UniqueFd {
  public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other)
            reset(other.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1);

  private:
    int fd_ = -1;
};

// A new non-blocking, close-on-exec eventfd with a zero counter; throws Error on failure.
UniqueFd make_eventfd();

// Adds one to an eventfd's counter, from any thread. A full counter (EAGAIN) already means
// "signalled", so the write cannot usefully fail.
void signal_eventfd(int fd);

} // namespace ktstr
