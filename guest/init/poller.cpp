#include "poller.hpp"

#include "command.hpp"

#include <algorithm>
#include <cerrno>
#include <poll.h>

namespace ktstr::guest {

void Poller::watch(int fd, std::function<void()> on_ready) {
    watches_.push_back({fd, std::move(on_ready)});
}

void Poller::forget(int fd) {
    std::erase_if(watches_, [fd](const Watch& watch) { return watch.fd == fd; });
}

void Poller::every(std::chrono::milliseconds period, std::function<void()> tick) {
    ticks_.push_back({period, Clock::now() + period, std::move(tick)});
}

bool Poller::run(const std::function<bool()>& done, std::optional<Clock::time_point> deadline) {
    while (!done()) {
        Clock::time_point now = Clock::now();
        if (deadline && now >= *deadline)
            return false;
        std::optional<Clock::time_point> wake = deadline;
        for (const auto& tick : ticks_)
            wake = wake ? std::min(*wake, tick.next) : tick.next;
        int timeout = -1;
        if (wake)
            timeout = int(std::max<std::int64_t>(
                0, std::chrono::ceil<std::chrono::milliseconds>(*wake - now).count()));
        std::vector<pollfd> fds;
        for (const auto& watch : watches_)
            fds.push_back({watch.fd, POLLIN, 0});
        int ready = ::poll(fds.data(), fds.size(), timeout);
        if (ready < 0 && errno != EINTR)
            fail("poll");
        // Handlers may change the watch list: call them through a copy of what was ready.
        std::vector<std::function<void()>> handlers;
        for (std::size_t i = 0; ready > 0 && i < fds.size(); ++i)
            if (fds[i].revents & (POLLIN | POLLHUP | POLLERR))
                handlers.push_back(watches_[i].on_ready);
        for (auto& handler : handlers)
            handler();
        now = Clock::now();
        for (auto& tick : ticks_)
            if (now >= tick.next) {
                tick.next = now + tick.period;
                tick.run();
            }
    }
    return true;
}

} // namespace ktstr::guest
