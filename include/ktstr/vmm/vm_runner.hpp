#pragma once

#include "ktstr/vmm/bus.hpp"
#include "ktstr/vmm/exit_counts.hpp"
#include "ktstr/vmm/kvm.hpp"
#include "ktstr/vmm/vm_stop.hpp"

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <span>
#include <vector>

namespace ktstr {

struct VmRunOptions {
    std::optional<std::chrono::milliseconds> timeout;
    // When set, receives the VM exits of all vCPUs (counting costs a little per exit).
    ExitCounts* exit_counts = nullptr;
    // Runs on the executor once the stop is requested, while the devices still exist (to
    // flush output). The timeout and SIGINT/SIGTERM still end it.
    std::function<asio::awaitable<void>(const StopReason&)> after_stop;
};

// Runs every vCPU on its own thread and the VMM's event loop (`executor`, where the devices
// already have their coroutines) on this thread until the VM stops: the guest powers off or
// resets, a vCPU fails, the timeout passes, SIGINT or SIGTERM arrives, or someone requests
// it through `stop`. Returns why it stopped; all vCPU threads have ended by then. The
// executor must not run again once the devices are gone.
StopReason run_vm(asio::io_context& executor, std::span<VcpuRunner* const> vcpus, const Bus& io,
                  const Bus& mmio, VmStop& stop, const VmRunOptions& options);

// Binds `notifier` to guest writes of `value` (4 bytes) at MMIO address `address`: KVM
// signals the eventfd instead of exiting to the VMM.
void add_ioeventfd(const Vm& vm, int notifier, GuestAddress address, std::uint32_t value);

// A KVM irqfd: writing its eventfd raises `gsi` in the in-kernel irqchip.
class IrqFd : public InterruptLine {
  public:
    IrqFd(const Vm& vm, std::uint32_t gsi);
    void trigger() override;

  private:
    UniqueFd fd_;
};

} // namespace ktstr
