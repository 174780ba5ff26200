// Work types that mostly compute, sleep or change their own scheduling attributes.
#include "../worker.hpp"

#include <cerrno>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <time.h>
#include <vector>

namespace ktstr::agent {
namespace {

constexpr std::uint64_t kChunk = 20'000; // iterations: tens of microseconds

void sleep_ns(WorkerContext& ctx, std::uint64_t ns) {
    ctx.will_block();
    timespec delay{time_t(ns / 1'000'000'000), long(ns % 1'000'000'000)};
    ::nanosleep(&delay, nullptr);
}

// Sleeps `ns` and records how much longer than asked it took to run again.
void timed_sleep(WorkerContext& ctx, std::uint64_t ns) {
    std::uint64_t due = WorkerContext::now_ns() + ns;
    sleep_ns(ctx, ns);
    std::uint64_t now = WorkerContext::now_ns();
    if (!ctx.stopping())
        ctx.wake_latency(now > due ? now - due : 0);
}

void spin(WorkerContext& ctx) {
    auto chunk = ctx.param<std::uint64_t>("iterations", kChunk);
    while (!ctx.stopping()) {
        ctx.burn(chunk);
        ctx.unit();
    }
}

void yield_heavy(WorkerContext& ctx) {
    auto chunk = ctx.param<std::uint64_t>("iterations", kChunk / 10);
    while (!ctx.stopping()) {
        ctx.burn(chunk);
        ::sched_yield();
        ctx.unit();
    }
}

void spin_yield(WorkerContext& ctx) {
    auto every = ctx.param<std::uint64_t>("yield_every", 8);
    for (std::uint64_t n = 1; !ctx.stopping(); ++n) {
        ctx.burn(kChunk);
        ctx.unit();
        if (n % every == 0)
            ::sched_yield();
    }
}

void bursty(WorkerContext& ctx) {
    auto burst = ctx.param<std::uint64_t>("burst_ms", 20) * 1'000'000;
    auto pause = ctx.param<std::uint64_t>("sleep_ms", 20) * 1'000'000;
    while (!ctx.stopping()) {
        std::uint64_t until = WorkerContext::now_ns() + burst;
        while (!ctx.stopping() && WorkerContext::now_ns() < until) {
            ctx.burn(kChunk);
            ctx.unit();
        }
        timed_sleep(ctx, pause);
    }
}

// A buffer walked with a cache line's stride, larger than the caches it is meant to push.
struct Buffer {
    explicit Buffer(std::size_t kb) : bytes(kb * 1024) {}
    std::vector<char> bytes;
    std::size_t at = 0;
    // Touches 64 KiB of it.
    void walk(WorkerContext& ctx) {
        for (std::size_t n = 0; n < 1024; ++n) {
            bytes[at] = char(bytes[at] + 1);
            at = (at + 64) % bytes.size();
            if (n % 256 == 0)
                ctx.tick();
        }
    }
};

void cache_pressure(WorkerContext& ctx) {
    Buffer buffer(ctx.param<std::size_t>("size_kb", 4096));
    while (!ctx.stopping()) {
        buffer.walk(ctx);
        ctx.unit();
    }
}

void cache_yield(WorkerContext& ctx) {
    Buffer buffer(ctx.param<std::size_t>("size_kb", 4096));
    while (!ctx.stopping()) {
        buffer.walk(ctx);
        ctx.unit();
        ::sched_yield();
    }
}

void sequence(WorkerContext& ctx) {
    nlohmann::json phases = ctx.params().value(
        "phases", nlohmann::json::parse(R"([{"kind": "spin", "ms": 30}, {"kind": "sleep", "ms": 10},
                                            {"kind": "yield", "count": 50}])"));
    while (!ctx.stopping()) {
        for (const auto& phase : phases) {
            std::string kind = phase.value("kind", "spin");
            if (kind == "spin") {
                std::uint64_t until =
                    WorkerContext::now_ns() + phase.value("ms", 10) * 1'000'000ull;
                while (!ctx.stopping() && WorkerContext::now_ns() < until) {
                    ctx.burn(kChunk);
                    ctx.unit();
                }
            } else if (kind == "sleep") {
                timed_sleep(ctx, phase.value("ms", 10) * 1'000'000ull);
            } else if (kind == "yield") {
                for (int i = 0; i < phase.value("count", 10) && !ctx.stopping(); ++i) {
                    ::sched_yield();
                    ctx.unit();
                }
            }
        }
    }
}

void nice_sweep(WorkerContext& ctx) {
    std::vector<int> levels = ctx.params().value("levels", std::vector<int>{0, 5, 10, 19, 10, 5});
    auto every = ctx.param<std::uint64_t>("every", 50);
    for (std::uint64_t n = 0; !ctx.stopping(); ++n) {
        if (n % every == 0)
            ::setpriority(PRIO_PROCESS, 0, levels[(n / every) % levels.size()]);
        ctx.burn(kChunk);
        ctx.unit();
    }
}

// A random non-empty subset of `cpus`.
cpu_set_t random_subset(const std::vector<int>& cpus, unsigned& seed) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int cpu : cpus)
        if (::rand_r(&seed) % 2)
            CPU_SET(cpu, &set);
    if (CPU_COUNT(&set) == 0 && !cpus.empty())
        CPU_SET(cpus[std::size_t(::rand_r(&seed)) % cpus.size()], &set);
    return set;
}

