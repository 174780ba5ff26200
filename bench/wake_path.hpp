#pragma once

namespace ktstr {

// The event loop's wake path: eventfd A (an ioeventfd's stand-in) -> the loop that serves it
// -> eventfd B (an irqfd's stand-in) -> a waiter; the loop's CPU per event and the round
// trip, for a thread blocked in read(A) (the floor), ktstr's executor with its EventFd and an
// InterruptLine, and a hand-rolled liburing loop; loop and driver on one CPU, then on two.
int bench_wake_path(unsigned events, unsigned rounds);

} // namespace ktstr
