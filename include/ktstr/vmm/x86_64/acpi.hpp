#pragma once

#include "ktstr/vmm/guest_memory.hpp"
#include "ktstr/vmm/topology.hpp"
#include "ktstr/vmm/x86_64/aml.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ktstr {

// The IOAPIC (KVM's, or the VMM's with a split irqchip) has 24 pins, GSIs 0-23.
inline constexpr std::uint32_t kIoApicPins = 24;

// The FADT describes a full, not hardware-reduced, ACPI platform: a hardware-reduced one makes
// the kernel drop the 8259 PIC and the PIT, which the in-kernel irqchip provides. A full platform
// must have PM1a event and control blocks and an SCI, which the VMM never raises. The blocks must
// act as plain registers: the kernel complains unless enable bits read back as it set and cleared
// them (rtc-cmos clears the RTC event, so a port nobody decodes, reading all ones, fails).
// - PM1a event block, 4 bytes: 16-bit status (write 1 to clear), then 16-bit enable.
// - PM1a control block, 2 bytes. The guest powers off (\_S5) by setting SLP_EN, bit 13.
inline constexpr std::uint16_t kAcpiPm1EventPort = 0x600;
inline constexpr std::uint16_t kAcpiPm1ControlPort = 0x604;
// The SCI is ISA IRQ 9, level-triggered and active-high, as on PC chipsets.
inline constexpr std::uint32_t kAcpiSciIrq = 9;

// A virtio-mmio transport, found by the guest's virtio_mmio driver through ACPI _HID
// "LNRO0005". Its registers must lie below 4 GiB and its GSI on its own IOAPIC pin.
struct VirtioMmioDevice {
    GuestAddress base;
    std::uint64_t size;
    std::uint32_t gsi;
    IrqTrigger trigger;
};

struct AcpiConfig {
    const Topology& topology;
    std::vector<NumaMemoryRange> memory;
    std::vector<VirtioMmioDevice> virtio_mmio = {};
    // SLIT distances, nodes x nodes row by row: 10 on the diagonal, 11-255 elsewhere (255: no
    // path). Empty: Topology::distance.
    std::vector<std::uint8_t> node_distances = {};
};

// One table inside the blob. The RSDP's signature is "RSD PTR ".
struct AcpiTableLocation {
    std::string signature;
    std::uint64_t offset;
    std::uint64_t length;
};

struct AcpiTables {
    GuestAddress base;
    GuestAddress rsdp;
    std::vector<std::uint8_t> bytes; // copied into guest memory at `base`
    std::vector<AcpiTableLocation> tables;

    // The bytes of the table with this signature; throws Error if there is none.
    std::span<const std::uint8_t> table(std::string_view signature) const;
};

// Lays out the RSDP (revision 2, at `base`, which must be 16-byte aligned), FACS, DSDT, MADT,
// SRAT, SLIT, FADT and XSDT in one blob for guest address `base`, normally x86_64::kAcpiTables,
// where the kernel also finds the RSDP by scanning; 252 vCPUs take under 9 KiB. The interrupt
// controllers are at x86_64::kLocalApic and x86_64::kIoapic. Throws UsageError for a bad
// distance matrix and Error for other inconsistencies (memory on a node that does not exist,
// a virtio-mmio device above 4 GiB or on a GSI that is taken or out of range).
AcpiTables build_acpi_tables(const AcpiConfig& config, GuestAddress base);

} // namespace ktstr
