#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/vmm/x86_64/acpi.hpp"
#include "ktstr/vmm/x86_64/aml.hpp"
#include "ktstr/vmm/x86_64/apic_id.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"
#include "test_support.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <fmt/format.h>
#include <set>
#include <sstream>

using namespace ktstr;

namespace {

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kNodeMemory = 512 * kMiB;
constexpr std::uint64_t kHighMemory = 4096 * kMiB;

std::uint64_t read_le(std::span<const std::uint8_t> bytes, std::size_t offset, int size) {
    std::uint64_t value = 0;
    for (int i = size - 1; i >= 0; --i)
        value = value << 8 | bytes[offset + i];
    return value;
}

std::uint8_t byte_sum(std::span<const std::uint8_t> bytes) {
    std::uint8_t sum = 0;
    for (std::uint8_t byte : bytes)
        sum = static_cast<std::uint8_t>(sum + byte);
    return sum;
}

// 512 MiB per node from address 0, plus 512 MiB more for node 0 above 4 GiB; three virtio-mmio
// devices in the 32-bit hole, level- and edge-triggered.
AcpiConfig test_config(const Topology& topology) {
    std::vector<NumaMemoryRange> memory;
    for (std::uint32_t node = 0; node < topology.nodes(); ++node)
        memory.push_back({GuestAddress(node * kNodeMemory), kNodeMemory, node});
    memory.push_back({GuestAddress(kHighMemory), kNodeMemory, 0});
    std::vector<VirtioMmioDevice> virtio;
    for (std::uint32_t i = 0; i < 3; ++i)
        virtio.push_back({GuestAddress(0xD000'0000 + i * 0x200), 0x200, 5 + i,
                          i == 1 ? IrqTrigger::edge : IrqTrigger::level});
    return {topology, memory, virtio, {}};
}

// The fields of an iasl data-table disassembly, "[offset length] Name : Value", in order.
class Disassembly {
  public:
    explicit Disassembly(std::string text) : text_(std::move(text)) {
        std::istringstream lines(text_);
        for (std::string line; std::getline(lines, line);) {
            auto close = line.find(']');
            auto colon = line.find(" : ", close);
            if (line.empty() || line[0] != '[' || close == std::string::npos ||
                colon == std::string::npos)
                continue;
            std::string name = line.substr(close + 1, colon - close - 1);
            name.erase(0, name.find_first_not_of(' '));
            fields_.emplace_back(name, line.substr(colon + 3));
        }
    }
    const std::string& text() const { return text_; }
    // The leading hex number of every field called `name`.
    std::vector<std::uint64_t> numbers(std::string_view name) const {
        std::vector<std::uint64_t> found;
        for (const auto& [field, value] : fields_)
            if (field == name)
                found.push_back(std::stoull(value, nullptr, 16));
        return found;
    }
    std::uint64_t number(std::string_view name) const {
        auto found = numbers(name);
        REQUIRE(found.size() == 1);
        return found[0];
    }
    // Every hex byte of the field called `name`, e.g. a SLIT row "0A 14".
    std::vector<std::uint64_t> row(std::string_view name) const {
        for (const auto& [field, value] : fields_) {
            if (field != name)
                continue;
            std::istringstream tokens(value);
            std::vector<std::uint64_t> bytes;
            for (std::string token; tokens >> token;)
                bytes.push_back(std::stoull(token, nullptr, 16));
            return bytes;
        }
        FAIL("no field " << name);
        return {};
    }
    std::size_t count(std::string_view needle) const {
        std::size_t found = 0;
        for (auto at = text_.find(needle); at != std::string::npos; at = text_.find(needle, at + 1))
            ++found;
        return found;
    }

  private:
    std::string text_;
    std::vector<std::pair<std::string, std::string>> fields_;
};

std::string quote(const std::filesystem::path& path) { return "'" + path.string() + "'"; }

// Runs iasl and requires it to succeed without a word of complaint.
void run_iasl(const std::string& arguments) {
    auto result = test::run_shell("iasl " + arguments);
    std::string output = result.out + result.err;
    INFO("iasl " << arguments << "\n" << output);
    REQUIRE(result.exit_code == 0);
    CHECK(output.find("Error") == std::string::npos);
    CHECK(output.find("Warning") == std::string::npos);
}

// Compiles ASL (code or data-table source) and returns the binary. Name paths stay as written
// (iasl would shorten "\_SB" at the root to "_SB").
std::vector<std::uint8_t> compile(const TempDir& dir, const std::string& name,
                                  const std::string& source) {
    auto source_path = dir.path() / (name + ".asl");
    write_file_atomic(source_path, source);
    auto result =
        test::run_shell("iasl -on -p " + quote(dir.path() / name) + " " + quote(source_path));
    std::string output = result.out + result.err;
    INFO(source << "\n" << output);
    REQUIRE(result.exit_code == 0);
    CHECK(output.find("Compilation successful. 0 Errors, 0 Warnings, 0 Remarks") !=
          std::string::npos);
    return read_binary_file(dir.path() / (name + ".aml"));
}

// Disassembles a table with iasl -d, requiring a clean run, then compiles the disassembly back
// and requires the same bytes but for the checksum and the compiler ID and revision, which
// iasl rewrites: every byte of the table means what the disassembly says.
Disassembly disassemble(const TempDir& dir, std::span<const std::uint8_t> table) {
    std::string name(reinterpret_cast<const char*>(table.data()), 4);
    INFO("table " << name);
    write_file_atomic(dir.path() / (name + ".dat"), table);
    run_iasl("-d " + quote(dir.path() / (name + ".dat")));
    std::string text = read_file(dir.path() / (name + ".dsl"));
    auto again = compile(dir, name + "-again", text);
    REQUIRE(again.size() == table.size());
    for (std::size_t i = 0; i < table.size(); ++i) {
        bool rewritten = i == 9 || (name != "FACS" && i >= 28 && i < 36);
        if (!rewritten && again[i] != table[i])
            FAIL(fmt::format("byte {:#x} is {:#04x}, {:#04x} after iasl -d and back", i, table[i],
                             again[i]));
    }
    return Disassembly(std::move(text));
}

std::size_t offset_of(const AcpiTables& tables, std::uint64_t address) {
    REQUIRE(address >= tables.base.raw());
    REQUIRE(address - tables.base.raw() < tables.bytes.size());
    return address - tables.base.raw();
}

std::string signature_at(const AcpiTables& tables, std::uint64_t address) {
    std::size_t offset = offset_of(tables, address);
    return std::string(reinterpret_cast<const char*>(tables.bytes.data()) + offset, 4);
}

// The blob on its own terms: every table inside it, apart and checksummed, and every pointer
// from the RSDP down landing on the table it should.
void check_layout(const AcpiTables& tables) {
    CHECK(tables.bytes.size() <= x86_64::kAcpiTablesMax); // also for 252 vCPUs
    std::set<std::string> signatures;
    std::uint64_t end = 0;
    for (const AcpiTableLocation& location : tables.tables) {
        INFO(location.signature);
        signatures.insert(location.signature);
        CHECK(location.offset >= end);
        end = location.offset + location.length;
        REQUIRE(end <= tables.bytes.size());
        auto table = tables.table(location.signature);
        if (location.signature == "RSD PTR " || location.signature == "FACS")
            continue;
        CHECK(std::string(table.begin(), table.begin() + 4) == location.signature);
        CHECK(read_le(table, 4, 4) == location.length);
        CHECK(byte_sum(table) == 0);
    }
    CHECK(signatures == std::set<std::string>{"RSD PTR ", "XSDT", "FACP", "FACS", "DSDT", "APIC",
                                              "SRAT", "SLIT"});

    auto rsdp = tables.table("RSD PTR ");
    CHECK(tables.rsdp.raw() % 16 == 0);
    CHECK(tables.rsdp == tables.base + (rsdp.data() - tables.bytes.data()));
    CHECK(std::string(rsdp.begin(), rsdp.begin() + 8) == "RSD PTR ");
    CHECK(byte_sum(rsdp.first(20)) == 0);
    CHECK(byte_sum(rsdp) == 0);
    CHECK(rsdp[15] == 2);
    CHECK(read_le(rsdp, 20, 4) == 36);

    std::uint64_t xsdt_address = read_le(rsdp, 24, 8);
    REQUIRE(signature_at(tables, xsdt_address) == "XSDT");
    auto xsdt = tables.table("XSDT");
    CHECK(xsdt.data() == tables.bytes.data() + offset_of(tables, xsdt_address));
    std::vector<std::string> pointed;
    for (std::size_t at = 36; at < xsdt.size(); at += 8)
        pointed.push_back(signature_at(tables, read_le(xsdt, at, 8)));
    CHECK(pointed == std::vector<std::string>{"FACP", "APIC", "SRAT", "SLIT"});

    auto fadt = tables.table("FACP");
    CHECK(fadt.size() == 276);
    CHECK(signature_at(tables, read_le(fadt, 140, 8)) == "DSDT");
    std::uint64_t facs_address = read_le(fadt, 132, 8);
    CHECK(signature_at(tables, facs_address) == "FACS");
    CHECK(facs_address % 64 == 0);
    CHECK(read_le(tables.table("FACS"), 4, 4) == 64);
}

// The RSDP as iasl's data-table compiler writes it, checksums and all.
std::string rsdp_source(std::uint64_t xsdt_address) {
    return fmt::format("[0008] Signature : \"RSD PTR \"\n"
                       "[0001] Checksum : 00\n"
                       "[0006] Oem ID : \"KTSTR \"\n"
                       "[0001] Revision : 02\n"
                       "[0004] RSDT Address : 00000000\n"
                       "[0004] Length : 00000024\n"
                       "[0008] XSDT Address : {:016X}\n"
                       "[0001] Extended Checksum : 00\n"
                       "[0003] Reserved : 000000\n",
                       xsdt_address);
}

// The ASL the DSDT should be the compiled form of.
std::string dsdt_source(const std::vector<VirtioMmioDevice>& devices) {
    std::string source = "DefinitionBlock (\"\", \"DSDT\", 2, \"KTSTR\", \"KTSTRVM\", 1)\n{\n"
                         "    Name (_S5, Package () { 0, 0, 0, 0 })\n"
                         "    Scope (\\_SB)\n    {\n";
    for (std::size_t i = 0; i < devices.size(); ++i) {
        const VirtioMmioDevice& device = devices[i];
        source += fmt::format(
            "        Device (VR{:02X})\n        {{\n"
            "            Name (_HID, \"LNRO0005\")\n"
            "            Name (_UID, {})\n"
            "            Name (_CRS, ResourceTemplate ()\n            {{\n"
            "                Memory32Fixed (ReadWrite, {:#x}, {:#x})\n"
            "                Interrupt (ResourceConsumer, {}, ActiveHigh, Exclusive) {{ {} }}\n"
            "            }})\n        }}\n",
            i, i, device.base.raw(), device.size,
            device.trigger == IrqTrigger::level ? "Level" : "Edge", device.gsi);
    }
    return source + "    }\n}\n";
}

} // namespace

TEST_CASE("ACPI tables pass iasl and describe the topology", "[acpi]") {
    std::string text = GENERATE("1n1l1c1t", "1n2l2c2t", "2n4l2c2t", "4n12l8c2t", "1n14l9c2t");
    CAPTURE(text);
    Topology topology = Topology::parse(text);
    AcpiConfig config = test_config(topology);
    AcpiTables tables = build_acpi_tables(config, x86_64::kAcpiTables);
    CHECK(tables.base == x86_64::kAcpiTables);
    check_layout(tables);

    std::vector<std::uint64_t> xapic_ids, x2apic_ids, xapic_nodes, x2apic_nodes, x2apic_uids;
    for (std::uint32_t cpu = 0; cpu < topology.cpus(); ++cpu) {
        std::uint32_t id = apic_id_of(topology, cpu);
        std::uint32_t node = topology.place(cpu).node;
        (id <= 254 ? xapic_ids : x2apic_ids).push_back(id);
        (id <= 254 ? xapic_nodes : x2apic_nodes).push_back(node);
        if (id > 254)
            x2apic_uids.push_back(cpu);
    }
    CHECK(x2apic_ids.empty() == !needs_x2apic(topology));

    TempDir dir("acpi-test");
    Disassembly madt = disassemble(dir, tables.table("APIC"));
    CHECK(madt.number("Revision") == 5);
    CHECK(madt.number("Local Apic Address") == 0xFEE00000);
    CHECK(madt.count("[Processor Local APIC]") == xapic_ids.size());
    CHECK(madt.count("[Processor Local x2APIC]") == x2apic_ids.size());
    CHECK(madt.numbers("Local Apic ID") == xapic_ids);
    CHECK(madt.numbers("Processor x2Apic ID") == x2apic_ids);
    std::vector<std::uint64_t> nmi_uids = x2apic_uids;
    if (!x2apic_ids.empty())
        nmi_uids.push_back(0xFFFFFFFF); // the x2APIC NMI entry, for every processor
    CHECK(madt.numbers("Processor UID") == nmi_uids);
    CHECK(madt.count("[I/O APIC]") == 1);
    CHECK(madt.number("Address") == 0xFEC00000);
    CHECK(madt.numbers("Source") == std::vector<std::uint64_t>{0, 9});
    // The IOAPIC's GSI base, then the overrides: IRQ 0 to GSI 2 and the SCI, level-high.
    CHECK(madt.numbers("Interrupt") == std::vector<std::uint64_t>{0, 2, 9});
    auto flags_tail = madt.numbers("Flags (decoded below)");
    std::vector<std::uint64_t> source_and_nmi_flags{0, 0x000D, 0}; // conforming, level-high
    if (!x2apic_ids.empty())
        source_and_nmi_flags.push_back(0);
    REQUIRE(flags_tail.size() > source_and_nmi_flags.size());
    flags_tail.erase(flags_tail.begin(), flags_tail.end() - source_and_nmi_flags.size());
    CHECK(flags_tail == source_and_nmi_flags);
    CHECK(madt.numbers("Interrupt Input LINT") ==
          std::vector<std::uint64_t>(x2apic_ids.empty() ? 1 : 2, 1));

    Disassembly srat = disassemble(dir, tables.table("SRAT"));
    CHECK(srat.number("Table Revision") == 1);
    CHECK(srat.count("[Processor Local APIC/SAPIC Affinity]") == xapic_ids.size());
    CHECK(srat.count("[Processor Local x2APIC Affinity]") == x2apic_ids.size());
    std::vector<std::uint64_t> all_ids = xapic_ids;
    all_ids.insert(all_ids.end(), x2apic_ids.begin(), x2apic_ids.end());
    CHECK(srat.numbers("Apic ID") == all_ids);
    CHECK(srat.numbers("Proximity Domain Low(8)") == xapic_nodes);
    std::vector<std::uint64_t> domains = x2apic_nodes, bases, lengths;
    for (const NumaMemoryRange& range : config.memory) {
        domains.push_back(range.node);
        bases.push_back(range.start.raw());
        lengths.push_back(range.size);
    }
    CHECK(srat.numbers("Proximity Domain") == domains);
    CHECK(srat.numbers("Base Address") == bases);
    CHECK(srat.numbers("Address Length") == lengths);
    std::set<std::uint64_t> nodes(xapic_nodes.begin(), xapic_nodes.end());
    nodes.insert(x2apic_nodes.begin(), x2apic_nodes.end());
    CHECK(nodes.size() == topology.nodes());

    Disassembly slit = disassemble(dir, tables.table("SLIT"));
    CHECK(slit.number("Localities") == topology.nodes());
    for (std::uint32_t from = 0; from < topology.nodes(); ++from) {
        std::vector<std::uint64_t> expected;
        for (std::uint32_t to = 0; to < topology.nodes(); ++to)
            expected.push_back(topology.distance(from, to));
        CHECK(slit.row(fmt::format("Locality {:3}", from)) == expected);
    }

    Disassembly fadt = disassemble(dir, tables.table("FACP"));
    CHECK(fadt.number("Revision") == 6);
    CHECK(fadt.number("FADT Minor Revision") == 3);
    // The 32-bit DSDT and FACS pointers are zero; the 64-bit ones lead to the tables.
    CHECK(fadt.numbers("DSDT Address") ==
          std::vector<std::uint64_t>{0, tables.base.raw() +
                                            (tables.table("DSDT").data() - tables.bytes.data())});
    CHECK(fadt.numbers("FACS Address") ==
          std::vector<std::uint64_t>{0, tables.base.raw() +
                                            (tables.table("FACS").data() - tables.bytes.data())});
    CHECK(fadt.number("SCI Interrupt") == kAcpiSciIrq);
    CHECK(fadt.number("SMI Command Port") == 0);
    CHECK(fadt.number("PM1A Event Block Address") == kAcpiPm1EventPort);
    CHECK(fadt.number("PM1A Control Block Address") == kAcpiPm1ControlPort);
    CHECK(fadt.number("PM1 Event Block Length") == 4);
    CHECK(fadt.number("PM1 Control Block Length") == 2);
    // The 64-bit blocks say the same, their widths matching the lengths (else ACPICA warns).
    // Reset, PM1a/b event, PM1a/b control, PM2, PM timer, GPE0/1, sleep control and status.
    CHECK(fadt.numbers("Address") == std::vector<std::uint64_t>{0, kAcpiPm1EventPort, 0,
                                                                kAcpiPm1ControlPort, 0, 0, 0, 0, 0,
                                                                0, 0});
    CHECK(fadt.numbers("Bit Width") ==
          std::vector<std::uint64_t>{0, 32, 0, 16, 0, 0, 0, 0, 0, 0, 0});
    std::uint64_t boot_flags = fadt.numbers("Boot Flags (decoded below)").at(0);
    CHECK(boot_flags == (1 << 0 | 1 << 2)); // ISA devices, no VGA; no 8042 to probe
    std::uint64_t flags = fadt.numbers("Flags (decoded below)").at(0);
    CHECK((flags & 1 << 20) == 0); // not hardware-reduced: the PIC and PIT stay
    CHECK((flags & 1 << 10) == 0); // no reset register
    CHECK((flags & (1 << 4 | 1 << 5)) == (1 << 4 | 1 << 5)); // no fixed-feature buttons

    Disassembly facs = disassemble(dir, tables.table("FACS"));
    CHECK(facs.number("Length") == 64);
    CHECK(facs.number("Version") == 2);

    Disassembly xsdt = disassemble(dir, tables.table("XSDT"));
    CHECK(xsdt.count("ACPI Table Address") == 4);

    Disassembly dsdt = disassemble(dir, tables.table("DSDT"));
    CHECK(dsdt.count("Name (_S5, Package (0x04)") == 1);
    CHECK(dsdt.count("Name (_HID, \"LNRO0005\")") == config.virtio_mmio.size());
    CHECK(dsdt.count("Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive, ,, )") == 2);
    CHECK(dsdt.count("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )") == 1);
    for (const VirtioMmioDevice& device : config.virtio_mmio) {
        CHECK(dsdt.count(fmt::format("0x{:08X},", device.base.raw())) == 1);
        CHECK(dsdt.count(fmt::format("0x{:08X},", device.gsi)) == 1);
    }

    // iasl cannot disassemble an RSDP, but it can write one, computing both checksums.
    std::uint64_t xsdt_address = read_le(tables.table("RSD PTR "), 24, 8);
    auto rsdp = compile(dir, "rsdp", rsdp_source(xsdt_address));
    auto ours = tables.table("RSD PTR ");
    CHECK(std::vector<std::uint8_t>(ours.begin(), ours.end()) == rsdp);
}

TEST_CASE("the DSDT is what iasl compiles from the same ASL", "[acpi]") {
    Topology topology = Topology::parse("1n1l1c1t");
    AcpiConfig config{topology, {{GuestAddress(0), 256 * kMiB, 0}}, {}, {}};
    // Every free IOAPIC pin, so that _UID takes every integer encoding from ZeroOp to a byte
    // and the scope grows past 63 bytes.
    for (std::uint32_t gsi = 1; gsi < kIoApicPins; ++gsi)
        if (gsi != 2 && gsi != kAcpiSciIrq)
            config.virtio_mmio.push_back({GuestAddress(0xFEB0'0000 - gsi * 0x1000), 0x1000, gsi,
                                          gsi % 3 ? IrqTrigger::edge : IrqTrigger::level});
    REQUIRE(config.virtio_mmio.size() == 21);
    AcpiTables tables = build_acpi_tables(config, GuestAddress(0x10'0000));
    auto dsdt = tables.table("DSDT");

    TempDir dir("acpi-dsdt-test");
    auto compiled = compile(dir, "dsdt", dsdt_source(config.virtio_mmio));
    REQUIRE(compiled.size() == dsdt.size());
    // The header's checksum and compiler fields differ; the AML after it must not.
    CHECK(std::vector<std::uint8_t>(dsdt.begin() + 36, dsdt.end()) ==
          std::vector<std::uint8_t>(compiled.begin() + 36, compiled.end()));
}

TEST_CASE("AML encodings match iasl's, one- to three-byte package lengths", "[acpi]") {
    // A device whose resource template is long enough for three-byte package lengths,
    // integers at every size boundary, and nested packages.
    std::vector<aml::Bytes> descriptors;
    std::string asl_descriptors;
    for (std::uint32_t i = 0; i < 400; ++i) {
        descriptors.push_back(aml::memory32_fixed(GuestAddress(0x1000 * i), 0x1000));
        asl_descriptors += fmt::format("Memory32Fixed (ReadWrite, {:#x}, 0x1000)\n", 0x1000 * i);
    }
    const std::uint64_t integers[] = {0,      1,       2,          0xFF,       0x100,
                                      0xFFFF, 0x10000, 0xFFFFFFFF, 1ull << 32, 0x123456789ABCDEF0};
    std::vector<aml::Bytes> terms;
    std::string asl_terms;
    for (std::size_t i = 0; i < std::size(integers); ++i) {
        terms.push_back(aml::name(fmt::format("I{:03}", i), aml::integer(integers[i])));
        asl_terms += fmt::format("Name (I{:03}, {:#x})\n", i, integers[i]);
    }
    terms.push_back(aml::name("PKG0", aml::package({aml::integer(1), aml::string("S"),
                                                    aml::package({aml::integer(0x1234)})})));
    asl_terms += "Name (PKG0, Package () { 1, \"S\", Package () { 0x1234 } })\n";
    terms.push_back(aml::device("BIG0", {aml::name("_HID", aml::string("LNRO0005")),
                                         aml::name("_CRS", aml::resource_template(descriptors))}));
    asl_terms += "Device (BIG0) { Name (_HID, \"LNRO0005\")\n"
                 "Name (_CRS, ResourceTemplate () {\n" +
                 asl_descriptors + "}) }\n";
    aml::Bytes ours = aml::scope("\\_SB", terms);

    TempDir dir("aml-test");
    auto compiled = compile(dir, "aml",
                            "DefinitionBlock (\"\", \"SSDT\", 2, \"KTSTR\", \"KTSTRVM\", 1)\n"
                            "{ Scope (\\_SB) {\n" +
                                asl_terms + "} }\n");
    CHECK(ours.size() > 4096);
    CHECK(std::vector<std::uint8_t>(compiled.begin() + 36, compiled.end()) == ours);

    // The boundaries of each form: 63 in one byte; 4095 in two; 2^20 - 1 in three.
    CHECK(aml::package_length(62) == aml::Bytes{0x3F});
    CHECK(aml::package_length(63) == aml::Bytes{0x41, 0x04});
    CHECK(aml::package_length(4093) == aml::Bytes{0x4F, 0xFF});
    CHECK(aml::package_length(4094) == aml::Bytes{0x81, 0x00, 0x01});
    CHECK(aml::package_length((1 << 20) - 4) == aml::Bytes{0x8F, 0xFF, 0xFF});
    CHECK(aml::package_length((1 << 20) - 3) == aml::Bytes{0xC1, 0x00, 0x00, 0x01});
    CHECK_THROWS_AS(aml::package_length((1 << 28) - 4), Error);
    CHECK_THROWS_AS(aml::package(std::vector<aml::Bytes>(256, aml::integer(0))), Error);
    CHECK_THROWS_AS(aml::name("TOOLONG", aml::integer(0)), Error);
    CHECK_THROWS_AS(aml::name("1ABC", aml::integer(0)), Error);
    CHECK_THROWS_AS(aml::memory32_fixed(GuestAddress(0xFFFF'F000), 0x2000), Error);
}

TEST_CASE("an explicit distance matrix goes into the SLIT", "[acpi]") {
    Topology topology = Topology::parse("2n2l1c1t");
    AcpiConfig config = test_config(topology);
    config.node_distances = {10, 15, 21, 10};
    AcpiTables tables = build_acpi_tables(config, x86_64::kAcpiTables);
    check_layout(tables);
    TempDir dir("acpi-slit-test");
    Disassembly slit = disassemble(dir, tables.table("SLIT"));
    CHECK(slit.number("Localities") == 2);
    CHECK(slit.row("Locality   0") == std::vector<std::uint64_t>{0x0A, 0x0F});
    CHECK(slit.row("Locality   1") == std::vector<std::uint64_t>{0x15, 0x0A});
}

TEST_CASE("iasl complains about a table with a bad checksum", "[acpi]") {
    // The iasl checks above can fail: a corrupted table does not pass them.
    Topology topology = Topology::parse("2n2l1c1t");
    AcpiTables tables = build_acpi_tables(test_config(topology), x86_64::kAcpiTables);
    auto slit = tables.table("SLIT");
    std::vector<std::uint8_t> corrupted(slit.begin(), slit.end());
    corrupted.back() = 11;
    TempDir dir("acpi-bad-test");
    write_file_atomic(dir.path() / "SLIT.dat", corrupted);
    auto result = test::run_shell("iasl -d " + quote(dir.path() / "SLIT.dat"));
    CHECK(result.exit_code == 0);
    CHECK((result.out + result.err).find("Warning") != std::string::npos);
}

TEST_CASE("inconsistent ACPI configurations are refused", "[acpi]") {
    Topology topology = Topology::parse("2n2l1c1t");
    auto build_with = [&](auto change) {
        AcpiConfig config = test_config(topology);
        change(config);
        return build_acpi_tables(config, x86_64::kAcpiTables);
    };
    for (std::uint32_t gsi : {0u, 2u, kAcpiSciIrq, 6u, kIoApicPins})
        CHECK_THROWS_AS(build_with([&](AcpiConfig& c) { c.virtio_mmio[0].gsi = gsi; }), Error);
    CHECK_THROWS_AS(
        build_with([](AcpiConfig& c) { c.virtio_mmio[0].base = GuestAddress(1ull << 32); }), Error);
    CHECK_THROWS_AS(build_with([](AcpiConfig& c) { c.memory[0].node = 2; }), Error);
    CHECK_THROWS_AS(build_with([](AcpiConfig& c) { c.memory[0].size = 0; }), Error);
    CHECK_THROWS_AS(build_with([](AcpiConfig& c) { c.memory.clear(); }), Error);
    CHECK_THROWS_AS(build_with([](AcpiConfig& c) { c.node_distances = {10, 20, 20}; }), UsageError);
    CHECK_THROWS_AS(build_with([](AcpiConfig& c) {
                        c.node_distances = {11, 20, 20, 10};
                    }),
                    UsageError);
    CHECK_THROWS_AS(build_with([](AcpiConfig& c) {
                        c.node_distances = {10, 10, 20, 10};
                    }),
                    UsageError);
    CHECK_THROWS_AS(build_acpi_tables(test_config(topology), GuestAddress(0xE0008)), Error);
    CHECK_NOTHROW(build_with([](AcpiConfig& c) { c.node_distances = {10, 255, 12, 10}; }));
}
