#include "ktstr/vmm/vm_stop.hpp"

#include "ktstr/base/fd.hpp"

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <linux/kvm.h>

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

void VmStop::set_notify_fd(int notify_fd) {
    std::lock_guard lock(mutex_);
    notify_fd_ = notify_fd;
}

void VmStop::on_request(std::function<void()> hook) {
    std::unique_lock lock(mutex_);
    if (!reason_) {
        hooks_.push_back(std::move(hook));
        return;
    }
    lock.unlock();
    hook(); // already stopping
}

void VmStop::add_vcpu(kvm_run* run, pthread_t thread) {
    std::lock_guard lock(mutex_);
    vcpus_.push_back({run, thread});
    if (reason_)
        __atomic_store_n(&run->immediate_exit, 1, __ATOMIC_SEQ_CST);
}

void VmStop::remove_vcpu(kvm_run* run) {
    std::lock_guard lock(mutex_);
    std::erase_if(vcpus_, [run](const VcpuEntry& entry) { return entry.run == run; });
}

void VmStop::request(StopReason reason) {
    std::vector<std::function<void()>> hooks;
    {
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
        hooks.swap(hooks_);
    }
    for (auto& hook : hooks)
        hook();
}

std::optional<StopReason> VmStop::reason() const {
    std::lock_guard lock(mutex_);
    return reason_;
}

} // namespace ktstr
