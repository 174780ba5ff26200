#include "ktstr/base/fd.hpp"

#include <unistd.h>

namespace ktstr {

void UniqueFd::reset(int fd) {
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = fd;
}

} // namespace ktstr
