#pragma once

#include "ktstr/vmm/bus.hpp"
#include "ktstr/vmm/exit_counts.hpp"
#include "ktstr/vmm/kvm.hpp"
#include "ktstr/vmm/vm_stop.hpp"

#include <asio/io_context.hpp>
#include <chrono>
#include <optional>
#include <vector>

namespace ktstr {

// Runs every vCPU on its own thread and the VMM's event loop (`executor`, where the devices
// already have their coroutines) on this thread until the VM stops: the guest powers off or
// resets, a vCPU fails, the timeout passes, or SIGINT or SIGTERM arrives. Returns why it
// stopped; all vCPU threads have ended by then.
// With `exit_counts`, the exits of all vCPUs are added to it.
StopReason run_vm(asio::io_context& executor, std::vector<Vcpu>& vcpus, const Bus& io,
                  const Bus& mmio, VmStop& stop, std::optional<std::chrono::milliseconds> timeout,
                  ExitCounts* exit_counts = nullptr);

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
