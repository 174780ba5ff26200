#include "ktstr/base/fd.hpp"

#include "ktstr/base/error.hpp"

#include <cstdint>
#include <sys/eventfd.h>
#include <unistd.h>

namespace ktstr {

void UniqueFd::reset(int fd) {
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = fd;
}

UniqueFd make_eventfd() {
    UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd)
        throw_errno("eventfd");
    return fd;
}

void signal_eventfd(int fd) {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
}

} // namespace ktstr
