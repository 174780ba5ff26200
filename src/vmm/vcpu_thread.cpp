#include "ktstr/vmm/vcpu_thread.hpp"

#include <fmt/format.h>
#include <pthread.h>

namespace ktstr {

VcpuThread::VcpuThread(Vcpu& vcpu, const Bus& io, const Bus& mmio, VmStop& stop)
    : vcpu_(vcpu), io_(io), mmio_(mmio), stop_(stop) {
    thread_ = std::thread([this] { run_loop(); });
    stop_.add_vcpu(&vcpu_.state(), thread_.native_handle());
}

VcpuThread::~VcpuThread() { join(); }

void VcpuThread::join() {
    if (thread_.joinable())
        thread_.join();
}

void VcpuThread::run_loop() {
    ::pthread_setname_np(::pthread_self(), fmt::format("vcpu{}", vcpu_.id()).c_str());
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
    ++counts_.by_reason[reason];
    if (reason == KVM_EXIT_IO)
        ++counts_.io_ports[run.io.port];
    else if (reason == KVM_EXIT_MMIO)
        ++counts_.mmio_addresses[run.mmio.phys_addr];
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
        std::string where;
#if defined(__x86_64__)
        // Where it died, for the report: a triple fault leaves no other trace.
        kvm_regs regs = vcpu_.regs();
        kvm_sregs sregs = vcpu_.sregs();
        where = fmt::format(" at rip {:#x} rsp {:#x} cr0 {:#x} cr3 {:#x} cr4 {:#x}", regs.rip,
                            regs.rsp, sregs.cr0, sregs.cr3, sregs.cr4);
#endif
        return stop(StopReason::Kind::triple_fault, "shutdown (triple fault)" + where);
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
        return stop(StopReason::Kind::error,
                    fmt::format("KVM internal error (suberror {})", run.internal.suberror));
    default: return stop(StopReason::Kind::error, fmt::format("unhandled KVM exit {}", reason));
    }
}

} // namespace ktstr
