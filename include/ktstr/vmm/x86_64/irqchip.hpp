#pragma once

#include "ktstr/vmm/bus.hpp"
#include "ktstr/vmm/kvm.hpp"

namespace ktstr::x86_64 {

// Creates the VM's interrupt controllers; call before creating vCPUs. Up to APIC ID 254 KVM
// emulates the whole PC interrupt system: PIC, I/O APIC, PIT. Past it (`split_irqchip`) the
// local APICs need x2APIC's 32-bit IDs, which KVM's I/O APIC cannot address: KVM keeps only
// the local APICs, the VMM's I/O APIC goes on `mmio`, and there is no PIC or PIT; the guest's
// APIC timers run in TSC-deadline mode instead.
void create_irqchip(Vm& vm, bool split_irqchip, Bus& mmio);

} // namespace ktstr::x86_64
