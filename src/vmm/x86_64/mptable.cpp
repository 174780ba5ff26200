#include "ktstr/vmm/x86_64/mptable.hpp"

#include "ktstr/base/byte_writer.hpp"
#include "ktstr/base/error.hpp"
#include "ktstr/vmm/x86_64/apic_id.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"

#include <fmt/format.h>

namespace ktstr {

namespace {

constexpr std::size_t kFloatingPointerSize = 16;
constexpr std::size_t kConfigHeaderSize = 44;
constexpr std::uint8_t kSpecRevision = 4; // 1.4

// Entry types of the configuration table.
constexpr std::uint8_t kProcessorEntry = 0;
constexpr std::uint8_t kBusEntry = 1;
constexpr std::uint8_t kIoApicEntry = 2;
constexpr std::uint8_t kIoInterruptEntry = 3;
constexpr std::uint8_t kLocalInterruptEntry = 4;

constexpr std::uint8_t kLocalApicVersion = 0x14;
constexpr std::uint8_t kIoApicId = 0;
constexpr std::uint8_t kIoApicVersion = 0x11;
constexpr std::uint8_t kProcessorEnabled = 1, kBootstrapProcessor = 2;
constexpr std::uint8_t kIsaBus = 0;

// Interrupt types; flags 0 conform to the bus (ISA: edge, active high).
constexpr std::uint8_t kVectoredInterrupt = 0, kNmi = 1, kExtInt = 3;
constexpr std::uint16_t kConformingFlags = 0;
constexpr std::uint8_t kAllLocalApics = 0xff;

constexpr std::uint8_t kIsaIrqs = 16;
constexpr std::uint8_t kCascadeIrq = 2; // the slave 8259's input; IRQ 0 takes its pin
constexpr std::uint8_t kPitIrq = 0, kPitPin = 2;

constexpr std::uint32_t kMaxXApicId = 254;

void interrupt_entry(ByteWriter& table, std::uint8_t entry_type, std::uint8_t interrupt_type,
                     std::uint8_t source_irq, std::uint8_t destination, std::uint8_t pin) {
    table.u8(entry_type);
    table.u8(interrupt_type);
    table.u16(kConformingFlags);
    table.u8(kIsaBus);
    table.u8(source_irq);
    table.u8(destination);
    table.u8(pin);
}

} // namespace

std::vector<std::uint8_t> build_mp_table(const Topology& topology, GuestAddress base,
                                         MpProcessorSignature processor) {
    if (max_apic_id(topology) > kMaxXApicId)
        throw Error(fmt::format("topology {}: APIC ID {} does not fit an MP table",
                                topology.to_string(), max_apic_id(topology)));
    if (base.raw() % 16 != 0 || base.raw() + kFloatingPointerSize > 0xffffffff)
        throw Error(
            fmt::format("MP table base {:#x} is not 16-byte aligned below 4 GiB", base.raw()));

    ByteWriter entries;
    std::uint16_t entry_count = 0;
    for (std::uint32_t cpu = 0; cpu < topology.cpus(); ++cpu) {
        entries.u8(kProcessorEntry);
        entries.u8(static_cast<std::uint8_t>(apic_id_of(topology, cpu)));
        entries.u8(kLocalApicVersion);
        entries.u8(kProcessorEnabled | (cpu == 0 ? kBootstrapProcessor : 0));
        entries.u32(processor.signature);
        entries.u32(processor.features);
        entries.zeros(8);
        ++entry_count;
    }
    entries.u8(kBusEntry);
    entries.u8(kIsaBus);
    entries.text("ISA   ");
    ++entry_count;
    entries.u8(kIoApicEntry);
    entries.u8(kIoApicId);
    entries.u8(kIoApicVersion);
    entries.u8(1); // usable
    entries.u32(static_cast<std::uint32_t>(x86_64::kIoapic.raw()));
    ++entry_count;
    for (std::uint8_t irq = 0; irq < kIsaIrqs; ++irq) {
        if (irq == kCascadeIrq)
            continue;
        interrupt_entry(entries, kIoInterruptEntry, kVectoredInterrupt, irq, kIoApicId,
                        irq == kPitIrq ? kPitPin : irq);
        ++entry_count;
    }
    interrupt_entry(entries, kLocalInterruptEntry, kExtInt, 0, kAllLocalApics, 0);
    interrupt_entry(entries, kLocalInterruptEntry, kNmi, 0, kAllLocalApics, 1);
    entry_count += 2;
    std::vector<std::uint8_t> body = entries.take();

    ByteWriter config;
    config.text("PCMP");
    config.u16(static_cast<std::uint16_t>(kConfigHeaderSize + body.size()));
    config.u8(kSpecRevision);
    config.u8(0); // checksum
    config.text("KTSTR   ");
    config.text("KTSTRVM     ");
    config.u32(0); // no OEM table
    config.u16(0);
    config.u16(entry_count);
    config.u32(static_cast<std::uint32_t>(x86_64::kLocalApic.raw()));
    config.u16(0); // no extended entries
    config.u8(0);
    config.u8(0);
    config.append(body);
    std::vector<std::uint8_t> config_bytes = config.take();
    config_bytes[7] = checksum_for(config_bytes);

    ByteWriter pointer;
    pointer.text("_MP_");
    pointer.u32(static_cast<std::uint32_t>(base.raw() + kFloatingPointerSize));
    pointer.u8(1); // length in 16-byte units
    pointer.u8(kSpecRevision);
    pointer.u8(0); // checksum
    pointer.u8(0); // feature 1: the configuration table is there, not a default one
    pointer.u8(0); // feature 2: no IMCR, virtual wire mode
    pointer.zeros(3);
    std::vector<std::uint8_t> bytes = pointer.take();
    bytes[10] = checksum_for(bytes);
    bytes.insert(bytes.end(), config_bytes.begin(), config_bytes.end());
    return bytes;
}

} // namespace ktstr
