// The split irqchip in a real KVM, without a guest kernel: an interrupt programmed into the
// VMM's I/O APIC for an APIC ID past 255 lands in that vCPU's local APIC, and only there.
#include "ktstr/devices/ioapic.hpp"
#include "ktstr/vmm/bus.hpp"
#include "ktstr/vmm/kvm.hpp"
#include "ktstr/vmm/vm_runner.hpp"
#include "ktstr/vmm/x86_64/cpuid.hpp"
#include "ktstr/vmm/x86_64/irqchip.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"

#include <catch2/catch_test_macros.hpp>
#include <chrono>
#include <cstring>
#include <sys/ioctl.h>
#include <thread>

using namespace ktstr;

namespace {

constexpr std::uint32_t kApicBaseMsr = 0x1b;
constexpr std::uint64_t kApicEnabled = 1 << 11, kX2ApicMode = 1 << 10;
constexpr std::size_t kSpuriousVectorRegister = 0xf0, kIrrRegisters = 0x200;
constexpr std::uint32_t kApicSoftwareEnable = 0x100;

kvm_lapic_state lapic_of(const Vcpu& vcpu) {
    kvm_lapic_state lapic{};
    REQUIRE(::ioctl(vcpu.fd(), KVM_GET_LAPIC, &lapic) == 0);
    return lapic;
}

std::uint32_t lapic_register(const kvm_lapic_state& lapic, std::size_t offset) {
    std::uint32_t value;
    std::memcpy(&value, lapic.regs + offset, 4);
    return value;
}

// The vCPU's local APIC in x2APIC mode and software-enabled, as Linux leaves it.
void enable_x2apic(const Vcpu& vcpu) {
    // kvm_msrs as the kernel lays it out (Debian 12's header adds a byte in C++, and with it
    // changes the ioctl number), with one entry.
    struct OneMsr {
        std::uint32_t nmsrs;
        std::uint32_t padding;
        kvm_msr_entry entry;
    } msrs{};
    constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, std::uint64_t);
    static_assert(kSetMsrs == 0x4008ae89);
    msrs.nmsrs = 1;
    msrs.entry.index = kApicBaseMsr;
    msrs.entry.data = x86_64::kLocalApic.raw() | kApicEnabled | kX2ApicMode;
    REQUIRE(::ioctl(vcpu.fd(), kSetMsrs, &msrs) == 1);
    kvm_lapic_state lapic = lapic_of(vcpu);
    CHECK(lapic_register(lapic, 0x20) == vcpu.id()); // the x2APIC ID is the vCPU id
    std::uint32_t svr = lapic_register(lapic, kSpuriousVectorRegister) | kApicSoftwareEnable;
    std::memcpy(lapic.regs + kSpuriousVectorRegister, &svr, 4);
    REQUIRE(::ioctl(vcpu.fd(), KVM_SET_LAPIC, &lapic) == 0);
}

bool interrupt_requested(const Vcpu& vcpu, std::uint8_t vector) {
    std::uint32_t irr = lapic_register(lapic_of(vcpu), kIrrRegisters + 0x10 * (vector / 32));
    return irr >> (vector % 32) & 1;
}

// irqfd injection may go through a kernel worker: wait for it.
bool arrives(const Vcpu& vcpu, std::uint8_t vector) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!interrupt_requested(vcpu, vector)) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

void write_ioapic(const Bus& mmio, std::uint32_t index, std::uint32_t value) {
    auto bytes = [](const std::uint32_t& v) {
        return std::span(reinterpret_cast<const std::uint8_t*>(&v), 4);
    };
    REQUIRE(mmio.write(x86_64::kIoapic.raw(), bytes(index)));
    REQUIRE(mmio.write(x86_64::kIoapic.raw() + 0x10, bytes(value)));
}

} // namespace

TEST_CASE("an I/O APIC pin reaches APIC ID 433 through the split irqchip", "[kvm][split-irqchip]") {
    Kvm kvm;
    Vm vm(kvm);
    Bus mmio;
    x86_64::create_irqchip(vm, true, mmio);
    // 433 = 0x1b1 and 177 = 0xb1 differ only past bit 7: a route that dropped the high
    // destination bits would reach 177.
    Vcpu target = vm.create_vcpu(433);
    Vcpu alias = vm.create_vcpu(177);
    auto supported = supported_cpuid(kvm);
    for (const Vcpu* vcpu : {&target, &alias}) {
        set_vcpu_cpuid(*vcpu, supported);
        enable_x2apic(*vcpu);
    }

    constexpr std::uint32_t kPin = 16;
    constexpr std::uint8_t kVector = 0x45;
    IrqFd line(vm, kPin);
    write_ioapic(mmio, 0x10 + 2 * kPin + 1, (433u & 0xff) << 24 | (433u >> 8) << 17);
    write_ioapic(mmio, 0x10 + 2 * kPin, kVector); // fixed, physical, edge, unmasked
    line.trigger();

    CHECK(arrives(target, kVector));
    CHECK_FALSE(interrupt_requested(alias, kVector));

    // Masked, the pin has no route: its edge reaches no one, given the time KVM takes to
    // deliver one. The next edge, unmasked with another vector, shows the line still works.
    write_ioapic(mmio, 0x10 + 2 * kPin, Ioapic::kMaskedEntry | (kVector + 1));
    line.trigger();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    write_ioapic(mmio, 0x10 + 2 * kPin, kVector + 2);
    line.trigger();
    CHECK(arrives(target, kVector + 2));
    CHECK_FALSE(interrupt_requested(target, kVector + 1));
    CHECK_FALSE(interrupt_requested(alias, kVector + 1));
}
