#include "ktstr/base/kernel_log.hpp"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

namespace ktstr {

std::string kernel_trouble_line(std::string_view log) {
    for (std::string_view marker :
         {"soft lockup", "hard LOCKUP", "self-detected stall", "rcu_preempt detected stall",
          "rcu_sched detected stall", "blocked for more than", "BUG:", "Oops:", "Kernel panic"}) {
        auto at = log.find(marker);
        if (at == std::string_view::npos)
            continue;
        auto begin = log.rfind('\n', at);
        begin = begin == std::string_view::npos ? 0 : begin + 1;
        return std::string(log.substr(begin, log.find('\n', at) - begin));
    }
    return {};
}

KernelLogWatch::KernelLogWatch() : kmsg_(::open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)) {
    if (kmsg_ && ::lseek(kmsg_.get(), 0, SEEK_END) < 0)
        kmsg_.reset();
}

std::string KernelLogWatch::trouble() {
    if (!kmsg_)
        return {};
    // One record per read: "level,sequence,microseconds,flags;message\n" plus continuation
    // lines. EPIPE says records were overwritten before we read them; the next read goes on.
    std::string messages;
    char record[8192];
    for (;;) {
        ssize_t n = ::read(kmsg_.get(), record, sizeof record);
        if (n < 0 && (errno == EPIPE || errno == EINTR))
            continue;
        if (n <= 0)
            break;
        std::string_view text(record, static_cast<std::size_t>(n));
        auto body = text.find(';');
        if (body == std::string_view::npos)
            continue;
        text.remove_prefix(body + 1);
        messages.append(text.substr(0, text.find('\n')));
        messages += '\n';
    }
    return kernel_trouble_line(messages);
}

} // namespace ktstr
