#pragma once

// Futexes and time stamps on memory the workers of a group share.

#include "../worker.hpp"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace ktstr::agent {

// Waits while `word` holds `expected`, at most 100 ms (so that a stop is seen even if no
// signal arrives); spurious returns are fine, callers recheck.
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected) {
    timespec limit{0, 100'000'000};
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, &limit,
              nullptr, 0);
}

inline void futex_wake(std::atomic<std::uint32_t>& word, int count = 1) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, count, nullptr,
              nullptr, 0);
}

// A hand-over from one worker to another: the waker stamps the time, bumps the sequence
// and wakes; the woken one knows how long it took to run again.
struct Handoff {
    std::atomic<std::uint32_t> sequence{0};
    std::atomic<std::uint64_t> stamp_ns{0};

    void signal(int wake = 1) {
        stamp_ns.store(WorkerContext::now_ns(), std::memory_order_release);
        sequence.fetch_add(1, std::memory_order_acq_rel);
        futex_wake(sequence, wake);
    }
    // Waits until the sequence moves past `seen`; returns the latency, or 0 when stopping.
    std::uint64_t wait(WorkerContext& ctx, std::uint32_t& seen) {
        for (;;) {
            std::uint32_t now = sequence.load(std::memory_order_acquire);
            if (now != seen) {
                seen = now;
                std::uint64_t latency = WorkerContext::now_ns() - stamp_ns.load();
                ctx.wake_latency(latency);
                return latency;
            }
            if (ctx.stopping())
                return 0;
            ctx.will_block();
            futex_wait(sequence, now);
        }
    }
};

// A futex mutex (0 free, 1 held, 2 held with waiters), with a stamp of the last unlock.
struct FutexMutex {
    std::atomic<std::uint32_t> state{0};
    std::atomic<std::uint64_t> released_ns{0};

    // Returns false when stopping before it got the lock.
    bool lock(WorkerContext& ctx, bool measure) {
        std::uint32_t expected = 0;
        if (state.compare_exchange_strong(expected, 1))
            return true;
        while (state.exchange(2) != 0) {
            if (ctx.stopping())
                return false;
            ctx.will_block();
            futex_wait(state, 2);
        }
        if (measure)
            ctx.wake_latency(WorkerContext::now_ns() - released_ns.load());
        return true;
    }
    void unlock() {
        released_ns.store(WorkerContext::now_ns());
        if (state.exchange(0) == 2)
            futex_wake(state);
    }
};

} // namespace ktstr::agent
