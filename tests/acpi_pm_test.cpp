#include "ktstr/devices/acpi_pm.hpp"

#include <catch2/catch_test_macros.hpp>

using namespace ktstr;

namespace {
std::uint16_t read16(AcpiPmRegisters& pm, std::uint64_t offset) {
    std::uint8_t bytes[2];
    pm.read(offset, bytes);
    return std::uint16_t(bytes[0] | bytes[1] << 8);
}
void write16(AcpiPmRegisters& pm, std::uint64_t offset, std::uint16_t value) {
    std::uint8_t bytes[2] = {std::uint8_t(value), std::uint8_t(value >> 8)};
    pm.write(offset, bytes);
}
} // namespace

TEST_CASE("ACPI PM1 registers read back and power off on SLP_EN", "[acpi-pm]") {
    int power_offs = 0;
    AcpiPmRegisters pm([&] { ++power_offs; });
    write16(pm, 2, 0x0521);
    CHECK(read16(pm, 2) == 0x0521);
    CHECK(read16(pm, 0) == 0);
    CHECK((read16(pm, 4) & 1) == 1); // SCI_EN
    write16(pm, 4, 5 << 10);         // SLP_TYP alone does nothing
    CHECK(power_offs == 0);
    write16(pm, 4, (5 << 10) | (1 << 13));
    CHECK(power_offs == 1);
    CHECK((read16(pm, 4) & (1 << 13)) == 0);
    std::uint8_t past[4] = {};
    pm.read(4, past);
    CHECK(past[2] == 0xff);
}
