#include "ktstr/vmm/x86_64/acpi.hpp"

#include "ktstr/base/byte_writer.hpp"
#include "ktstr/base/error.hpp"
#include "ktstr/vmm/x86_64/apic_id.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <set>

namespace ktstr {

namespace {

// Table layouts and revisions follow ACPI 6.3 (chapter 5).
constexpr std::string_view kOemId = "KTSTR ";
constexpr std::string_view kOemTableId = "KTSTRVM ";
constexpr std::string_view kCreatorId = "KTST";
constexpr std::uint32_t kOemRevision = 1;
constexpr std::uint32_t kCreatorRevision = 1;

constexpr std::size_t kHeaderLengthOffset = 4;
constexpr std::size_t kHeaderChecksumOffset = 9;
constexpr std::size_t kRsdpSize = 36;
constexpr std::size_t kRsdpV1Size = 20; // the part the first checksum covers
constexpr std::uint32_t kFacsSize = 64;

// APIC IDs from 255 up take the x2APIC forms of the MADT and SRAT entries; below that the spec
// asks for the xAPIC forms, and Linux ignores x2APIC entries below 255 beside xAPIC ones.
constexpr std::uint32_t kMaxXApicId = 254;

constexpr std::uint32_t kEnabled = 1; // MADT processor, SRAT affinity flag

// The ISA IRQ the PIT drives, and the IOAPIC pin it is wired to on PCs.
constexpr std::uint8_t kPitIrq = 0;
constexpr std::uint32_t kPitGsi = 2;
// MPS INTI flags: 0 conforms to the bus (ISA: edge, active-high).
constexpr std::uint16_t kIntiConforming = 0;
constexpr std::uint16_t kIntiActiveHighLevel = 0x1 | 0x3 << 2;
// The processor UID meaning "all processors" in the NMI entries.
constexpr std::uint8_t kAllProcessors = 0xFF;
constexpr std::uint32_t kAllX2ApicProcessors = 0xFFFFFFFF;
constexpr std::uint8_t kNmiLint = 1;

constexpr std::uint8_t kSystemIoSpace = 1;
constexpr std::uint8_t kPm1EventLength = 4;
constexpr std::uint8_t kPm1ControlLength = 2;

constexpr std::uint8_t kLocalDistance = 10;

// A Generic Address Structure for an I/O port block; a zero address means "none".
void io_block(ByteWriter& table, std::uint16_t port, std::uint8_t length) {
    table.u8(port == 0 ? 0 : kSystemIoSpace);
    table.u8(static_cast<std::uint8_t>(length * 8));
    table.u8(0); // bit offset
    table.u8(0); // access size: undefined, as for the legacy 32-bit block fields
    table.u64(port);
}

// The standard 36-byte header; finish_table fills in its length and checksum.
ByteWriter begin_table(std::string_view signature, std::uint8_t revision) {
    ByteWriter table;
    table.text(signature);
    table.u32(0);
    table.u8(revision);
    table.u8(0);
    table.text(kOemId);
    table.text(kOemTableId);
    table.u32(kOemRevision);
    table.text(kCreatorId);
    table.u32(kCreatorRevision);
    return table;
}

std::vector<std::uint8_t> finish_table(ByteWriter table) {
    std::vector<std::uint8_t> bytes = table.take();
    auto length = static_cast<std::uint32_t>(bytes.size());
    for (int i = 0; i < 4; ++i)
        bytes[kHeaderLengthOffset + i] = static_cast<std::uint8_t>(length >> (8 * i));
    bytes[kHeaderChecksumOffset] = checksum_for(bytes);
    return bytes;
}

// A full ACPI platform has a FACS: the kernel looks for the global lock in it.
std::vector<std::uint8_t> build_facs() {
    ByteWriter facs;
    facs.text("FACS");
    facs.u32(kFacsSize);
    facs.u32(0); // hardware signature: nothing to resume from
    facs.u32(0); // firmware waking vector: no sleep states
    facs.u32(0); // global lock, free
    facs.u32(0); // flags: no S4BIOS, no 64-bit wake
    facs.u64(0); // 64-bit waking vector
    facs.u8(2);  // version
    facs.zeros(3);
    facs.u32(0); // OSPM flags
    facs.zeros(24);
    return facs.take();
}

std::vector<std::uint8_t> build_dsdt(const AcpiConfig& config) {
    std::vector<aml::Bytes> devices;
    for (std::size_t i = 0; i < config.virtio_mmio.size(); ++i) {
        const VirtioMmioDevice& virtio = config.virtio_mmio[i];
        devices.push_back(aml::device(
            fmt::format("VR{:02X}", i),
            {aml::name("_HID", aml::string("LNRO0005")), aml::name("_UID", aml::integer(i)),
             aml::name("_CRS", aml::resource_template(
                                   {aml::memory32_fixed(virtio.base, virtio.size),
                                    aml::extended_interrupt(virtio.gsi, virtio.trigger)}))}));
    }
    ByteWriter dsdt = begin_table("DSDT", 2);
    // S5 (soft off): the kernel powers off by writing SLP_TYP 0 and SLP_EN to the PM1a control
    // block, where the VMM ends the VM.
    dsdt.append(aml::name(
        "_S5", aml::package({aml::integer(0), aml::integer(0), aml::integer(0), aml::integer(0)})));
    dsdt.append(aml::scope("\\_SB", devices));
    return finish_table(std::move(dsdt));
}

std::vector<std::uint8_t> build_madt(const Topology& topology) {
    ByteWriter madt = begin_table("APIC", 5);
    madt.u32(static_cast<std::uint32_t>(x86_64::kLocalApic.raw()));
    // PC-AT compatible: the kernel masks the 8259 pair and routes through the IOAPIC. (With
    // a split irqchip no 8259 answers at its ports, which the masking does not notice.)
    madt.u32(1);
    bool any_x2apic = false;
    for (std::uint32_t cpu = 0; cpu < topology.cpus(); ++cpu) {
        std::uint32_t apic_id = apic_id_of(topology, cpu);
        if (apic_id <= kMaxXApicId) {
            madt.u8(0); // Processor Local APIC
            madt.u8(8);
            madt.u8(static_cast<std::uint8_t>(cpu)); // ACPI processor UID
            madt.u8(static_cast<std::uint8_t>(apic_id));
            madt.u32(kEnabled);
        } else {
            madt.u8(9); // Processor Local x2APIC
            madt.u8(16);
            madt.u16(0);
            madt.u32(apic_id);
            madt.u32(kEnabled);
            madt.u32(cpu);
            any_x2apic = true;
        }
    }
    madt.u8(1); // I/O APIC
    madt.u8(12);
    madt.u8(0); // I/O APIC ID, as KVM's IOAPIC resets to
    madt.u8(0);
    madt.u32(static_cast<std::uint32_t>(x86_64::kIoapic.raw()));
    madt.u32(0); // GSI base
    auto source_override = [&](std::uint8_t irq, std::uint32_t gsi, std::uint16_t flags) {
        madt.u8(2); // Interrupt Source Override
        madt.u8(10);
        madt.u8(0); // ISA
        madt.u8(irq);
        madt.u32(gsi);
        madt.u16(flags);
    };
    source_override(kPitIrq, kPitGsi, kIntiConforming);
    source_override(kAcpiSciIrq, kAcpiSciIrq, kIntiActiveHighLevel);
    madt.u8(4); // Local APIC NMI
    madt.u8(6);
    madt.u8(kAllProcessors);
    madt.u16(kIntiConforming);
    madt.u8(kNmiLint);
    if (any_x2apic) {
        madt.u8(0x0A); // Local x2APIC NMI, for the processors only x2APIC entries name
        madt.u8(12);
        madt.u16(kIntiConforming);
        madt.u32(kAllX2ApicProcessors);
        madt.u8(kNmiLint);
        madt.zeros(3);
    }
    return finish_table(std::move(madt));
}

std::vector<std::uint8_t> build_srat(const AcpiConfig& config) {
    const Topology& topology = config.topology;
    ByteWriter srat = begin_table("SRAT", 3);
    srat.u32(1); // reserved, 1 for compatibility
    srat.u64(0);
    for (std::uint32_t cpu = 0; cpu < topology.cpus(); ++cpu) {
        std::uint32_t apic_id = apic_id_of(topology, cpu);
        std::uint32_t domain = topology.place(cpu).node;
        if (apic_id <= kMaxXApicId) {
            srat.u8(0); // Processor Local APIC/SAPIC Affinity
            srat.u8(16);
            srat.u8(static_cast<std::uint8_t>(domain));
            srat.u8(static_cast<std::uint8_t>(apic_id));
            srat.u32(kEnabled);
            srat.u8(0); // local SAPIC EID
            for (int shift : {8, 16, 24})
                srat.u8(static_cast<std::uint8_t>(domain >> shift));
            srat.u32(0); // clock domain
        } else {
            srat.u8(2); // Processor Local x2APIC Affinity
            srat.u8(24);
            srat.u16(0);
            srat.u32(domain);
            srat.u32(apic_id);
            srat.u32(kEnabled);
            srat.u32(0); // clock domain
            srat.u32(0);
        }
    }
    for (const NumaMemoryRange& range : config.memory) {
        srat.u8(1); // Memory Affinity
        srat.u8(40);
        srat.u32(range.node);
        srat.u16(0);
        srat.u64(range.start.raw());
        srat.u64(range.size);
        srat.u32(0);
        srat.u32(kEnabled);
        srat.u64(0);
    }
    return finish_table(std::move(srat));
}

std::vector<std::uint8_t> node_distances(const AcpiConfig& config) {
    std::uint32_t nodes = config.topology.nodes();
    if (config.node_distances.empty()) {
        std::vector<std::uint8_t> distances;
        for (std::uint32_t from = 0; from < nodes; ++from)
            for (std::uint32_t to = 0; to < nodes; ++to)
                distances.push_back(static_cast<std::uint8_t>(config.topology.distance(from, to)));
        return distances;
    }
    if (config.node_distances.size() != std::size_t(nodes) * nodes)
        throw UsageError(fmt::format("NUMA distances: {} values for {} nodes, need {}",
                                     config.node_distances.size(), nodes, nodes * nodes));
    for (std::uint32_t from = 0; from < nodes; ++from) {
        for (std::uint32_t to = 0; to < nodes; ++to) {
            std::uint8_t distance = config.node_distances[from * nodes + to];
            // The kernel discards a SLIT whose diagonal is not 10 or that has 10 or less
            // elsewhere.
            bool valid = from == to ? distance == kLocalDistance : distance > kLocalDistance;
            if (!valid)
                throw UsageError(fmt::format("NUMA distance {} from node {} to node {}: must be "
                                             "10 to itself and 11-255 to other nodes",
                                             distance, from, to));
        }
    }
    return config.node_distances;
}

std::vector<std::uint8_t> build_slit(const AcpiConfig& config) {
    ByteWriter slit = begin_table("SLIT", 1);
    slit.u64(config.topology.nodes());
    slit.append(node_distances(config));
    return finish_table(std::move(slit));
}

std::vector<std::uint8_t> build_fadt(GuestAddress facs, GuestAddress dsdt) {
    ByteWriter fadt = begin_table("FACP", 6);
    fadt.u32(0); // FIRMWARE_CTRL and DSDT: the 64-bit fields below take their place
    fadt.u32(0);
    fadt.u8(0);
    fadt.u8(0); // preferred PM profile: unspecified
    fadt.u16(static_cast<std::uint16_t>(kAcpiSciIrq));
    fadt.u32(0); // SMI_CMD: none, so the platform is always in ACPI mode
    fadt.u8(0);  // ACPI_ENABLE
    fadt.u8(0);  // ACPI_DISABLE
    fadt.u8(0);  // S4BIOS_REQ
    fadt.u8(0);  // PSTATE_CNT
    fadt.u32(kAcpiPm1EventPort);
    fadt.u32(0); // PM1b event block
    fadt.u32(kAcpiPm1ControlPort);
    fadt.u32(0); // PM1b control block
    fadt.u32(0); // PM2 control block
    fadt.u32(0); // PM timer: optional since ACPI 5.0A; kvm-clock keeps time
    fadt.u32(0); // GPE0 block: no general-purpose events
    fadt.u32(0); // GPE1 block
    fadt.u8(kPm1EventLength);
    fadt.u8(kPm1ControlLength);
    fadt.u8(0);     // PM2 control length
    fadt.u8(0);     // PM timer length
    fadt.u8(0);     // GPE0 length
    fadt.u8(0);     // GPE1 length
    fadt.u8(0);     // GPE1 base
    fadt.u8(0);     // CST_CNT: no _CST
    fadt.u16(101);  // P_LVL2_LAT above 100: no C2
    fadt.u16(1001); // P_LVL3_LAT above 1000: no C3
    fadt.u16(0);    // FLUSH_SIZE
    fadt.u16(0);    // FLUSH_STRIDE
    fadt.u8(0);     // DUTY_OFFSET
    fadt.u8(0);     // DUTY_WIDTH
    fadt.u8(0);     // DAY_ALRM: no RTC alarm
    fadt.u8(0);     // MON_ALRM
    fadt.u8(0);     // CENTURY
    // IA-PC boot architecture: ISA devices (COM ports, PIT, CMOS RTC), no VGA, and no 8042 for
    // the keyboard driver to probe: the VMM's controller only takes the reset command, which
    // the kernel's reboot path sends without asking the FADT.
    constexpr std::uint16_t kLegacyDevices = 1 << 0, kNoVga = 1 << 2;
    fadt.u16(kLegacyDevices | kNoVga);
    fadt.u8(0);
    // WBINVD works; HLT (C1) works on every vCPU; no fixed-feature power or sleep button (so the
    // kernel does not enable their events); no RTC wake. No reset register: the kernel falls
    // back to the keyboard controller and a triple fault, both visible to the VMM.
    constexpr std::uint32_t kWbinvd = 1 << 0, kProcC1 = 1 << 2, kPowerButtonAbsent = 1 << 4,
                            kSleepButtonAbsent = 1 << 5, kFixedRtcAbsent = 1 << 6;
    fadt.u32(kWbinvd | kProcC1 | kPowerButtonAbsent | kSleepButtonAbsent | kFixedRtcAbsent);
    io_block(fadt, 0, 0); // reset register
    fadt.u8(0);           // reset value
    fadt.u16(0);          // ARM boot architecture
    fadt.u8(3);           // minor version: ACPI 6.3
    fadt.u64(facs.raw());
    fadt.u64(dsdt.raw());
    io_block(fadt, kAcpiPm1EventPort, kPm1EventLength);
    io_block(fadt, 0, 0); // PM1b event block
    io_block(fadt, kAcpiPm1ControlPort, kPm1ControlLength);
    io_block(fadt, 0, 0); // PM1b control block
    io_block(fadt, 0, 0); // PM2 control block
    io_block(fadt, 0, 0); // PM timer
    io_block(fadt, 0, 0); // GPE0 block
    io_block(fadt, 0, 0); // GPE1 block
    io_block(fadt, 0, 0); // sleep control register: hardware-reduced platforms only
    io_block(fadt, 0, 0); // sleep status register
    fadt.u64(0);          // hypervisor vendor identity
    return finish_table(std::move(fadt));
}

std::vector<std::uint8_t> build_xsdt(const std::vector<GuestAddress>& tables) {
    ByteWriter xsdt = begin_table("XSDT", 1);
    for (GuestAddress table : tables)
        xsdt.u64(table.raw());
    return finish_table(std::move(xsdt));
}

std::vector<std::uint8_t> build_rsdp(GuestAddress xsdt) {
    ByteWriter rsdp;
    rsdp.text("RSD PTR ");
    rsdp.u8(0); // checksum of the first 20 bytes
    rsdp.text(kOemId);
    rsdp.u8(2);  // revision: ACPI 2.0+, with the XSDT
    rsdp.u32(0); // RSDT: none, the XSDT replaces it
    rsdp.u32(kRsdpSize);
    rsdp.u64(xsdt.raw());
    rsdp.u8(0); // checksum of all 36 bytes
    rsdp.zeros(3);
    std::vector<std::uint8_t> bytes = rsdp.take();
    bytes[8] = checksum_for(std::span(bytes).first(kRsdpV1Size));
    bytes[32] = checksum_for(bytes);
    return bytes;
}

void check_config(const AcpiConfig& config, GuestAddress base) {
    if (base.raw() % 16 != 0)
        throw Error(
            fmt::format("ACPI tables at {:#x}: the RSDP must be 16-byte aligned", base.raw()));
    if (config.memory.empty())
        throw Error("ACPI tables: no guest memory to describe");
    for (const NumaMemoryRange& range : config.memory) {
        if (range.node >= config.topology.nodes())
            throw Error(fmt::format("guest memory {:#x}+{:#x} is on NUMA node {}, but topology "
                                    "{} has {} nodes",
                                    range.start.raw(), range.size, range.node,
                                    config.topology.to_string(), config.topology.nodes()));
        if (range.size == 0)
            throw Error(fmt::format("guest memory at {:#x} is empty", range.start.raw()));
    }
    std::set<std::uint32_t> taken{kPitIrq, kPitGsi, kAcpiSciIrq};
    for (const VirtioMmioDevice& virtio : config.virtio_mmio) {
        if (virtio.gsi >= kIoApicPins)
            throw Error(fmt::format("virtio-mmio device at {:#x}: GSI {} is beyond the IOAPIC's "
                                    "{} pins",
                                    virtio.base.raw(), virtio.gsi, kIoApicPins));
        if (!taken.insert(virtio.gsi).second)
            throw Error(fmt::format("virtio-mmio device at {:#x}: GSI {} is already taken (the "
                                    "PIT has 0 and 2, the SCI {})",
                                    virtio.base.raw(), virtio.gsi, kAcpiSciIrq));
    }
}

} // namespace

std::span<const std::uint8_t> AcpiTables::table(std::string_view signature) const {
    for (const AcpiTableLocation& location : tables)
        if (location.signature == signature)
            return std::span(bytes).subspan(location.offset, location.length);
    throw Error(fmt::format("no ACPI table '{}'", signature));
}

AcpiTables build_acpi_tables(const AcpiConfig& config, GuestAddress base) {
    check_config(config, base);
    AcpiTables tables{base, GuestAddress(), {}, {}};
    // Each table goes at the next suitably aligned guest address. The RSDP comes first, where a
    // scan of the BIOS area finds it; the tables that point at others come after their targets
    // so that every address is known when a table is built.
    auto place = [&](std::string_view signature, const std::vector<std::uint8_t>& table,
                     std::uint64_t alignment) {
        std::uint64_t end = base.raw() + tables.bytes.size();
        std::uint64_t offset = (end + alignment - 1) / alignment * alignment - base.raw();
        tables.bytes.resize(offset);
        tables.bytes.insert(tables.bytes.end(), table.begin(), table.end());
        tables.tables.push_back({std::string(signature), offset, table.size()});
        return base + offset;
    };
    tables.rsdp = place("RSD PTR ", std::vector<std::uint8_t>(kRsdpSize), 16);
    GuestAddress facs = place("FACS", build_facs(), 64);
    GuestAddress dsdt = place("DSDT", build_dsdt(config), 16);
    GuestAddress madt = place("APIC", build_madt(config.topology), 16);
    GuestAddress srat = place("SRAT", build_srat(config), 16);
    GuestAddress slit = place("SLIT", build_slit(config), 16);
    GuestAddress fadt = place("FACP", build_fadt(facs, dsdt), 16);
    GuestAddress xsdt = place("XSDT", build_xsdt({fadt, madt, srat, slit}), 16);
    std::vector<std::uint8_t> rsdp = build_rsdp(xsdt);
    std::copy(rsdp.begin(), rsdp.end(), tables.bytes.begin() + tables.rsdp.offset_from(base));
    return tables;
}

} // namespace ktstr
