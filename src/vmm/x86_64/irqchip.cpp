#include "ktstr/vmm/x86_64/irqchip.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/devices/ioapic.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"

#include <sys/ioctl.h>
#include <vector>

namespace ktstr::x86_64 {

namespace {

void vm_ioctl(const Vm& vm, unsigned long request, unsigned long arg, const char* name) {
    if (::ioctl(vm.fd(), request, arg) != 0)
        throw_errno(name);
}

// GSI n sends what the I/O APIC's pin n would.
void install_routes(const Vm& vm, const Ioapic::Routes& routes) {
    std::vector<kvm_irq_routing_entry> entries;
    for (std::uint32_t gsi = 0; gsi < routes.size(); ++gsi) {
        if (!routes[gsi])
            continue;
        kvm_irq_routing_entry& entry = entries.emplace_back();
        entry = {};
        entry.gsi = gsi;
        entry.type = KVM_IRQ_ROUTING_MSI;
        entry.u.msi.address_lo = std::uint32_t(routes[gsi]->address);
        entry.u.msi.address_hi = std::uint32_t(routes[gsi]->address >> 32);
        entry.u.msi.data = routes[gsi]->data;
    }
    vm.set_gsi_routing(entries);
}

} // namespace

void create_irqchip(Vm& vm, bool split_irqchip, Bus& mmio) {
    if (!split_irqchip) {
        vm_ioctl(vm, KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP");
        kvm_pit_config pit{};
        pit.flags = KVM_PIT_SPEAKER_DUMMY;
        vm_ioctl(vm, KVM_CREATE_PIT2, reinterpret_cast<unsigned long>(&pit), "KVM_CREATE_PIT2");
        return;
    }
    vm.enable_capability(KVM_CAP_SPLIT_IRQCHIP, Ioapic::kPins, "KVM_CAP_SPLIT_IRQCHIP");
    vm.enable_capability(KVM_CAP_X2APIC_API,
                         KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK,
                         "KVM_CAP_X2APIC_API");
    mmio.insert(kIoapic.raw(), Ioapic::kSize, std::make_shared<Ioapic>([&vm](const auto& routes) {
                    install_routes(vm, routes);
                }));
}

} // namespace ktstr::x86_64
