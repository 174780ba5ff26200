#include "ktstr/vmm/x86_64/self_check.hpp"

#include "ktstr/vmm/guest_memory.hpp"
#include "ktstr/vmm/kvm.hpp"
#include "ktstr/vmm/x86_64/boot.hpp"
#include "ktstr/vmm/x86_64/cpuid.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"

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
    const std::array<std::uint8_t, 7> code{0xba, 0xf8, 0x03, 0xb0, report.expected_byte,
                                           0xee, 0xf4};
    memory.write_bytes(kCodeAddress, code);

    Vcpu vcpu = vm.create_vcpu(0);
    x86_64::setup_real_mode_vcpu(vcpu, kCodeAddress);

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

bool kvm_runs_64bit_guests(std::string& why) {
    try {
        Kvm kvm;
        Vm vm(kvm);
        GuestMemory memory({{GuestAddress(0), 4ull << 20}});
        vm.map_memory(memory);
        x86_64::write_long_mode_tables(memory);
        // mov eax, 1; mov ecx, 4; shlx eax, eax, ecx; mov dx, 0x3f8; out dx, al; hlt
        const std::array<std::uint8_t, 21> code{0xb8, 0x01, 0x00, 0x00, 0x00, 0xb9, 0x04,
                                                0x00, 0x00, 0x00, 0xc4, 0xe2, 0x71, 0xf7,
                                                0xc0, 0x66, 0xba, 0xf8, 0x03, 0xee, 0xf4};
        memory.write_bytes(x86_64::kKernel, code);
        Vcpu vcpu = vm.create_vcpu(0);
        // KVM refuses long mode to a vCPU whose CPUID lacks it.
        set_vcpu_cpuid(vcpu, supported_cpuid(kvm));
        x86_64::setup_boot_vcpu(vcpu, {x86_64::kKernel, GuestAddress(0), 0});
        for (int exits = 0; exits < 8; ++exits) {
            std::uint32_t reason = vcpu.run();
            if (reason == KVM_EXIT_INTR)
                continue;
            const kvm_run& run = vcpu.state();
            if (reason == KVM_EXIT_IO) {
                auto value = reinterpret_cast<const std::uint8_t*>(&run)[run.io.data_offset];
                if (value != 0x10) {
                    why = fmt::format("shlx computed {:#x}, not 0x10", value);
                    return false;
                }
                continue;
            }
            if (reason == KVM_EXIT_HLT)
                return true;
            why = reason == KVM_EXIT_INTERNAL_ERROR
                      ? "KVM cannot run VEX-encoded instructions in guests (emulation error)"
                      : fmt::format("unexpected KVM exit {}", reason);
            return false;
        }
        why = "the probe guest did not halt";
    } catch (const std::exception& e) {
        why = e.what();
    }
    return false;
}

} // namespace ktstr
