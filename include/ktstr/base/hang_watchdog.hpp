#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace ktstr {

// The last line of defence for a promptness promise: if this object still exists `limit`
// after it was made, something that should have ended by then (every stop is bounded) has
// hung. It then prints what each of the process's threads is doing (state, kernel wait
// channel, system call, kernel stack) so the hang can be understood, and ends the process
// with `status`. Destroying it in time disarms it.
class HangWatchdog {
  public:
    HangWatchdog(std::chrono::milliseconds limit, std::string what, int status);
    HangWatchdog(const HangWatchdog&) = delete;
    HangWatchdog& operator=(const HangWatchdog&) = delete;
    ~HangWatchdog();

  private:
    std::mutex mutex_;
    std::condition_variable disarmed_;
    bool done_ = false;
    std::thread thread_;
};

// One line per thread of this process: tid, name, state, wait channel, system call, and the
// top of its kernel stack where the kernel lets us read it.
std::string describe_threads();

} // namespace ktstr
