#pragma once

namespace ktstr::guest {

// With the host's leave (guest_protocol::kHangReportFile), starts a process that sleeps,
// at real-time priority, until the moment the host gave on the guest's clock
// (CLOCK_BOOTTIME, which starts with the kernel, near the start of the host's timeout),
// and then describes every process but the init and kernel threads on the console: state,
// wait channel, kernel stack. The host is told how far off that moment is.
void arm_hang_report();

} // namespace ktstr::guest