void affinity_churn(WorkerContext& ctx) {
    auto every = ctx.param<std::uint64_t>("every", 20);
    unsigned seed = unsigned(ctx.spec().worker_id + 1);
    for (std::uint64_t n = 0; !ctx.stopping(); ++n) {
        if (n % every == 0) {
            cpu_set_t set = random_subset(ctx.spec().cpus_in_cgroup, seed);
            ::sched_setaffinity(0, sizeof set, &set);
        }
        ctx.burn(kChunk);
        ctx.unit();
    }
}

void policy_churn(WorkerContext& ctx) {
    const int policies[] = {SCHED_OTHER, SCHED_BATCH, SCHED_IDLE};
    auto every = ctx.param<std::uint64_t>("every", 50);
    for (std::uint64_t n = 0; !ctx.stopping(); ++n) {
        if (n % every == 0) {
            sched_param param{};
            ::sched_setscheduler(0, policies[(n / every) % 3], &param);
        }
        ctx.burn(kChunk);
        ctx.unit();
    }
}

void timer_latency(WorkerContext& ctx) {
    auto period = ctx.param<std::uint64_t>("period_us", 1000) * 1000;
    while (!ctx.stopping()) {
        timed_sleep(ctx, period);
        ctx.unit();
    }
}

void smt_sibling_spin(WorkerContext& ctx) {
    // pairs: [[a, b], ...] of SMT siblings (the host resolves them from the topology).
    auto pairs = ctx.params().value("pairs", std::vector<std::vector<int>>{});
    if (!pairs.empty()) {
        const auto& pair = pairs[std::size_t(ctx.spec().index / 2) % pairs.size()];
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(pair[std::size_t(ctx.spec().index % 2) % pair.size()], &set);
        ::sched_setaffinity(0, sizeof set, &set);
    }
    spin(ctx);
}

void idle_churn(WorkerContext& ctx) {
    auto pause = ctx.param<std::uint64_t>("sleep_us", 200) * 1000;
    while (!ctx.stopping()) {
        ctx.burn(kChunk / 20);
        timed_sleep(ctx, pause);
        ctx.unit();
    }
}

void rt_starvation(WorkerContext& ctx) {
    // The first `hogs` workers spin at SCHED_FIFO; RT throttling leaves the rest a share.
    if (ctx.spec().index < ctx.param<int>("hogs", 1)) {
        sched_param param{};
        param.sched_priority = ctx.param<int>("priority", 10);
        ::sched_setscheduler(0, SCHED_FIFO, &param);
    }
    spin(ctx);
}

} // namespace

extern const WorkType kCpuWorkTypes[] = {
    {"spin", spin},
    {"yield_heavy", yield_heavy},
    {"spin_yield", spin_yield},
    {"bursty", bursty},
    {"cache_pressure", cache_pressure},
    {"cache_yield", cache_yield},
    {"sequence", sequence},
    {"nice_sweep", nice_sweep},
    {"affinity_churn", affinity_churn},
    {"policy_churn", policy_churn},
    {"timer_latency", timer_latency},
    {"smt_sibling_spin", smt_sibling_spin},
    {"idle_churn", idle_churn},
    {"rt_starvation", rt_starvation},
    {nullptr, nullptr},
};

} // namespace ktstr::agent
