// The MP table read back the way Linux's mpparse.c reads it. (Booting a guest with acpi=off,
// in the e2e tests, is the peer check.)
#include "ktstr/base/error.hpp"
#include "ktstr/vmm/x86_64/apic_id.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"
#include "ktstr/vmm/x86_64/mptable.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <cstring>
#include <numeric>
#include <string>

using namespace ktstr;

namespace {

std::uint32_t u32_at(const std::vector<std::uint8_t>& bytes, std::size_t at) {
    std::uint32_t value;
    std::memcpy(&value, bytes.data() + at, 4);
    return value;
}

std::uint16_t u16_at(const std::vector<std::uint8_t>& bytes, std::size_t at) {
    std::uint16_t value;
    std::memcpy(&value, bytes.data() + at, 2);
    return value;
}

bool sums_to_zero(const std::vector<std::uint8_t>& bytes, std::size_t at, std::size_t length) {
    return std::accumulate(bytes.begin() + long(at), bytes.begin() + long(at + length), 0u) % 256 ==
           0;
}

} // namespace

TEST_CASE("the MP table names every vCPU, the I/O APIC and the ISA interrupts", "[mptable]") {
    auto text = GENERATE(as<std::string>{}, "1n1l1c1t", "1n2l2c2t", "2n4l2c2t", "4n12l4c1t");
    CAPTURE(text);
    const Topology topology = Topology::parse(text);
    const GuestAddress base = x86_64::kMpTable;
    auto bytes = build_mp_table(topology, base, {0x00a00f11, 0x078bfbff});

    // Floating pointer: signature, 16 bytes that sum to zero, revision 1.4, default config 0.
    REQUIRE(bytes.size() > 16);
    CHECK(std::string(bytes.begin(), bytes.begin() + 4) == "_MP_");
    CHECK(bytes[8] == 1);
    CHECK(bytes[9] == 4);
    CHECK(sums_to_zero(bytes, 0, 16));
    CHECK(bytes[11] == 0);
    std::size_t config = u32_at(bytes, 4) - base.raw();
    REQUIRE(config + 44 <= bytes.size());

    // Configuration table header.
    CHECK(std::string(bytes.begin() + long(config), bytes.begin() + long(config) + 4) == "PCMP");
    std::size_t length = u16_at(bytes, config + 4);
    REQUIRE(config + length == bytes.size());
    CHECK(sums_to_zero(bytes, config, length));
    CHECK(bytes[config + 6] == 4);
    CHECK(u32_at(bytes, config + 36) == x86_64::kLocalApic.raw());

    // Entries, walked by type as mpparse.c does; every one must be known.
    std::size_t entries = u16_at(bytes, config + 34);
    std::size_t at = config + 44;
    std::vector<std::uint32_t> apic_ids;
    int bootstrap = 0, buses = 0, ioapics = 0;
    std::vector<std::pair<int, int>> irq_pins;
    std::vector<int> local_interrupts;
    for (std::size_t entry = 0; entry < entries; ++entry) {
        REQUIRE(at < bytes.size());
        switch (bytes[at]) {
        case 0:
            apic_ids.push_back(bytes[at + 1]);
            CHECK((bytes[at + 3] & 1) == 1);
            bootstrap += (bytes[at + 3] & 2) != 0;
            CHECK(u32_at(bytes, at + 4) == 0x00a00f11);
            at += 20;
            break;
        case 1:
            CHECK(std::string(bytes.begin() + long(at) + 2, bytes.begin() + long(at) + 8) ==
                  "ISA   ");
            ++buses;
            at += 8;
            break;
        case 2:
            CHECK(u32_at(bytes, at + 4) == x86_64::kIoapic.raw());
            ++ioapics;
            at += 8;
            break;
        case 3:
            irq_pins.emplace_back(bytes[at + 5], bytes[at + 7]);
            at += 8;
            break;
        case 4:
            CHECK(bytes[at + 6] == 0xff);
            local_interrupts.push_back(bytes[at + 1] << 8 | bytes[at + 7]);
            at += 8;
            break;
        default: FAIL("unknown entry type " << int(bytes[at]));
        }
    }
    CHECK(at == bytes.size());
    REQUIRE(apic_ids.size() == topology.cpus());
    for (std::uint32_t cpu = 0; cpu < topology.cpus(); ++cpu)
        CHECK(apic_ids[cpu] == apic_id_of(topology, cpu));
    CHECK(bootstrap == 1);
    CHECK(buses == 1);
    CHECK(ioapics == 1);
    // ISA IRQs 0-15 but the cascade; the PIT's IRQ 0 on pin 2, the rest on their own pins.
    REQUIRE(irq_pins.size() == 15);
    CHECK(irq_pins[0] == std::pair(0, 2));
    CHECK(irq_pins[1] == std::pair(1, 1));
    CHECK(irq_pins[2] == std::pair(3, 3));
    CHECK(irq_pins[14] == std::pair(15, 15));
    CHECK(local_interrupts == std::vector<int>{3 << 8 | 0, 1 << 8 | 1}); // ExtINT, NMI
}

TEST_CASE("the MP table refuses APIC IDs past 254 and a misaligned base", "[mptable]") {
    CHECK_THROWS_AS(build_mp_table(Topology::parse("1n14l9c2t"), x86_64::kMpTable, {}), Error);
    CHECK_THROWS_AS(build_mp_table(Topology::parse("1n1l1c1t"), GuestAddress{0xf0008}, {}), Error);
}
