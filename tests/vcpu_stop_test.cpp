// The vCPU stop protocol without KVM: stand-in vCPUs that behave like KVM_RUN with respect
// to `immediate_exit` and the kick signal. Meant to run under ThreadSanitizer too.
#include "ktstr/vmm/vcpu_thread.hpp"
#include "ktstr/vmm/vm_runner.hpp"

#include <asio/io_context.hpp>
#include <atomic>
#include <catch2/catch_test_macros.hpp>
#include <chrono>
#include <csignal>
#include <future>
#include <random>
#include <thread>
#include <vector>

using namespace ktstr;
using namespace std::chrono_literals;

namespace {

// Like KVM_RUN: returns at once when `immediate_exit` is set on entry, otherwise "runs the
// guest" (sleeps in sigsuspend) until the kick signal arrives, now and then returning a
// port write instead. The kick is blocked outside the wait, so one that comes between the
// check and the wait is still seen, as KVM sees a pending signal.
class FakeVcpu : public VcpuRunner {
  public:
    FakeVcpu(std::uint32_t id, int port_exits) : id_(id), port_exits_(port_exits) {
        page_.resize(4096);
        run_ = reinterpret_cast<kvm_run*>(page_.data());
    }
    std::uint32_t id() const override { return id_; }
    kvm_run& state() const override { return *run_; }
    std::uint32_t run() override {
        sigset_t kick, old;
        sigemptyset(&kick);
        sigaddset(&kick, VmStop::kick_signal());
        pthread_sigmask(SIG_BLOCK, &kick, &old);
        std::uint32_t reason = KVM_EXIT_INTR;
        if (__atomic_load_n(&run_->immediate_exit, __ATOMIC_SEQ_CST)) {
            reason = KVM_EXIT_INTR;
        } else if (port_exits_ > 0) {
            --port_exits_;
            run_->exit_reason = reason = KVM_EXIT_IO;
            run_->io.direction = KVM_EXIT_IO_OUT;
            run_->io.size = 1;
            run_->io.port = 0x80;
            run_->io.count = 1;
            run_->io.data_offset = 2048;
        } else {
            sigset_t wait = old;
            sigdelset(&wait, VmStop::kick_signal());
            sigsuspend(&wait);
        }
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        ++runs;
        return reason;
    }
    std::atomic<int> runs{0};

  private:
    std::uint32_t id_;
    int port_exits_;
    std::vector<std::uint8_t> page_;
    kvm_run* run_;
};

// Whether `f` finishes within `limit` (a hang fails the test instead of stalling it).
template <typename F>
bool finishes_within(std::chrono::milliseconds limit, F f) {
    auto done = std::async(std::launch::async, f);
    return done.wait_for(limit) == std::future_status::ready;
}

} // namespace

TEST_CASE("a stop at any moment of vCPU start-up ends every vCPU", "[vcpu-stop]") {
    std::mt19937 random(12345);
    Bus io, mmio;
    for (int round = 0; round < 200; ++round) {
        CAPTURE(round);
        VmStop stop;
        std::vector<std::unique_ptr<FakeVcpu>> vcpus;
        for (std::uint32_t i = 0; i < 4; ++i)
            vcpus.push_back(std::make_unique<FakeVcpu>(i, int(random() % 3)));
        auto delay = std::chrono::microseconds(random() % 300);
        bool stopped = finishes_within(5000ms, [&] {
            std::thread stopper([&] {
                std::this_thread::sleep_for(delay);
                stop.request({StopReason::Kind::poweroff, "test"});
            });
            {
                std::vector<std::unique_ptr<VcpuThread>> threads;
                for (auto& vcpu : vcpus)
                    threads.push_back(std::make_unique<VcpuThread>(*vcpu, io, mmio, stop));
                stopper.join();
            } // joins every vCPU thread
        });
        REQUIRE(stopped);
        CHECK(stop.reason()->kind == StopReason::Kind::poweroff);
    }
}

TEST_CASE("stop hooks run once, also when added after the stop", "[vcpu-stop]") {
    VmStop stop;
    int early = 0, late = 0;
    stop.on_request([&] { ++early; });
    stop.request({StopReason::Kind::timeout, "first"});
    stop.request({StopReason::Kind::error, "second"});
    stop.on_request([&] { ++late; });
    CHECK(early == 1);
    CHECK(late == 1);
    CHECK(stop.reason()->kind == StopReason::Kind::timeout);
}

TEST_CASE("run_vm ends at its timeout, or when another thread stops it", "[vcpu-stop]") {
    Bus io, mmio;
    std::vector<std::unique_ptr<FakeVcpu>> vcpus;
    std::vector<VcpuRunner*> runners;
    for (std::uint32_t i = 0; i < 3; ++i) {
        vcpus.push_back(std::make_unique<FakeVcpu>(i, 5));
        runners.push_back(vcpus.back().get());
    }
    SECTION("timeout") {
        asio::io_context executor;
        VmStop stop;
        VmRunOptions options;
        options.timeout = 50ms;
        ExitCounts counts;
        options.exit_counts = &counts;
        StopReason reason;
        REQUIRE(finishes_within(
            5000ms, [&] { reason = run_vm(executor, runners, io, mmio, stop, options); }));
        CHECK(reason.kind == StopReason::Kind::timeout);
        CHECK(counts.io_ports[0x80] == 15); // every port exit was seen and counted
    }
    SECTION("another thread") {
        asio::io_context executor;
        VmStop stop;
        bool flushed = false;
        VmRunOptions options;
        options.after_stop = [&](const StopReason&) -> asio::awaitable<void> {
            flushed = true;
            co_return;
        };
        std::thread stopper([&] {
            std::this_thread::sleep_for(20ms);
            stop.request({StopReason::Kind::reset, "from elsewhere"});
        });
        StopReason reason;
        REQUIRE(finishes_within(
            5000ms, [&] { reason = run_vm(executor, runners, io, mmio, stop, options); }));
        stopper.join();
        CHECK(reason.kind == StopReason::Kind::reset);
        CHECK(flushed);
    }
}
