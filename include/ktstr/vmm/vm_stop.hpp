#pragma once

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct kvm_run;

namespace ktstr {

// Why a VM stopped. Only the first request counts.
struct StopReason {
    enum class Kind { poweroff, reset, triple_fault, timeout, interrupted, error };
    Kind kind;
    std::string message;
    int signal = 0; // for `interrupted` by a signal: which one
};

// The stop request shared by the vCPU threads, the devices and the event loop. Requesting
// a stop sets `immediate_exit` in every vCPU's kvm_run and kicks its thread with a signal,
// so a vCPU inside KVM_RUN returns at once and none enters it again.
class VmStop {
  public:
    VmStop();
    // `notify_fd` (an eventfd, may be -1) is written once when the stop is requested.
    void set_notify_fd(int notify_fd) { notify_fd_ = notify_fd; }

    void add_vcpu(kvm_run* run, unsigned long thread);
    void request(StopReason reason);
    bool requested() const { return requested_.load(std::memory_order_acquire); }
    std::optional<StopReason> reason() const;

    // The signal used to kick vCPU threads out of KVM_RUN.
    static int kick_signal();

  private:
    struct VcpuEntry {
        kvm_run* run;
        unsigned long thread;
    };
    mutable std::mutex mutex_;
    std::atomic<bool> requested_{false};
    std::optional<StopReason> reason_;
    std::vector<VcpuEntry> vcpus_;
    int notify_fd_ = -1;
};

} // namespace ktstr
