#include "ktstr/base/fd.hpp"

#include <cstdint>
#include <unistd.h>

namespace ktstr {

void UniqueFd::reset(int fd) {
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = fd;
}

void signal_eventfd(int fd) {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
}

} // namespace ktstr
