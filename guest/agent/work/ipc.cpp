// Work types that wake each other: pairs, fan-outs, chains, locks, queues. Their state is
// in the group's shared area; a worker's partner is found by its index.
#include "sync.hpp"

#include <climits>
#include <csignal>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

namespace ktstr::agent {
namespace {

constexpr std::uint64_t kChunk = 20'000;
constexpr int kMaxGroup = 1024;

void sleep_us(WorkerContext& ctx, std::uint64_t us) {
    ctx.will_block();
    timespec delay{time_t(us / 1'000'000), long(us % 1'000'000) * 1000};
    ::nanosleep(&delay, nullptr);
}

// Without a partner (an odd worker out), a worker still does something that wakes up.
void alone(WorkerContext& ctx) {
    while (!ctx.stopping()) {
        sleep_us(ctx, 1000);
        ctx.unit();
    }
}

struct PairArea {
    Handoff to[kMaxGroup]; // to[i]: the hand-over that worker i waits for
};

void futex_pingpong(WorkerContext& ctx) {
    int me = ctx.spec().index, partner = me ^ 1;
    if (partner >= ctx.spec().group_size || me >= kMaxGroup)
        return alone(ctx);
    auto& area = *static_cast<PairArea*>(ctx.group_area());
    std::uint32_t seen = 0;
    if (me % 2 == 0)
        area.to[partner].signal();
    while (!ctx.stopping()) {
        if (!area.to[me].wait(ctx, seen))
            break;
        ctx.unit();
        area.to[partner].signal();
    }
}

// A message over FIFOs between the two workers of a pair; each message is the sender's
// time stamp.
struct FifoPair {
    int in = -1, out = -1;
    FifoPair(const WorkerContext& ctx, int me, int partner) {
        auto path = [&](int from, int to) {
            return "/tmp/ktstr-fifo-" + ctx.spec().group + "-" + std::to_string(from) + "-" +
                   std::to_string(to);
        };
        for (auto name : {path(me, partner), path(partner, me)})
            ::mkfifo(name.c_str(), 0600);
        // Read-write opens never block waiting for the other end.
        in = ::open(path(partner, me).c_str(), O_RDWR | O_CLOEXEC);
        out = ::open(path(me, partner).c_str(), O_RDWR | O_CLOEXEC);
    }
    ~FifoPair() {
        ::close(in);
        ::close(out);
    }
    void send() {
        std::uint64_t stamp = WorkerContext::now_ns();
        [[maybe_unused]] ssize_t n = ::write(out, &stamp, sizeof stamp);
    }
    bool receive(WorkerContext& ctx) {
        std::uint64_t stamp;
        ctx.will_block();
        if (::read(in, &stamp, sizeof stamp) != sizeof stamp)
            return false; // interrupted: the agent is stopping us
        ctx.wake_latency(WorkerContext::now_ns() - stamp);
        return true;
    }
};

void pingpong_over_fifos(WorkerContext& ctx, std::size_t cache_kb) {
    int me = ctx.spec().index, partner = me ^ 1;
    if (partner >= ctx.spec().group_size)
        return alone(ctx);
    FifoPair pair(ctx, me, partner);
    std::vector<char> cache(cache_kb * 1024);
    std::size_t at = 0;
    if (me % 2 == 0)
        pair.send();
    while (!ctx.stopping() && pair.receive(ctx)) {
        for (std::size_t n = 0; n < cache.size() / 64; ++n) {
            cache[at] = char(cache[at] + 1);
            at = (at + 64) % cache.size();
        }
        ctx.unit();
        pair.send();
    }
}

void pipe_pingpong(WorkerContext& ctx) { pingpong_over_fifos(ctx, 0); }
void cache_pipe(WorkerContext& ctx) {
    pingpong_over_fifos(ctx, ctx.param<std::size_t>("size_kb", 1024));
}

struct FanoutArea {
    Handoff wake;
    std::atomic<std::uint32_t> done{0};
};

// Worker 0 wakes all the others every period; with `compute`, each then works and the
// waker waits until all are done.
void fanout(WorkerContext& ctx, std::uint64_t compute) {
    auto& area = *static_cast<FanoutArea*>(ctx.group_area());
    auto period = ctx.param<std::uint64_t>("period_us", 2000);
    int others = ctx.spec().group_size - 1;
    if (ctx.spec().index == 0) {
        while (!ctx.stopping()) {
            area.done.store(0);
            area.wake.signal(INT_MAX);
            ctx.unit();
            if (compute) {
                for (std::uint32_t d;
                     !ctx.stopping() && (d = area.done.load()) < std::uint32_t(others);) {
                    ctx.will_block();
                    futex_wait(area.done, d);
                }
            }
            sleep_us(ctx, period);
        }
        return;
    }
    std::uint32_t seen = 0;
    while (!ctx.stopping() && area.wake.wait(ctx, seen)) {
        if (compute)
            ctx.burn(compute);
        ctx.unit();
        area.done.fetch_add(1);
        futex_wake(area.done);
    }
}

void futex_fanout(WorkerContext& ctx) { fanout(ctx, 0); }
void fanout_compute(WorkerContext& ctx) {
    fanout(ctx, ctx.param<std::uint64_t>("iterations", 4 * kChunk));
}

void thundering_herd(WorkerContext& ctx) {
    struct Area {
        Handoff wake;
        std::atomic<std::uint32_t> claimed{0};
    };
    auto& area = *static_cast<Area*>(ctx.group_area());
    auto period = ctx.param<std::uint64_t>("period_us", 5000);
    if (ctx.spec().index == 0) {
        while (!ctx.stopping()) {
            area.claimed.store(0);
            area.wake.signal(INT_MAX);
            ctx.unit();
            sleep_us(ctx, period);
        }
        return;
    }
    std::uint32_t seen = 0;
    while (!ctx.stopping() && area.wake.wait(ctx, seen)) {
        std::uint32_t none = 0;
        if (area.claimed.compare_exchange_strong(none, 1)) // one item for the whole herd
            ctx.burn(kChunk);
        ctx.unit();
    }
}

void wake_chain(WorkerContext& ctx) {
    auto& area = *static_cast<PairArea*>(ctx.group_area());
    int me = ctx.spec().index, size = std::min(ctx.spec().group_size, kMaxGroup);
    if (size < 2 || me >= size)
        return alone(ctx);
    int next = (me + 1) % size;
    std::uint32_t seen = 0;
    if (me == 0)
        area.to[next].signal();
    while (!ctx.stopping() && area.to[me].wait(ctx, seen)) {
        ctx.burn(kChunk / 4);
        ctx.unit();
        area.to[next].signal();
    }
}

void mutex_contention(WorkerContext& ctx) {
    auto& mutex = *static_cast<FutexMutex*>(ctx.group_area());
    auto critical = ctx.param<std::uint64_t>("iterations", kChunk);
    while (!ctx.stopping()) {
        if (!mutex.lock(ctx, true))
            break;
        ctx.burn(critical);
        mutex.unlock();
        ctx.unit();
        ctx.burn(critical / 2);
    }
}

void priority_inversion(WorkerContext& ctx) {
    auto& mutex = *static_cast<FutexMutex*>(ctx.group_area());
    int role = ctx.spec().index;
    if (role == 0) { // low priority, holds the lock long
        ::setpriority(PRIO_PROCESS, 0, 19);
        while (!ctx.stopping() && mutex.lock(ctx, false)) {
            ctx.burn(10 * kChunk);
            mutex.unlock();
            ctx.unit();
            sleep_us(ctx, 500);
        }
    } else if (role == 1) { // high priority, wants the lock now and then
        ::setpriority(PRIO_PROCESS, 0, -10);
        while (!ctx.stopping() && mutex.lock(ctx, true)) {
            mutex.unlock();
            ctx.unit();
            sleep_us(ctx, 2000);
        }
    } else { // the middle, keeping CPUs busy
        while (!ctx.stopping()) {
            ctx.burn(kChunk);
            ctx.unit();
        }
    }
}

void producer_consumer(WorkerContext& ctx) {
    constexpr std::size_t kSlots = 1024;
    struct Area {
        FutexMutex lock;
        std::atomic<std::uint32_t> items{0}; // futex word: changes on every push
        std::uint64_t head = 0, tail = 0;
        std::uint64_t stamp[kSlots];
    };
    auto& area = *static_cast<Area*>(ctx.group_area());
    bool producer = ctx.spec().index < ctx.param<int>("producers", ctx.spec().group_size / 2);
    while (!ctx.stopping()) {
        if (producer) {
            ctx.burn(kChunk / 4);
            if (!area.lock.lock(ctx, false))
                break;
            bool room = area.head - area.tail < kSlots;
            if (room)
                area.stamp[area.head++ % kSlots] = WorkerContext::now_ns();
            area.lock.unlock();
            if (room) {
                area.items.fetch_add(1);
                futex_wake(area.items);
                ctx.unit();
            } else {
                sleep_us(ctx, 100);
            }
            continue;
        }
        std::uint32_t items = area.items.load();
        if (!area.lock.lock(ctx, false))
            break;
        std::uint64_t stamp = 0;
        if (area.tail < area.head)
            stamp = area.stamp[area.tail++ % kSlots];
        area.lock.unlock();
        if (stamp) {
            ctx.wake_latency(WorkerContext::now_ns() - stamp);
            ctx.burn(kChunk / 2);
            ctx.unit();
        } else {
            ctx.will_block();
            futex_wait(area.items, items);
        }
    }
}

// schbench's model: each message worker wakes its `workers`, each of which "thinks" and
// replies; the message worker waits for all replies before the next round. The wake-up
// latency of the workers is what schbench reports.
void schbench(WorkerContext& ctx) {
    struct Message {
        Handoff to[64];
        std::atomic<std::uint32_t> replies{0};
    };
    int per_message = std::clamp(ctx.param<int>("workers", 4), 1, 63);
    int team = ctx.spec().index / (per_message + 1), role = ctx.spec().index % (per_message + 1);
    auto* messages = static_cast<Message*>(ctx.group_area());
    if (std::size_t(team + 1) * sizeof(Message) > kGroupAreaSize)
        return alone(ctx);
    Message& message = messages[team];
    int team_size = std::min(per_message, ctx.spec().group_size - team * (per_message + 1) - 1);
    auto think = ctx.param<std::uint64_t>("iterations", 2 * kChunk);
    if (role == 0) {
        while (!ctx.stopping()) {
            message.replies.store(0);
            for (int w = 1; w <= team_size; ++w)
                message.to[w].signal();
            for (std::uint32_t r;
                 !ctx.stopping() && (r = message.replies.load()) < std::uint32_t(team_size);) {
                ctx.will_block();
                futex_wait(message.replies, r);
            }
            ctx.unit();
        }
        return;
    }
    std::uint32_t seen = 0;
    while (!ctx.stopping() && message.to[role].wait(ctx, seen)) {
        ctx.burn(think);
        ctx.unit();
        message.replies.fetch_add(1);
        futex_wake(message.replies);
    }
}

void signal_pingpong(WorkerContext& ctx) {
    struct Area {
        std::atomic<int> pid[kMaxGroup];
        std::atomic<std::uint64_t> stamp[kMaxGroup];
    };
    auto& area = *static_cast<Area*>(ctx.group_area());
    int me = ctx.spec().index, partner = me ^ 1;
    if (partner >= ctx.spec().group_size || me >= kMaxGroup)
        return alone(ctx);
    sigset_t wanted;
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGUSR2);
    ::sigprocmask(SIG_BLOCK, &wanted, nullptr);
    area.pid[me].store(::getpid());
    auto send = [&] {
        for (int p; !ctx.stopping() && (p = area.pid[partner].load()) == 0;)
            sleep_us(ctx, 1000);
        area.stamp[partner].store(WorkerContext::now_ns());
        ::kill(area.pid[partner].load(), SIGUSR2);
    };
    if (me % 2 == 0)
        send();
    timespec limit{0, 100'000'000};
    while (!ctx.stopping()) {
        ctx.will_block();
        if (::sigtimedwait(&wanted, nullptr, &limit) != SIGUSR2)
            continue;
        ctx.wake_latency(WorkerContext::now_ns() - area.stamp[me].load());
        ctx.unit();
        send();
    }
}

} // namespace

extern const WorkType kIpcWorkTypes[] = {
    {"pipe_pingpong", pipe_pingpong},
    {"futex_pingpong", futex_pingpong},
    {"futex_fanout", futex_fanout},
    {"fanout_compute", fanout_compute},
    {"cache_pipe", cache_pipe},
    {"thundering_herd", thundering_herd},
    {"wake_chain", wake_chain},
    {"mutex_contention", mutex_contention},
    {"priority_inversion", priority_inversion},
    {"producer_consumer", producer_consumer},
    {"schbench", schbench},
    {"signal_pingpong", signal_pingpong},
    {nullptr, nullptr},
};

} // namespace ktstr::agent
