// The I/O APIC's register window (IOREGSEL at 0x00, IOWIN at 0x10), as a guest reaches it
// through the MMIO bus: any offset and width, and the index/data dance in between.
//
// Input: a sequence of operations (opcode byte and operands): 32-bit writes and reads of
// IOREGSEL and IOWIN, a whole redirection entry written the way Linux does (high word, then
// low), and raw accesses of 0-8 bytes at any offset in the first 64 bytes of the window.
// Invariants: the route callback sees exactly 24 pins, and it is called when (and only when) a
// write changed some route; each route it receives is what route_of makes of the entry the
// guest can read back (a masked pin has none); every route is a well-formed MSI (0xfee
// base, destination bits 8-14 in the high word, vector and delivery mode only in the data);
// delivery status and remote IRR always read as 0; IOREGSEL reads back its low byte; the
// version register says 24 pins.
#include "ktstr/devices/ioapic.hpp"

#include "fuzz_target.hpp"
#include "ktstr/vmm/bus.hpp"

#include <cstring>
#include <memory>

namespace ktstr_fuzz_ioapic {

using namespace ktstr;
using ktstr::fuzz::Input;

constexpr std::uint64_t kBase = 0xfec00000;
constexpr std::size_t kMaxOperations = 4096;

void check_route(const std::optional<MsiMessage>& route) {
    if (!route)
        return;
    KTSTR_FUZZ_CHECK((route->address & 0xfff00000) == 0xfee00000);
    KTSTR_FUZZ_CHECK((route->address & 0xffb) == 0); // only the logical-mode flag below 12
    KTSTR_FUZZ_CHECK(((route->address >> 32) & ~0x7f00ull) == 0);
    KTSTR_FUZZ_CHECK((route->data & ~0x7ffu) == 0);
}

struct Harness {
    Ioapic::Routes last{}; // all masked at reset: no routes
    int updates = 0;
    std::shared_ptr<Ioapic> ioapic = std::make_shared<Ioapic>([this](const Ioapic::Routes& r) {
        // Called with the device locked: only record here.
        KTSTR_FUZZ_CHECK(r.size() == Ioapic::kPins);
        for (std::size_t pin = 0; pin < r.size(); ++pin)
            check_route(r[pin]);
        KTSTR_FUZZ_CHECK(r != last); // an update that changes nothing is never sent
        last = r;
        ++updates;
    });
    Bus bus;

    Harness() { bus.insert(kBase, Ioapic::kSize, ioapic); }

    std::uint32_t read32(std::uint64_t offset) { return ktstr::read32(bus, kBase + offset); }
    void write32(std::uint64_t offset, std::uint32_t value) {
        ktstr::write32(bus, kBase + offset, value);
    }
    std::uint32_t read_register(std::uint32_t index) {
        write32(0x00, index);
        return read32(0x10);
    }

    // The routes as the guest's entries say; also checks what the entries read back.
    Ioapic::Routes current_routes() {
        std::uint32_t select = read32(0x00);
        Ioapic::Routes routes;
        for (std::uint32_t pin = 0; pin < Ioapic::kPins; ++pin) {
            std::uint64_t low = read_register(0x10 + 2 * pin);
            std::uint64_t high = read_register(0x11 + 2 * pin);
            KTSTR_FUZZ_CHECK((low & ((1u << 12) | (1u << 14))) == 0);
            routes[pin] = Ioapic::route_of(high << 32 | low);
            KTSTR_FUZZ_CHECK(routes[pin].has_value() == !(low & Ioapic::kMaskedEntry));
        }
        write32(0x00, select);
        return routes;
    }

    void check_after_write(int updates_before) {
        // Routes are handed over on every change (and only then): what the callback saw last
        // is what the entries say now.
        KTSTR_FUZZ_CHECK(last == current_routes());
        KTSTR_FUZZ_CHECK(updates - updates_before <= 2); // at most one per word written
    }
};

void run(Input& in) {
    Harness h;
    for (std::size_t op = 0; op < kMaxOperations && !in.empty(); ++op) {
        int before = h.updates;
        switch (in.u8() % 7) {
        case 0: { // IOREGSEL
            std::uint32_t value = in.flag() ? in.u32() : 0x10 + in.u8() % 56;
            h.write32(0x00, value);
            KTSTR_FUZZ_CHECK(h.read32(0x00) == (value & 0xff));
            break;
        }
        case 1: // IOWIN write
            h.write32(0x10, in.u32());
            h.check_after_write(before);
            break;
        case 2: { // IOWIN read: the register index says what it may hold
            std::uint32_t select = h.read32(0x00);
            std::uint32_t value = h.read32(0x10);
            if (select == 0x01)
                KTSTR_FUZZ_CHECK(value == (23u << 16 | 0x11));
            if (select == 0x00 || select == 0x02)
                KTSTR_FUZZ_CHECK((value & ~0x0f000000u) == 0);
            if (select >= 0x10 + 2 * Ioapic::kPins || (select > 0x02 && select < 0x10))
                KTSTR_FUZZ_CHECK(value == 0);
            break;
        }
        case 3: { // a whole entry, high word first as Linux writes it
            std::uint32_t pin = in.u8() % (Ioapic::kPins + 2);
            std::uint32_t high = in.u32(), low = in.u32();
            h.write32(0x00, 0x11 + 2 * pin);
            h.write32(0x10, high);
            h.write32(0x00, 0x10 + 2 * pin);
            h.write32(0x10, low);
            h.check_after_write(before);
            break;
        }
        case 4: { // raw access, any width and offset
            std::size_t size = in.u8() % 9;
            std::uint64_t offset = in.u8() % 64;
            std::uint8_t buffer[8] = {};
            if (in.flag()) {
                auto bytes = in.bytes(size);
                std::memcpy(buffer, bytes.data(), bytes.size());
                h.bus.write(kBase + offset, std::span<const std::uint8_t>(buffer, size));
                h.check_after_write(before);
            } else {
                h.bus.read(kBase + offset, std::span(buffer, size));
                if (size != 4 || (offset != 0x00 && offset != 0x10))
                    for (std::size_t i = 0; i < size; ++i)
                        KTSTR_FUZZ_CHECK(buffer[i] == 0);
            }
            break;
        }
        case 5: // a static check of route_of on any entry
            check_route(Ioapic::route_of(in.u64()));
            break;
        case 6: { // mask or unmask every pin at once
            bool mask = in.flag();
            for (std::uint32_t pin = 0; pin < Ioapic::kPins; ++pin) {
                std::uint32_t low = h.read_register(0x10 + 2 * pin);
                h.write32(0x00, 0x10 + 2 * pin);
                h.write32(0x10, mask ? low | Ioapic::kMaskedEntry : low & ~Ioapic::kMaskedEntry);
            }
            KTSTR_FUZZ_CHECK(h.last == h.current_routes());
            break;
        }
        }
    }
}

} // namespace ktstr_fuzz_ioapic

KTSTR_FUZZ_TARGET(ioapic) {
    ktstr::fuzz::Input in(data, size);
    ktstr_fuzz_ioapic::run(in);
    return 0;
}
