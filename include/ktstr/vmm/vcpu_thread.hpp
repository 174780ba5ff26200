#pragma once

#include "ktstr/vmm/bus.hpp"
#include "ktstr/vmm/exit_counts.hpp"
#include "ktstr/vmm/kvm.hpp"
#include "ktstr/vmm/vm_stop.hpp"

#include <thread>

namespace ktstr {

// One thread running KVM_RUN on one vCPU, handing port and MMIO accesses to the buses,
// until the VM stops. Exits that end the VM (shutdown, system events, entry failures,
// internal errors) request the stop with a message saying what happened.
class VcpuThread {
  public:
    // With `count_exits`, the thread counts its exits (see exit_counts()).
    VcpuThread(VcpuRunner& vcpu, const Bus& io, const Bus& mmio, VmStop& stop,
               bool count_exits = false);
    VcpuThread(const VcpuThread&) = delete;
    VcpuThread& operator=(const VcpuThread&) = delete;
    ~VcpuThread(); // joins; the VM must be stopping

    // What this vCPU exited for; read only after the thread has ended (join()).
    const ExitCounts& exit_counts() const { return counts_; }
    void join();

  private:
    void run_loop();
    // Returns false when the exit ends the VM.
    bool handle_exit(std::uint32_t reason);

    VcpuRunner& vcpu_;
    const Bus& io_;
    const Bus& mmio_;
    VmStop& stop_;
    const bool count_exits_;
    ExitCounts counts_;
    std::thread thread_;
};

} // namespace ktstr
