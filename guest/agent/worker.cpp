#include "worker.hpp"

#include <fstream>
#include <sched.h>
#include <sstream>
#include <time.h>
#include <unistd.h>

namespace ktstr::agent {
namespace {

// How often a ticking worker reads its CPU time (a system call), and the shortest gap that
// is split into the kernel's off-CPU time and the time it counted as running.
constexpr std::uint64_t kCpuSampleEvery = 10'000'000; // ns

std::uint64_t clock_ns(clockid_t clock) {
    timespec now{};
    ::clock_gettime(clock, &now);
    return std::uint64_t(now.tv_sec) * 1'000'000'000 + std::uint64_t(now.tv_nsec);
}

// /proc/self/schedstat: time on CPU, time waiting on a runqueue (ns), and timeslices run.
std::array<std::uint64_t, 3> schedstat() {
    std::ifstream in("/proc/self/schedstat");
    std::array<std::uint64_t, 3> values{};
    in >> values[0] >> values[1] >> values[2];
    return values;
}

// The kernel's own count of this task's migrations (CONFIG_SCHEDSTATS).
long long kernel_migrations() {
    std::ifstream in("/proc/self/sched");
    for (std::string line; std::getline(in, line);)
        if (line.starts_with("se.nr_migrations")) {
            std::istringstream fields(line.substr(line.find(':') + 1));
            long long value = -1;
            fields >> value;
            return value;
        }
    return -1;
}

} // namespace

WorkerContext::WorkerContext(const WorkerSpec& spec, SharedState& shared, void* group_area)
    : spec_(spec), shared_(shared), group_area_(group_area) {
    started_ns_ = last_tick_ns_ = sample_wall_ns_ = now_ns();
    cpu_start_ns_ = sample_cpu_ns_ = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    auto stat = schedstat();
    run_delay_start_ = stat[1];
    run_count_start_ = stat[2];
}

std::uint64_t WorkerContext::now_ns() { return clock_ns(CLOCK_MONOTONIC); }

bool WorkerContext::stopping() const {
    return shared_.stop[spec_.worker_id].load(std::memory_order_relaxed) != 0;
}

void WorkerContext::tick() {
    std::uint64_t now = now_ns();
    std::uint32_t epoch_before = shared_.epoch.load(std::memory_order_acquire);
    int cpu = ::sched_getcpu();
    std::uint64_t gap = now - last_tick_ns_;
    bool sampled = false;
    if (!blocking_ && gap > std::min(max_gap_ns_, max_stall_ns_) && gap > kCpuSampleEvery) {
        // The CPU time since the sample, less what the ticks up to the gap's start can
        // account for, was spent inside the gap: the kernel counted the worker as running.
        std::uint64_t cpu_now = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        std::uint64_t before = last_tick_ns_ - sample_wall_ns_;
        std::uint64_t spent = cpu_now - sample_cpu_ns_;
        std::uint64_t ran = std::min(gap, spent > before ? spent - before : 0);
        if (gap - ran > max_gap_ns_) {
            max_gap_ns_ = gap - ran;
            max_gap_at_ns_ = now;
            max_gap_cpu_ = cpu;
        }
        max_stall_ns_ = std::max(max_stall_ns_, ran);
        sample_wall_ns_ = now;
        sample_cpu_ns_ = cpu_now;
        sampled = true;
    } else if (!blocking_ && gap > max_gap_ns_) {
        // Shorter than a sample period: too short to tell apart, all of it counts.
        max_gap_ns_ = gap;
        max_gap_at_ns_ = now;
        max_gap_cpu_ = cpu;
    }
    if (!sampled && now - sample_wall_ns_ > kCpuSampleEvery) {
        sample_wall_ns_ = now;
        sample_cpu_ns_ = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    }
    blocking_ = false;
    last_tick_ns_ = now;
    if (cpu >= 0 && std::size_t(cpu) < kMaxCpus) {
        if (last_cpu_ >= 0 && cpu != last_cpu_)
            ++migrations_;
        last_cpu_ = cpu;
        std::uint32_t epoch_after = shared_.epoch.load(std::memory_order_acquire);
        cpus_[epoch_of_sighting(epoch_before, epoch_after)].set(std::size_t(cpu));
    }
}

void WorkerContext::unit(std::uint64_t count) {
    units_ += count;
    tick();
}

void WorkerContext::spin_for(std::uint64_t ns) {
    std::uint64_t until = now_ns() + ns;
    while (!stopping()) {
        tick();
        if (last_tick_ns_ >= until)
            return;
        burn(200);
    }
}

void WorkerContext::burn(std::uint64_t iterations) {
    constexpr std::uint64_t kTickEvery = 1000;
    volatile std::uint64_t sink = 0;
    for (std::uint64_t i = 0; i < iterations; ++i) {
        sink = sink + i;
        if (i % kTickEvery == 0)
            tick();
    }
}

nlohmann::json WorkerContext::report(const std::string& ended) const {
    std::uint64_t wall = now_ns() - started_ns_;
    std::uint64_t cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu_start_ns_;
    auto stat = schedstat();
    nlohmann::json cpus = nlohmann::json::object();
    for (const auto& [epoch, set] : cpus_) {
        nlohmann::json list = nlohmann::json::array();
        for (std::size_t c = 0; c < kMaxCpus; ++c)
            if (set.test(c))
                list.push_back(c);
        cpus[std::to_string(epoch)] = list;
    }
    nlohmann::json buckets = nlohmann::json::object();
    for (const auto& [bucket, count] : wake_.nonzero())
        buckets[std::to_string(bucket)] = count;
    return {
        {"type", "worker"},
        {"group", spec_.group},
        {"index", spec_.index},
        {"pid", ::getpid()},
        {"cgroup", spec_.cgroup},
        {"work", spec_.work},
        {"ended", ended},
        {"started_ms", double(started_ns_) / 1e6},
        {"units", units_},
        {"wall_ns", wall},
        {"cpu_ns", cpu},
        {"off_cpu_ns", wall > cpu ? wall - cpu : 0},
        {"migrations", migrations_},
        {"kernel_migrations", kernel_migrations()},
        {"cpus_by_epoch", cpus},
        {"max_gap_ns", max_gap_ns_},
        {"max_gap_cpu", max_gap_cpu_},
        {"max_stall_ns", max_stall_ns_},
        {"max_gap_at_ms", double(max_gap_at_ns_) / 1e6},
        {"wake", {{"count", wake_.total()}, {"max_ns", wake_.max()}, {"buckets", buckets}}},
        {"schedstat",
         {{"run_delay_ns", stat[1] - run_delay_start_}, {"run_count", stat[2] - run_count_start_}}},
    };
}

} // namespace ktstr::agent
