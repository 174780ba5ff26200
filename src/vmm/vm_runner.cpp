#include "ktstr/vmm/vm_runner.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/io/event_fd.hpp"
#include "ktstr/vmm/vcpu_thread.hpp"

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <fmt/format.h>
#include <memory>
#include <sys/ioctl.h>

namespace ktstr {

IrqFd::IrqFd(const Vm& vm, std::uint32_t gsi) : fd_(make_eventfd()) {
    kvm_irqfd irqfd{};
    irqfd.fd = std::uint32_t(fd_.get());
    irqfd.gsi = gsi;
    if (::ioctl(vm.fd(), KVM_IRQFD, &irqfd) != 0)
        throw_errno(fmt::format("KVM_IRQFD for GSI {}", gsi));
}

void IrqFd::trigger() { signal_eventfd(fd_.get()); }

void add_ioeventfd(const Vm& vm, int notifier, GuestAddress address, std::uint32_t value) {
    kvm_ioeventfd ioeventfd{};
    ioeventfd.datamatch = value;
    ioeventfd.addr = address.raw();
    ioeventfd.len = 4;
    ioeventfd.fd = notifier;
    ioeventfd.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
    if (::ioctl(vm.fd(), KVM_IOEVENTFD, &ioeventfd) != 0)
        throw_errno(fmt::format("KVM_IOEVENTFD at {:#x}", address.raw()));
}

namespace {

// Asks for the stop, or, when it was already asked for (output is being flushed), ends
// the loop at once: a second signal or the deadline does not wait for a slow reader.
void stop_or_abandon(VmStop& stop, asio::io_context& loop, StopReason reason) {
    if (stop.requested())
        loop.stop();
    else
        stop.request(std::move(reason));
}

void watch_signals(asio::signal_set& signals, VmStop& stop, asio::io_context& loop) {
    signals.async_wait([&](const std::error_code& ec, int signal) {
        if (ec)
            return;
        stop_or_abandon(stop, loop,
                        {StopReason::Kind::interrupted,
                         fmt::format("stopped by {}", signal == SIGINT ? "SIGINT" : "SIGTERM"),
                         signal});
        watch_signals(signals, stop, loop);
    });
}

} // namespace

StopReason run_vm(asio::io_context& loop, std::span<VcpuRunner* const> vcpus, const Bus& io,
                  const Bus& mmio, VmStop& stop, const VmRunOptions& options) {
    EventFd stopped(loop);
    stop.set_notify_fd(stopped.fd());
    asio::signal_set signals(loop, SIGINT, SIGTERM);
    watch_signals(signals, stop, loop);
    asio::steady_timer deadline(loop);
    if (options.timeout) {
        deadline.expires_after(*options.timeout);
        deadline.async_wait([&](const std::error_code& ec) {
            if (!ec)
                stop_or_abandon(stop, loop,
                                {StopReason::Kind::timeout,
                                 fmt::format("timed out after {} s",
                                             double(options.timeout->count()) / 1000.0)});
        });
    }
    // Whoever asks for the stop, the loop ends with it (after the caller's flush).
    asio::co_spawn(
        loop,
        [&]() -> asio::awaitable<void> {
            co_await stopped.wait();
            try {
                if (options.after_stop)
                    co_await options.after_stop(*stop.reason());
            } catch (const std::exception&) {
                // Flushing is best effort; the stop itself has its reason already.
            }
            loop.stop();
        },
        asio::detached);
    {
        std::vector<std::unique_ptr<VcpuThread>> threads;
        try {
            for (VcpuRunner* vcpu : vcpus)
                threads.push_back(std::make_unique<VcpuThread>(*vcpu, io, mmio, stop,
                                                               options.exit_counts != nullptr));
        } catch (const std::exception& e) {
            stop.request({StopReason::Kind::error, e.what()});
        }
        loop.run();
        stop.request({StopReason::Kind::error, "the event loop ended unexpectedly"});
        for (auto& thread : threads) {
            thread->join();
            if (options.exit_counts)
                options.exit_counts->merge(thread->exit_counts());
        }
    }
    stop.set_notify_fd(-1);
    return *stop.reason();
}

} // namespace ktstr
