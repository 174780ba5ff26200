#pragma once

#include "ktstr/base/fd.hpp"

#include <string>
#include <string_view>

namespace ktstr {

// The first line of a kernel log that says the kernel itself is unwell: a lockup, an RCU
// stall, a task blocked for long, an oops or a panic (they print even with `quiet`); empty if
// there is none.
std::string kernel_trouble_line(std::string_view log);

// What this machine's kernel logs from now on (/dev/kmsg), to tell whether it was unwell while
// a VM ran: a host that stalls stalls its guests' vCPUs, which the guest's scheduler checks
// would otherwise blame on the scheduler. Where the log cannot be read (no permission), it
// tells nothing.
class KernelLogWatch {
  public:
    KernelLogWatch();
    bool readable() const { return static_cast<bool>(kmsg_); }
    // The first trouble line logged since the watch began or the last call; empty if none.
    std::string trouble();

  private:
    UniqueFd kmsg_;
};

} // namespace ktstr
