// The I/O APIC driven the way Linux programs it, and the MSI routes it hands the VMM.
#include "ktstr/devices/ioapic.hpp"
#include "ktstr/vmm/bus.hpp"

#include <catch2/catch_test_macros.hpp>
#include <vector>

using namespace ktstr;

namespace {

struct IoapicUnderTest {
    std::vector<Ioapic::Routes> updates;
    Ioapic ioapic{[this](const Ioapic::Routes& routes) {
        updates.push_back(routes);
    }};

    void write32(std::uint64_t offset, std::uint32_t value) {
        ktstr::write32(ioapic, offset, value);
    }
    std::uint32_t read32(std::uint64_t offset) { return ktstr::read32(ioapic, offset); }
    void set_register(std::uint32_t index, std::uint32_t value) {
        write32(0x00, index);
        write32(0x10, value);
    }
    std::uint32_t get_register(std::uint32_t index) {
        write32(0x00, index);
        return read32(0x10);
    }
    // Linux's order: the destination word first, then the word that unmasks.
    void program(std::uint32_t pin, std::uint32_t high, std::uint32_t low) {
        set_register(0x10 + 2 * pin + 1, high);
        set_register(0x10 + 2 * pin, low);
    }
};

} // namespace

TEST_CASE("I/O APIC: identification registers", "[ioapic]") {
    IoapicUnderTest t;
    CHECK(t.get_register(0x01) == 0x00170011); // 24 pins, version 0x11
    t.set_register(0x00, 0xffffffff);
    CHECK(t.get_register(0x00) == 0x0f000000); // only the ID field is writable
    CHECK(t.get_register(0x02) == 0x0f000000);
    CHECK(t.updates.empty());
}

TEST_CASE("I/O APIC: pins start masked and route nowhere", "[ioapic]") {
    IoapicUnderTest t;
    for (std::uint32_t pin = 0; pin < Ioapic::kPins; ++pin)
        CHECK(t.get_register(0x10 + 2 * pin) == 0x00010000);
    t.set_register(0x11, 5u << 24); // a destination alone changes no route: no update
    CHECK(t.updates.empty());
    t.set_register(0x10, 0x30); // unmasked: pin 0 routes, the others still do not
    REQUIRE(t.updates.size() == 1);
    CHECK(t.updates.back()[0]);
    for (std::uint32_t pin = 1; pin < Ioapic::kPins; ++pin)
        CHECK_FALSE(t.updates.back()[pin]);
    t.set_register(0x10, 0x30); // the same entry again: no update
    CHECK(t.updates.size() == 1);
}

TEST_CASE("I/O APIC: a redirection entry becomes the MSI it sends", "[ioapic]") {
    IoapicUnderTest t;
    // Pin 4 (COM1): vector 0x31, fixed, physical destination APIC 5, edge, active high.
    t.program(4, 5u << 24, 0x31);
    auto route = t.updates.back()[4];
    REQUIRE(route);
    CHECK(route->address == 0xfee05000);
    CHECK(route->data == 0x31);
    CHECK(t.get_register(0x18) == 0x31);
    CHECK(t.get_register(0x19) == 5u << 24);

    // Level-triggered and active low in the entry, still an edge on the route; logical
    // destination mode and the NMI delivery mode carry over.
    t.program(9, 0x03u << 24, 0x0000a800 | 0x0400 | 0x41);
    route = t.updates.back()[9];
    REQUIRE(route);
    CHECK(route->address == (0xfee03000 | 0x4));
    CHECK(route->data == 0x441);

    // Masking takes the route away; the other pins keep theirs.
    t.set_register(0x18, 0x00010031);
    CHECK_FALSE(t.updates.back()[4]);
    CHECK(t.updates.back()[9]);
}

TEST_CASE("I/O APIC: destinations past APIC ID 255 use the extended destination bits", "[ioapic]") {
    IoapicUnderTest t;
    // APIC ID 433 = 0x1b1: bits 0-7 in 63:56, bits 8-14 in 55:49.
    std::uint32_t apic_id = 433;
    t.program(16, (apic_id & 0xff) << 24 | (apic_id >> 8) << 17, 0x22);
    auto route = t.updates.back()[16];
    REQUIRE(route);
    CHECK(route->address == (0xfee00000 | 0xb1u << 12 | 0x100ull << 32));
    CHECK(route->data == 0x22);
}

TEST_CASE("I/O APIC: out-of-range registers, odd widths and offsets change nothing", "[ioapic]") {
    IoapicUnderTest t;
    t.set_register(0x10 + 2 * Ioapic::kPins, 0x31); // one past the last pin
    t.set_register(0xff, 0x31);
    t.set_register(0x05, 0x31);
    CHECK(t.get_register(0x10 + 2 * Ioapic::kPins) == 0);
    CHECK(t.get_register(0xff) == 0);
    t.write32(0x00, 0x12345678);
    CHECK(t.read32(0x00) == 0x78); // the selector keeps 8 bits
    t.write32(0x20, 0x10);
    CHECK(t.read32(0x20) == 0);
    std::uint8_t byte = 0x10;
    t.ioapic.write(0x00, std::span(&byte, 1));
    CHECK(t.read32(0x00) == 0x78);
    CHECK(t.updates.empty());

    std::uint64_t wide = ~0ull;
    t.ioapic.read(0x10, std::span(reinterpret_cast<std::uint8_t*>(&wide), 8));
    CHECK(wide == 0); // an odd width reads zeros, never stale bytes

    // Delivery status and remote IRR are the hardware's: writes do not set them.
    t.set_register(0x10, 0x00005031);
    CHECK(t.get_register(0x10) == 0x00000031);
}
