#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <pthread.h>
#include <string>
#include <vector>

struct kvm_run;

namespace ktstr {

// Why a VM stopped. Only the first request counts.
struct StopReason {
    enum class Kind {
        poweroff,
        reset,
        triple_fault,
        kvm_internal_error, // KVM could not run the guest on (KVM_EXIT_INTERNAL_ERROR)
        timeout,
        interrupted,
        channel_broken,
        error
    };
    Kind kind;
    std::string message;
    int signal = 0; // for `interrupted` by a signal: which one
    // For `triple_fault`: KVM reported it with the vCPU already back in its power-on state
    // (KVM on AMD SVM resets before it reports), so the report shows nothing of the fault.
    bool in_reset_state = false;
};

// The stop request shared by the vCPU threads, the devices and the event loop. Requesting
// a stop sets `immediate_exit` in every vCPU's kvm_run and kicks its thread with a signal,
// so a vCPU inside KVM_RUN returns at once and none enters it again. A vCPU thread
// registers itself before its first KVM_RUN; one that registers after the request finds
// `immediate_exit` already set, so no stop can miss a vCPU, whenever it comes.
class VmStop {
  public:
    VmStop();
    // `notify_fd` (an eventfd, may be -1) is written once when the stop is requested.
    void set_notify_fd(int notify_fd);
    // Called once, on the requesting thread, right after the first request (to release
    // threads that wait for something other than KVM_RUN, such as output room).
    void on_request(std::function<void()> hook);

    // By the vCPU thread itself, around its KVM_RUN loop.
    void add_vcpu(kvm_run* run, pthread_t thread);
    void remove_vcpu(kvm_run* run);

    void request(StopReason reason);
    bool requested() const { return requested_.load(std::memory_order_acquire); }
    std::optional<StopReason> reason() const;

    // The signal used to kick vCPU threads out of KVM_RUN.
    static int kick_signal();

  private:
    struct VcpuEntry {
        kvm_run* run;
        pthread_t thread;
    };
    mutable std::mutex mutex_;
    std::atomic<bool> requested_{false};
    std::optional<StopReason> reason_;
    std::vector<VcpuEntry> vcpus_;
    std::vector<std::function<void()>> hooks_;
    int notify_fd_ = -1;
};

} // namespace ktstr
