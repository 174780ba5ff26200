#include "ktstr/io/wakeup.hpp"

#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>

namespace ktstr {

// The timer never expires: waits on it end only when notify() cancels them.
Wakeup::Wakeup(asio::io_context& executor) : timer_(executor) {
    timer_.expires_at(asio::steady_timer::time_point::max());
}

void Wakeup::notify() {
    if (waiters_ > 0)
        timer_.cancel();
    else
        pending_ = true;
}

asio::awaitable<void> Wakeup::wait() {
    if (pending_) {
        pending_ = false;
        co_return;
    }
    ++waiters_;
    std::error_code ignored;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    --waiters_;
}

} // namespace ktstr
