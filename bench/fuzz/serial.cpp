// Serial16550: guest port reads and writes at any offset and width (as the port I/O bus hands
// them over), interleaved with host input through receive().
//
// Input: a sequence of operations, an opcode byte and its operands: register accesses of
// 1, 2 or 4 bytes (or 0-8 at any offset in and around the eight ports, which the bus filters
// as in the VMM), single-byte register writes and reads, host input of up to 255 bytes (or a
// flood of 64 KiB), and the 8250 driver's usual setup.
// Invariants: a one-byte write to THR transmits exactly that byte when DLAB and loopback are
// off, and nothing otherwise; no access transmits more than one byte; IIR and LSR read as
// the 16550 defines them; receive() never takes more than it is offered; the data register
// hands out host bytes in the order the host sent them (while no FIFO clear, loopback byte
// or receiver-disable intervened, checked against a model of the host stream).
#include "ktstr/devices/serial.hpp"

#include "fuzz_target.hpp"
#include "ktstr/vmm/bus.hpp"

#include <cstring>
#include <deque>
#include <memory>
#include <vector>

namespace ktstr_fuzz_serial {

using namespace ktstr;
using ktstr::fuzz::Input;

constexpr std::uint64_t kBase = 0x3f8;
constexpr std::size_t kMaxOperations = 4096;

struct CountingLine : InterruptLine {
    int edges = 0;
    void trigger() override { ++edges; }
};

struct Harness {
    std::shared_ptr<CountingLine> irq = std::make_shared<CountingLine>();
    std::vector<std::uint8_t> output;
    std::shared_ptr<Serial16550> uart =
        std::make_shared<Serial16550>(irq, [this](std::span<const std::uint8_t> bytes) {
            output.insert(output.end(), bytes.begin(), bytes.end());
        });
    Bus bus;
    // Host bytes the device took, in order, that the guest has not read yet. Valid only
    // while `exact` holds: things the model does not follow (loopback bytes, FIFO clears)
    // end the ordering check for the rest of the run.
    std::deque<std::uint8_t> sent;
    bool exact = true;

    Harness() { bus.insert(kBase, Serial16550::kRegisterCount, uart); }

    std::uint8_t read8(std::uint64_t index) {
        std::uint8_t value = 0;
        bus.read(kBase + index, std::span(&value, 1));
        return value;
    }
    void write8(std::uint64_t index, std::uint8_t value) {
        bus.write(kBase + index, std::span<const std::uint8_t>(&value, 1));
    }

    void check_register_read(std::uint64_t index, std::uint8_t value, std::uint8_t lcr,
                             bool had_data) {
        bool dlab = lcr & 0x80;
        switch (index) {
        case 0:
            if (!dlab && had_data && exact) {
                KTSTR_FUZZ_CHECK(!sent.empty());
                KTSTR_FUZZ_CHECK(value == sent.front());
                sent.pop_front();
            }
            break;
        case 2: {
            std::uint8_t id = value & 0x0f;
            KTSTR_FUZZ_CHECK(id == 0x01 || id == 0x02 || id == 0x04);
            KTSTR_FUZZ_CHECK((value & 0x30) == 0);
            KTSTR_FUZZ_CHECK((value & 0xc0) == 0 || (value & 0xc0) == 0xc0);
            break;
        }
        case 3: KTSTR_FUZZ_CHECK(value == lcr); break;
        case 4: KTSTR_FUZZ_CHECK((value & 0xe0) == 0); break;
        case 5:
            KTSTR_FUZZ_CHECK((value & 0x60) == 0x60);
            KTSTR_FUZZ_CHECK((value & ~0x61) == 0);
            break;
        default: break;
        }
    }

    // A one-byte access to register `index`, checked.
    void single(Input& in, bool write) {
        std::uint64_t index = in.u8() % Serial16550::kRegisterCount;
        std::uint8_t lcr = read8(3), mcr = read8(4);
        bool had_data = read8(5) & 0x01;
        if (write) {
            std::uint8_t value = in.u8();
            std::size_t before = output.size();
            write8(index, value);
            bool transmits = index == 0 && !(lcr & 0x80) && !(mcr & 0x10);
            if (transmits) {
                KTSTR_FUZZ_CHECK(output.size() == before + 1);
                KTSTR_FUZZ_CHECK(output.back() == value);
            } else {
                KTSTR_FUZZ_CHECK(output.size() == before);
            }
            // Loopback bytes and a FIFO clear change the receiver behind the model's back.
            if ((index == 0 && !(lcr & 0x80) && (mcr & 0x10)) || (index == 2 && (value & 0x02)))
                exact = false;
        } else {
            check_register_read(index, read8(index), lcr, had_data);
        }
    }

    // Any access the bus lets through (and some it does not).
    void raw(Input& in, bool write) {
        std::size_t size = in.u8() % 9;
        std::uint64_t offset = in.u8() % 12;
        std::uint8_t buffer[8] = {};
        if (write) {
            auto bytes = in.bytes(size);
            std::memcpy(buffer, bytes.data(), bytes.size());
            std::size_t before = output.size();
            bus.write(kBase + offset, std::span<const std::uint8_t>(buffer, size));
            KTSTR_FUZZ_CHECK(output.size() <= before + 1);
            // Whatever it did to the receiver, the model can no longer tell.
            if (size > 0 && offset <= 2)
                exact = false;
        } else {
            bus.read(kBase + offset, std::span(buffer, size));
            if (size > 0 && offset == 0)
                exact = false; // may have consumed a byte unseen
        }
    }

    void receive(std::span<const std::uint8_t> bytes) {
        std::size_t taken = uart->receive(bytes);
        KTSTR_FUZZ_CHECK(taken <= bytes.size());
        sent.insert(sent.end(), bytes.begin(), bytes.begin() + std::ptrdiff_t(taken));
    }
};

void run(Input& in) {
    Harness h;
    for (std::size_t op = 0; op < kMaxOperations && !in.empty(); ++op) {
        switch (in.u8() % 8) {
        case 0: h.single(in, true); break;
        case 1: h.single(in, false); break;
        case 2: h.raw(in, true); break;
        case 3: h.raw(in, false); break;
        case 4: h.receive(in.bytes(in.u8())); break;
        case 5: { // a flood: more than the receiver holds
            std::vector<std::uint8_t> flood((in.u8() + 1) * 512, in.u8());
            h.receive(flood);
            break;
        }
        case 6: // the 8250 driver opens the port: 8N1, FIFO, RX interrupt, OUT2
            h.write8(3, 0x03);
            h.write8(2, 0x01);                    // FIFO on, no clear
            h.write8(4, in.flag() ? 0x0b : 0x1b); // DTR RTS OUT2, maybe loopback
            if (h.read8(4) & 0x10)
                h.exact = false;
            h.write8(1, in.u8() & 0x0f);
            break;
        case 7: { // the guest drains the receiver the way the driver does
            int limit = in.u8();
            for (int i = 0; i < limit && (h.read8(5) & 0x01); ++i) {
                std::uint8_t lcr = h.read8(3);
                h.check_register_read(0, h.read8(0), lcr, true);
            }
            break;
        }
        }
    }
}

} // namespace ktstr_fuzz_serial

KTSTR_FUZZ_TARGET(serial) {
    ktstr::fuzz::Input in(data, size);
    ktstr_fuzz_serial::run(in);
    return 0;
}
