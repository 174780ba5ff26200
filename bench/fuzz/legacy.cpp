// The legacy PC devices on the port I/O bus: CmosRtc (0x70-0x71), I8042 (0x60-0x64) and the
// ACPI PM1a registers (0x600-0x605), each checked against a small model of what it should do.
//
// Input: a sequence of operations (opcode byte and operands): a port access of 0-8 bytes at
// a port chosen near one of the devices (so that accesses straddling a device's edge are
// tried; the bus refuses those), single-byte CMOS index/data pairs, and 16-bit PM writes.
// Invariants:
//   CMOS: index writes select (value & 0x7f); data reads give BCD time for the clock
//     registers, UIP clear, and for 0x0e-0x7f (but the century) what was last written there;
//     writes of other sizes than one byte are ignored; reads of the index port give 0xff.
//   i8042: reads are all zeros; the reset callback runs exactly for a one-byte 0xfe written to
//     port 0x64.
//   PM: status reads 0 (nothing sets it; writing ones clears); enable reads back; control
//     reads back with SCI_EN set and SLP_EN clear, and power-off runs exactly when a write
//     set SLP_EN.
#include "fuzz_target.hpp"
#include "ktstr/devices/acpi_pm.hpp"
#include "ktstr/devices/cmos_rtc.hpp"
#include "ktstr/devices/i8042.hpp"
#include "ktstr/vmm/bus.hpp"

#include <array>
#include <cstring>
#include <memory>

namespace ktstr_fuzz_legacy {

using namespace ktstr;
using ktstr::fuzz::Input;

constexpr std::uint64_t kPmBase = 0x600;
constexpr std::size_t kMaxOperations = 4096;

bool is_bcd(std::uint8_t value, int max) {
    int tens = value >> 4, ones = value & 0x0f;
    return tens <= 9 && ones <= 9 && tens * 10 + ones <= max;
}

struct Harness {
    int resets = 0, power_offs = 0;
    std::shared_ptr<CmosRtc> cmos = std::make_shared<CmosRtc>();
    std::shared_ptr<I8042> i8042 = std::make_shared<I8042>([this] { ++resets; });
    std::shared_ptr<AcpiPmRegisters> pm =
        std::make_shared<AcpiPmRegisters>([this] { ++power_offs; });
    Bus bus;

    // The models.
    std::uint8_t cmos_index = 0;
    std::array<std::uint8_t, 128> cmos_ram{};
    std::uint16_t pm_enable = 0, pm_control = 0;

    Harness() {
        bus.insert(CmosRtc::kBase, CmosRtc::kLength, cmos);
        bus.insert(I8042::kBase, I8042::kLength, i8042);
        bus.insert(kPmBase, AcpiPmRegisters::kLength, pm);
    }

    void check_cmos_register(std::uint8_t index, std::uint8_t value) {
        switch (index) {
        case 0x00: KTSTR_FUZZ_CHECK(is_bcd(value, 60)); break; // 60: a leap second
        case 0x02: KTSTR_FUZZ_CHECK(is_bcd(value, 59)); break;
        case 0x04: KTSTR_FUZZ_CHECK(is_bcd(value, 23)); break;
        case 0x06: KTSTR_FUZZ_CHECK(is_bcd(value, 7) && value >= 1); break;
        case 0x07: KTSTR_FUZZ_CHECK(is_bcd(value, 31) && value >= 1); break;
        case 0x08: KTSTR_FUZZ_CHECK(is_bcd(value, 12) && value >= 1); break;
        case 0x09: KTSTR_FUZZ_CHECK(is_bcd(value, 99)); break;
        case 0x32: KTSTR_FUZZ_CHECK(is_bcd(value, 99)); break;
        case 0x0a: KTSTR_FUZZ_CHECK((value & 0x80) == 0); break;
        case 0x0b: KTSTR_FUZZ_CHECK((value & 0x04) == 0); break; // BCD, not binary
        default:
            if (index >= 0x0e)
                KTSTR_FUZZ_CHECK(value == cmos_ram[index]);
            break;
        }
    }

    std::uint8_t pm_byte(std::uint64_t at) const {
        std::uint16_t reg = at < 2 ? 0 : at < 4 ? pm_enable : std::uint16_t(pm_control | 1);
        return std::uint8_t(reg >> (8 * (at % 2)));
    }

