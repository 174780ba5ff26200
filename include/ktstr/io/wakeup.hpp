#pragma once

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

namespace ktstr {

// A wake-up between coroutines on one executor thread: wait() suspends until notify(),
// which wakes every waiter; a notify() with nobody waiting is remembered once. Waiters
// recheck their condition after waking. Not for other threads (use EventFd).
class Wakeup {
  public:
    explicit Wakeup(asio::io_context& executor);
    void notify();
    asio::awaitable<void> wait();

  private:
    asio::steady_timer timer_; // waits "forever"; notify() cancels the wait
    bool pending_ = false;
    int waiters_ = 0;
};

} // namespace ktstr
