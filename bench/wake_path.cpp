#include "wake_path.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/fd.hpp"
#include "ktstr/io/event_fd.hpp"
#include "ktstr/vmm/bus.hpp"

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <atomic>
#include <chrono>
#include <fmt/format.h>
#include <functional>
#include <iostream>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <thread>
#include <time.h>
#include <unistd.h>
#include <vector>

namespace ktstr {
namespace {

using Clock = std::chrono::steady_clock;

void pin_to(unsigned cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (::sched_setaffinity(0, sizeof set, &set) != 0)
        throw_errno(fmt::format("sched_setaffinity to CPU {}", cpu));
}

std::uint64_t drain(int fd) {
    std::uint64_t count = 0;
    if (::read(fd, &count, sizeof count) != sizeof count)
        throw_errno("reading an eventfd");
    return count;
}

// The interrupt a device raises, as IrqFd raises it, on an eventfd instead of a VM's GSI.
class EventFdLine : public InterruptLine {
  public:
    explicit EventFdLine(int fd) : fd_(fd) {}
    void trigger() override { signal_eventfd(fd_); }

  private:
    int fd_;
};

// One loop design: `serve` runs on the loop thread until `stop` is set and A is signalled,
// reading A and signalling B for each event; `a` is the eventfd it serves.
struct Loop {
    std::function<int()> make_a; // A, made for this loop (blocking or not, as it needs)
    std::function<void(int a, int b, const std::atomic<bool>& stop)> serve;
};

Loop floor_loop() {
    return {[] { return ::eventfd(0, EFD_CLOEXEC); },
            [](int a, int b, const std::atomic<bool>& stop) {
                while (drain(a), !stop.load())
                    signal_eventfd(b);
            }};
}

// ktstr's executor as the devices use it: a coroutine on the io_context awaiting EventFd (the
// virtio queue notifier) and raising an InterruptLine.
Loop ktstr_executor_loop() {
    return {[] { return make_eventfd().release(); },
            [](int a, int b, const std::atomic<bool>& stop) {
                asio::io_context executor(1);
                EventFd notifier(executor, a);
                EventFdLine irq(b);
                asio::co_spawn(
                    executor,
                    [&]() -> asio::awaitable<void> {
                        while (co_await notifier.wait(), !stop.load())
                            irq.trigger();
                    },
                    asio::detached);
                executor.run();
            }};
}

// The design the issue names as the goal: one ring with single-issuer and deferred task
// running; B's write (B non-blocking, or io-wq takes it) rides in the io_uring_enter that
// re-arms A's read and waits.
Loop liburing_loop() {
    return {[] { return make_eventfd().release(); },
            [](int a, int b, const std::atomic<bool>& stop) {
                io_uring ring;
                io_uring_params params{};
                params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
                if (int err = io_uring_queue_init_params(8, &ring, &params); err < 0)
                    throw_errno("io_uring_queue_init_params", -err);
                std::uint64_t count = 0, one = 1;
                auto arm_read = [&] {
                    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
                    io_uring_prep_read(sqe, a, &count, sizeof count, 0);
                    io_uring_sqe_set_data64(sqe, 1);
                };
                arm_read();
                for (;;) {
                    io_uring_submit_and_wait(&ring, 1);
                    io_uring_cqe* cqe = nullptr;
                    bool read_done = false;
                    while (io_uring_peek_cqe(&ring, &cqe) == 0) {
                        read_done |= io_uring_cqe_get_data64(cqe) == 1;
                        io_uring_cqe_seen(&ring, cqe);
                    }
                    if (!read_done)
                        continue;
                    if (stop.load())
                        break;
                    io_uring_sqe* write = io_uring_get_sqe(&ring);
                    io_uring_prep_write(write, b, &one, sizeof one, 0);
                    io_uring_sqe_set_data64(write, 2);
                    write->flags |= IOSQE_CQE_SKIP_SUCCESS;
                    arm_read();
                }
                io_uring_queue_exit(&ring);
            }};
}

struct Measured {
    double loop_cpu_ns = 0; // summed over the batches
    std::vector<double> round_trips_ns;
    unsigned events = 0;
};

// `events` round trips through `loop`, the loop on `loop_cpu` and this driver on `driver_cpu`.
void run_batch(const Loop& loop, unsigned events, unsigned driver_cpu, unsigned loop_cpu,
               Measured& into) {
    UniqueFd a(loop.make_a()), b(make_eventfd());
    if (!a)
        throw_errno("eventfd");
    std::atomic<bool> stop = false, ready = false;
    std::exception_ptr failure;
    std::thread server([&] {
        try {
            pin_to(loop_cpu);
            ready = true;
            loop.serve(a.get(), b.get(), stop);
        } catch (...) {
            failure = std::current_exception();
        }
    });
    pin_to(driver_cpu);
    while (!ready.load())
        std::this_thread::yield();
    clockid_t loop_clock;
    pthread_getcpuclockid(server.native_handle(), &loop_clock);
    auto cpu_now = [&] {
        timespec t{};
        ::clock_gettime(loop_clock, &t);
        return double(t.tv_sec) * 1e9 + double(t.tv_nsec);
    };
    // A warm-up event: the loop is waiting once B answers it.
    auto round_trip = [&] {
        signal_eventfd(a.get());
        pollfd wait{b.get(), POLLIN, 0};
        while (::poll(&wait, 1, 10'000) != 1)
            if (failure || errno != EINTR)
                throw Error("the loop stopped answering");
        drain(b.get());
    };
    round_trip();
    double cpu_before = cpu_now();
    for (unsigned i = 0; i < events; ++i) {
        auto start = Clock::now();
        round_trip();
        into.round_trips_ns.push_back(
            std::chrono::duration<double, std::nano>(Clock::now() - start).count());
    }
    into.loop_cpu_ns += cpu_now() - cpu_before;
    into.events += events;
    stop = true;
    signal_eventfd(a.get());
    server.join();
    if (failure)
        std::rethrow_exception(failure);
}

double quantile(std::vector<double> values, double q) {
    std::sort(values.begin(), values.end());
    return values[std::size_t(q * double(values.size() - 1))];
}

} // namespace

int bench_wake_path(unsigned events, unsigned rounds) {
    struct Variant {
        const char* name;
        Loop loop;
    };
    std::vector<Variant> variants = {{"floor: thread blocked in read(A)", floor_loop()},
                                     {"ktstr executor (Asio io_uring)", ktstr_executor_loop()},
                                     {"liburing loop, B in the waiting enter", liburing_loop()}};
    unsigned cpus = std::thread::hardware_concurrency();
    struct Placement {
        const char* name;
        unsigned driver, loop;
    };
    std::vector<Placement> placements = {{"same CPU", 0, 0}};
    if (cpus > 1)
        placements.push_back({"split CPUs", 0, 1});
    std::cout << fmt::format("wake path: {} events per variant and placement, interleaved in {} "
                             "rounds\n",
                             events, rounds);
    for (const auto& placement : placements) {
        std::vector<Measured> results(variants.size());
        for (unsigned round = 0; round < rounds; ++round)
            for (std::size_t v = 0; v < variants.size(); ++v)
                run_batch(variants[v].loop, events / rounds, placement.driver, placement.loop,
                          results[v]);
        double floor_cpu = results[0].loop_cpu_ns / results[0].events;
        std::cout << fmt::format("\n{}\n  {:<40} {:>14} {:>9} {:>11} {:>11}\n", placement.name,
                                 "loop", "loop CPU/event", "x floor", "trip p50", "trip p99");
        for (std::size_t v = 0; v < variants.size(); ++v) {
            const Measured& m = results[v];
            double cpu = m.loop_cpu_ns / m.events;
            std::cout << fmt::format("  {:<40} {:>11.2f} us {:>8.2f}x {:>8.2f} us {:>8.2f} us\n",
                                     variants[v].name, cpu / 1000, cpu / floor_cpu,
                                     quantile(m.round_trips_ns, 0.5) / 1000,
                                     quantile(m.round_trips_ns, 0.99) / 1000);
        }
    }
    return 0;
}

} // namespace ktstr