    // A port access, checked against the models; the bus decides which device sees it.
    void access(std::uint64_t port, std::span<std::uint8_t> data, bool write) {
        auto inside = [&](std::uint64_t base, std::uint64_t length) {
            return port >= base && port - base < length && data.size() <= length - (port - base);
        };
        int resets_before = resets, offs_before = power_offs;
        if (!write) {
            bool taken = bus.read(port, data);
            if (inside(CmosRtc::kBase, CmosRtc::kLength)) {
                KTSTR_FUZZ_CHECK(taken);
                for (std::uint8_t byte : data) {
                    if (port == CmosRtc::kBase)
                        KTSTR_FUZZ_CHECK(byte == 0xff);
                    else
                        check_cmos_register(cmos_index, byte);
                }
            } else if (inside(I8042::kBase, I8042::kLength)) {
                KTSTR_FUZZ_CHECK(taken);
                for (std::uint8_t byte : data)
                    KTSTR_FUZZ_CHECK(byte == 0);
            } else if (inside(kPmBase, AcpiPmRegisters::kLength)) {
                KTSTR_FUZZ_CHECK(taken);
                for (std::size_t i = 0; i < data.size(); ++i)
                    KTSTR_FUZZ_CHECK(data[i] == pm_byte(port - kPmBase + i));
            } else {
                KTSTR_FUZZ_CHECK(!taken || data.empty());
                for (std::uint8_t byte : data)
                    KTSTR_FUZZ_CHECK(byte == 0xff);
            }
            return;
        }
        bool taken = bus.write(port, data);
        if (inside(CmosRtc::kBase, CmosRtc::kLength)) {
            KTSTR_FUZZ_CHECK(taken);
            if (data.size() == 1) {
                if (port == CmosRtc::kBase)
                    cmos_index = data[0] & 0x7f;
                else if (cmos_index >= 0x0e)
                    cmos_ram[cmos_index] = data[0];
            }
        } else if (inside(I8042::kBase, I8042::kLength)) {
            KTSTR_FUZZ_CHECK(taken);
            bool reset = port == I8042::kBase + 4 && data.size() == 1 && data[0] == 0xfe;
            KTSTR_FUZZ_CHECK(resets == resets_before + (reset ? 1 : 0));
        } else if (inside(kPmBase, AcpiPmRegisters::kLength)) {
            KTSTR_FUZZ_CHECK(taken);
            for (std::size_t i = 0; i < data.size(); ++i) {
                std::uint64_t at = port - kPmBase + i;
                unsigned shift = 8 * (at % 2);
                auto merge = [&](std::uint16_t reg) {
                    return std::uint16_t((reg & ~(0xff << shift)) | data[i] << shift);
                };
                if (at >= 4)
                    pm_control = merge(pm_control);
                else if (at >= 2)
                    pm_enable = merge(pm_enable);
            }
            bool off = pm_control & (1u << 13);
            pm_control &= std::uint16_t(~(1u << 13));
            KTSTR_FUZZ_CHECK(power_offs == offs_before + (off ? 1 : 0));
        } else {
            KTSTR_FUZZ_CHECK(!taken || data.empty());
        }
        KTSTR_FUZZ_CHECK(resets - resets_before <= 1 && power_offs - offs_before <= 1);
    }
};

void run(Input& in) {
    Harness h;
    const std::uint64_t bases[] = {CmosRtc::kBase, I8042::kBase, kPmBase};
    for (std::size_t op = 0; op < kMaxOperations && !in.empty(); ++op) {
        std::uint8_t code = in.u8();
        switch (code % 4) {
        case 0:
        case 1: { // any access near a device
            std::uint64_t port = bases[(code >> 2) % 3] + in.u8() % 12 - 2;
            std::size_t size = in.u8() % 9;
            std::uint8_t buffer[8] = {};
            bool write = code % 4 == 1;
            if (write) {
                auto bytes = in.bytes(size);
                std::memcpy(buffer, bytes.data(), bytes.size());
            }
            h.access(port, std::span(buffer, size), write);
            break;
        }
        case 2: { // a CMOS index/data pair, as the kernel does it
            std::uint8_t index = in.u8(), value = in.u8();
            h.access(CmosRtc::kBase, std::span(&index, 1), true);
            if (in.flag())
                h.access(CmosRtc::kBase + 1, std::span(&value, 1), true);
            std::uint8_t read = 0;
            h.access(CmosRtc::kBase + 1, std::span(&read, 1), false);
            break;
        }
        case 3: { // a 16-bit PM register write and read-back
            std::uint64_t reg = 2 * (in.u8() % 3);
            std::uint8_t word[2] = {in.u8(), in.u8()};
            h.access(kPmBase + reg, std::span(word, 2), true);
            std::uint8_t back[2] = {};
            h.access(kPmBase + reg, std::span(back, 2), false);
            break;
        }
        }
    }
}

} // namespace ktstr_fuzz_legacy

KTSTR_FUZZ_TARGET(legacy) {
    ktstr::fuzz::Input in(data, size);
    ktstr_fuzz_legacy::run(in);
    return 0;
}
