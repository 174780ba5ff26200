#include "ktstr/vmm/vcpu_thread.hpp"

#include <fmt/format.h>
#include <pthread.h>

namespace ktstr {

VcpuThread::VcpuThread(VcpuRunner& vcpu, const Bus& io, const Bus& mmio, VmStop& stop,
                       bool count_exits)
    : vcpu_(vcpu), io_(io), mmio_(mmio), stop_(stop), count_exits_(count_exits) {
    thread_ = std::thread([this] { run_loop(); });
}

VcpuThread::~VcpuThread() { join(); }

void VcpuThread::join() {
    if (thread_.joinable())
        thread_.join();
}

void VcpuThread::run_loop() {
    ::pthread_setname_np(::pthread_self(), fmt::format("vcpu{}", vcpu_.id()).c_str());
    // Registered before the first check: a stop requested at any moment reaches this loop.
    stop_.add_vcpu(&vcpu_.state(), ::pthread_self());
    struct Unregister {
        VmStop& stop;
        kvm_run* run;
        ~Unregister() { stop.remove_vcpu(run); }
    } unregister{stop_, &vcpu_.state()};
    try {
        while (!stop_.requested()) {
            std::uint32_t reason = vcpu_.run();
            if (reason == KVM_EXIT_INTR)
                continue;
            if (!handle_exit(reason))
                return;
        }
    } catch (const std::exception& e) {
        stop_.request({StopReason::Kind::error, fmt::format("vCPU {}: {}", vcpu_.id(), e.what())});
    }
}

bool VcpuThread::handle_exit(std::uint32_t reason) {
    kvm_run& run = vcpu_.state();
    if (count_exits_) {
        counts_.add_exit(reason);
        if (reason == KVM_EXIT_IO)
            counts_.add_io(run.io.port);
        else if (reason == KVM_EXIT_MMIO)
            counts_.add_mmio(run.mmio.phys_addr);
    }
    auto stop = [&](StopReason::Kind kind, std::string message) {
        stop_.request({kind, fmt::format("vCPU {}: {}", vcpu_.id(), message)});
        return false;
    };
    switch (reason) {
    case KVM_EXIT_IO: {
        auto* data = reinterpret_cast<std::uint8_t*>(&run) + run.io.data_offset;
        for (std::uint32_t i = 0; i < run.io.count; ++i) {
            std::span<std::uint8_t> access(data + std::size_t(i) * run.io.size, run.io.size);
            if (run.io.direction == KVM_EXIT_IO_OUT)
                io_.write(run.io.port, access);
            else
                io_.read(run.io.port, access);
        }
        return true;
    }
    case KVM_EXIT_MMIO: {
        std::span<std::uint8_t> access(run.mmio.data, std::min<std::uint32_t>(run.mmio.len, 8));
        if (run.mmio.is_write)
            mmio_.write(run.mmio.phys_addr, access);
        else
            mmio_.read(run.mmio.phys_addr, access);
        return true;
    }
    case KVM_EXIT_HLT: return stop(StopReason::Kind::poweroff, "halted");
    case KVM_EXIT_SHUTDOWN: {
        // Where it died, for the report: a triple fault leaves no other trace.
        std::string where = vcpu_.crash_state();
        StopReason reason{StopReason::Kind::triple_fault,
                          fmt::format("vCPU {}: shutdown (triple fault){}", vcpu_.id(),
                                      where.empty() ? "" : " at " + where)};
        reason.in_reset_state = vcpu_.in_reset_state();
        stop_.request(std::move(reason));
        return false;
    }
    case KVM_EXIT_SYSTEM_EVENT:
        switch (run.system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
            return stop(StopReason::Kind::poweroff, "system event: power off");
        case KVM_SYSTEM_EVENT_RESET: return stop(StopReason::Kind::reset, "system event: reset");
        case KVM_SYSTEM_EVENT_CRASH:
            return stop(StopReason::Kind::error, "system event: guest crash");
        default:
            return stop(StopReason::Kind::error,
                        fmt::format("system event {}", run.system_event.type));
        }
    case KVM_EXIT_FAIL_ENTRY:
        return stop(StopReason::Kind::error,
                    fmt::format("VM entry failed (hardware reason {:#x})",
                                run.fail_entry.hardware_entry_failure_reason));
    case KVM_EXIT_INTERNAL_ERROR:
        return stop(StopReason::Kind::kvm_internal_error,
                    fmt::format("KVM internal error (suberror {})", run.internal.suberror));
    default: return stop(StopReason::Kind::error, fmt::format("unhandled KVM exit {}", reason));
    }
}

} // namespace ktstr
