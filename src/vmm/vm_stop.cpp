#include "ktstr/vmm/vm_stop.hpp"

#include "ktstr/base/fd.hpp"

#include <csignal>
#include <cstdint>
#include <linux/kvm.h>
#include <pthread.h>

namespace ktstr {

namespace {
void ignore_kick(int) {}
} // namespace

int VmStop::kick_signal() { return SIGRTMIN; }

VmStop::VmStop() {
    // A handler that does nothing, without SA_RESTART: KVM_RUN returns EINTR.
    struct sigaction action {};
    action.sa_handler = ignore_kick;
    ::sigemptyset(&action.sa_mask);
    ::sigaction(kick_signal(), &action, nullptr);
}

void VmStop::add_vcpu(kvm_run* run, unsigned long thread) {
    std::lock_guard lock(mutex_);
    vcpus_.push_back({run, thread});
    if (requested_.load())
        run->immediate_exit = 1;
}

void VmStop::request(StopReason reason) {
    std::lock_guard lock(mutex_);
    if (reason_)
        return;
    reason_ = std::move(reason);
    requested_.store(true, std::memory_order_release);
    for (const auto& vcpu : vcpus_) {
        __atomic_store_n(&vcpu.run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        ::pthread_kill(vcpu.thread, kick_signal());
    }
    if (notify_fd_ >= 0)
        signal_eventfd(notify_fd_);
}

std::optional<StopReason> VmStop::reason() const {
    std::lock_guard lock(mutex_);
    return reason_;
}

} // namespace ktstr
