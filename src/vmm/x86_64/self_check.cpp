#include "ktstr/vmm/self_check.hpp"

#include "ktstr/vmm/guest_memory.hpp"
#include "ktstr/vmm/kvm.hpp"

#include <array>
#include <fmt/format.h>

namespace ktstr {

namespace {
constexpr GuestAddress kCodeAddress{0x1000};
constexpr std::uint64_t kMemorySize = 0x10000;
constexpr std::size_t kMaxExits = 8; // the guest needs two; more means it went astray
} // namespace

bool SelfCheckReport::passed() const {
    return exits.size() == 2 && exits[0].reason == KVM_EXIT_IO && exits[0].port_write &&
           exits[0].port == expected_port && exits[0].data == std::vector{expected_byte} &&
           exits[1].reason == KVM_EXIT_HLT;
}

std::string SelfCheckReport::summary() const {
    std::string text;
    for (const auto& exit : exits) {
        if (exit.reason == KVM_EXIT_IO)
            text += fmt::format("io {} port {:#x} byte {:#04x}; ", exit.port_write ? "out" : "in",
                                exit.port, exit.data.empty() ? 0 : exit.data[0]);
        else if (exit.reason == KVM_EXIT_HLT)
            text += "hlt; ";
        else
            text += fmt::format("exit reason {}; ", exit.reason);
    }
    return text.empty() ? "no exits" : text.substr(0, text.size() - 2);
}

SelfCheckReport run_kvm_self_check() {
    SelfCheckReport report{.expected_byte = 'K', .expected_port = 0x3f8, .exits = {}};
    Kvm kvm;
    Vm vm(kvm);
    GuestMemory memory({{GuestAddress(0), kMemorySize}});
    vm.map_memory(memory);

    // Real mode: mov dx, 0x3f8; mov al, 'K'; out dx, al; hlt
    const std::array<std::uint8_t, 7> code{0xba, 0xf8, 0x03, 0xb0, report.expected_byte, 0xee, 0xf4};
    memory.write_bytes(kCodeAddress, code);

    Vcpu vcpu = vm.create_vcpu(0);
    kvm_sregs sregs = vcpu.sregs();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(sregs);
    kvm_regs regs{};
    regs.rip = kCodeAddress.raw();
    regs.rflags = 0x2; // bit 1 is reserved and must be set
    vcpu.set_regs(regs);

    while (report.exits.size() < kMaxExits) {
        std::uint32_t reason = vcpu.run();
        if (reason == KVM_EXIT_INTR)
            continue;
        ObservedExit exit;
        exit.reason = reason;
        if (reason == KVM_EXIT_IO) {
            const kvm_run& run = vcpu.state();
            exit.port = run.io.port;
            exit.port_write = run.io.direction == KVM_EXIT_IO_OUT;
            const auto* data = reinterpret_cast<const std::uint8_t*>(&run) + run.io.data_offset;
            exit.data.assign(data, data + std::size_t(run.io.size) * run.io.count);
        }
        report.exits.push_back(std::move(exit));
        if (reason != KVM_EXIT_IO)
            break;
    }
    return report;
}

} // namespace ktstr
