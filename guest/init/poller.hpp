#pragma once

// The init's event loop: poll(2) over the descriptors it watches (the command's and the
// scheduler's output, their pidfds, the kernel log), with periodic ticks.

#include <chrono>
#include <functional>
#include <optional>
#include <vector>

namespace ktstr::guest {

using Clock = std::chrono::steady_clock;

class Poller {
  public:
    // `on_ready` runs whenever `fd` is readable or hung up.
    void watch(int fd, std::function<void()> on_ready);
    void forget(int fd);
    // `tick` runs every `period` while the loop runs.
    void every(std::chrono::milliseconds period, std::function<void()> tick);
    // Runs until `done()` holds (checked after every event and tick) or `deadline` passes;
    // returns whether `done()` held.
    bool run(const std::function<bool()>& done, std::optional<Clock::time_point> deadline = {});

  private:
    struct Watch {
        int fd;
        std::function<void()> on_ready;
    };
    struct Tick {
        std::chrono::milliseconds period;
        Clock::time_point next;
        std::function<void()> run;
    };
    std::vector<Watch> watches_;
    std::vector<Tick> ticks_;
};

} // namespace ktstr::guest
