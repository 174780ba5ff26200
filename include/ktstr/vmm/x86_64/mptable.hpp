#pragma once

#include "ktstr/vmm/guest_memory.hpp"
#include "ktstr/vmm/topology.hpp"

#include <cstdint>
#include <vector>

namespace ktstr {

// What the MP table says of every processor: CPUID leaf 1's EAX (family, model, stepping) and
// EDX (feature flags).
struct MpProcessorSignature {
    std::uint32_t signature = 0;
    std::uint32_t features = 0;
};

// Intel MultiProcessor Specification 1.4 tables for guests that boot without ACPI
// (`acpi=off`): the floating pointer at `base`, which must be 16-byte aligned and where Linux
// scans for it (x86_64::kMpTable), then the configuration table. They name every vCPU (the
// first as the bootstrap processor), the ISA bus, the I/O APIC, the pins of ISA IRQs 0-15, and
// ExtINT and NMI on every local APIC's LINT0 and LINT1. The spec's APIC IDs are 8 bits wide:
// throws Error for a topology with APIC IDs past 254, whose guests need ACPI anyway.
std::vector<std::uint8_t> build_mp_table(const Topology& topology, GuestAddress base,
                                         MpProcessorSignature processor);

} // namespace ktstr
