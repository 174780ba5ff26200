// virtio-mmio transport + split virtqueue + virtio-console, driven by a hostile guest driver.
//
// Input: byte 0 picks the console's sink (even: one that takes everything; odd: a window of
// 1-64 bytes that applies backpressure until the harness drains it), then a sequence of
// operations, each an opcode byte and its operands:
//   register reads/writes through a Bus (32-bit ones at any offset, and odd sizes 0-8 at
//   odd offsets); raw writes of bytes into the 64 KiB of guest RAM; driver helpers that set
//   up the queue the way Linux does, write descriptors and publish them in the available
//   ring (so that the fuzzer reaches the device's data path quickly); queue notifies; and
//   runs of the executor.
// Invariants beyond the sanitizers: the executor is always run in bounded steps (a handler
// that never returns is a libFuzzer timeout); a device that is broken (DEVICE_NEEDS_RESET)
// hands no more output to its sink until the driver resets it; every span the console hands
// its sink lies inside guest RAM's host mapping (and ASan watches the rest of the host).
#include "../../tests/test_sinks.hpp"
#include "fuzz_target.hpp"
#include "ktstr/devices/virtio/console.hpp"
#include "ktstr/devices/virtio/mmio_transport.hpp"
#include "ktstr/vmm/bus.hpp"

#include <asio/io_context.hpp>
#include <cstring>
#include <memory>

namespace ktstr_fuzz_virtio {

using namespace ktstr;
using ktstr::fuzz::Input;

constexpr std::uint64_t kMemorySize = 0x10000;
constexpr std::uint64_t kBase = 0x1000; // the transport's place on the bus
// The layout the driver helpers use; raw register writes may choose any other.
constexpr std::uint64_t kDescriptors = 0x1000, kAvailable = 0x3000, kUsed = 0x4000, kData = 0x8000;
constexpr std::size_t kMaxOperations = 2048;
// Handlers run per "run the executor" operation. A driver whose used ring overlaps its own
// available ring can make the device republish buffers for itself forever; the transport
// yields between turns, so each handler returns, and the harness stops after this many.
constexpr int kMaxHandlers = 4096;

struct CountingLine : InterruptLine {
    int edges = 0;
    void trigger() override { ++edges; }
};

// Passes everything on to `inner`, checking that the device offers only guest RAM.
struct CheckingSink : ByteSink {
    CheckingSink(ByteSink& inner, const GuestMemory& memory) : inner(inner), memory(memory) {}
    ByteSink& inner;
    const GuestMemory& memory;
    std::size_t offer(std::span<const std::uint8_t> bytes) override {
        if (!bytes.empty()) {
            const auto& ram = memory.regions().front();
            KTSTR_FUZZ_CHECK(bytes.data() >= ram.host && bytes.size() <= ram.size &&
                             bytes.data() + bytes.size() <= ram.host + ram.size);
        }
        std::size_t taken = inner.offer(bytes);
        KTSTR_FUZZ_CHECK(taken <= bytes.size());
        return taken;
    }
    asio::awaitable<void> room() override { return inner.room(); }
};

struct Guest {
    explicit Guest(bool windowed, std::size_t window)
        : windowed(windowed), window_sink(executor, window),
          checking_sink(windowed ? static_cast<ByteSink&>(window_sink)
                                 : static_cast<ByteSink&>(string_sink),
                        memory),
          transport(std::make_shared<VirtioMmioTransport>(
              std::make_unique<VirtioConsole>(checking_sink), memory, irq, executor)) {
        bus.insert(kBase, VirtioMmioTransport::kSize, transport);
    }
    ~Guest() {
        // The transport's queue coroutines go with the executor; the transport (and its
        // eventfds) first, as in the VMM.
        bus = Bus();
        transport.reset();
    }

    asio::io_context executor;
    bool windowed;
    test::StringSink string_sink;
    test::WindowSink window_sink;
    GuestMemory memory{{{GuestAddress(0), kMemorySize}}};
    CheckingSink checking_sink;
    std::shared_ptr<CountingLine> irq = std::make_shared<CountingLine>();
    std::shared_ptr<VirtioMmioTransport> transport;
    Bus bus;
    std::uint16_t available_index = 0;
    std::uint16_t queue_size = 8;

    std::size_t output_size() const {
        return windowed ? window_sink.taken.size() + window_sink.held.size()
                        : string_sink.text.size();
    }
    std::uint32_t read32(std::uint64_t offset) { return ktstr::read32(bus, kBase + offset); }
    void write32(std::uint64_t offset, std::uint32_t value) {
        ktstr::write32(bus, kBase + offset, value);
    }
    bool broken() { return (read32(0x70) & 64) != 0; }

    // Runs ready handlers, a bounded number of them.
    void run_executor() {
        if (executor.stopped())
            executor.restart();
        for (int i = 0; i < kMaxHandlers; ++i)
            if (executor.poll_one() == 0)
                return;
    }

    // What Linux's virtio_mmio + virtio_console do to bring up queue `queue`.
    void bring_up(std::uint32_t queue, std::uint16_t size, std::uint32_t features_high) {
        queue_size = size;
        available_index = 0;
        write32(0x70, 0);
        write32(0x70, 1 | 2);
        write32(0x24, 1);
        write32(0x20, features_high);
        write32(0x70, 1 | 2 | 8);
        write32(0x30, queue);
        write32(0x38, size);
        write32(0x80, std::uint32_t(kDescriptors));
        write32(0x84, 0);
        write32(0x90, std::uint32_t(kAvailable));
        write32(0x94, 0);
        write32(0xa0, std::uint32_t(kUsed));
        write32(0xa4, 0);
        write32(0x44, 1);
        write32(0x70, 1 | 2 | 8 | 4);
    }
    void descriptor(std::uint16_t index, std::uint64_t address, std::uint32_t length,
                    std::uint16_t flags, std::uint16_t next) {
        std::uint64_t at = kDescriptors + 16 * std::uint64_t(index % 512);
        memory.write(GuestAddress(at), address);
        memory.write(GuestAddress(at + 8), length);
        memory.write(GuestAddress(at + 12), flags);
        memory.write(GuestAddress(at + 14), next);
    }
    void make_available(std::uint16_t head) {
        std::uint16_t slot = queue_size ? available_index % queue_size : available_index % 256;
        memory.write<std::uint16_t>(GuestAddress(kAvailable + 4 + 2 * std::uint64_t(slot)), head);
        memory.write<std::uint16_t>(GuestAddress(kAvailable + 2), ++available_index);
    }
};

void access(Guest& guest, Input& in, bool write) {
    // Any size KVM can hand over (0-8 bytes) at any offset in and around the window; the
    // bus keeps accesses that do not fit the window from the device, as in the VMM.
    std::size_t size = in.u8() % 9;
    std::uint64_t offset = in.u16() % (VirtioMmioTransport::kSize + 16);
    std::uint8_t buffer[8] = {};
    if (write) {
        auto bytes = in.bytes(size);
        std::memcpy(buffer, bytes.data(), bytes.size());
        guest.bus.write(kBase + offset, std::span<const std::uint8_t>(buffer, size));
    } else {
        guest.bus.read(kBase + offset, std::span(buffer, size));
    }
}

void run(Input& in) {
    std::uint8_t mode = in.u8();
    Guest guest(mode & 1, 1 + (mode >> 1) % 64);
    for (std::size_t op = 0; op < kMaxOperations && !in.empty(); ++op) {
        bool was_broken = guest.broken();
        std::size_t output_before = guest.output_size();
        bool may_reset = false;
        std::uint8_t code = in.u8();
        switch (code % 13) {
        case 0: { // a 32-bit register write, at a register offset
            std::uint64_t offset = (in.u8() * 4) % VirtioMmioTransport::kSize;
            std::uint32_t value = in.u32();
            guest.write32(offset, value);
            may_reset = true;
            break;
        }
        case 1: // a 32-bit register read
            guest.read32((in.u8() * 4) % VirtioMmioTransport::kSize);
            break;
        case 2:
            access(guest, in, true);
            may_reset = true;
            break;
        case 3: access(guest, in, false); break;
        case 4: { // raw bytes into guest RAM
            std::uint64_t address = in.u16();
            std::size_t length = in.u8();
            auto bytes = in.bytes(std::min<std::size_t>(length, kMemorySize - address));
            guest.memory.write_bytes(GuestAddress(address), bytes);
            break;
        }
        case 5: { // the driver's bring-up
            std::uint8_t shape = in.u8();
            std::uint16_t size =
                shape & 0x80 ? std::uint16_t(in.u16() % 300) : std::uint16_t(1u << (shape % 9));
            guest.bring_up(shape & 0x40 ? 0 : 1, size, shape & 0x20 ? in.u32() : 1);
            may_reset = true;
            break;
        }
        case 6: { // a descriptor, mostly pointing into the data area
            std::uint16_t index = in.u8();
            std::uint8_t kind = in.u8();
            std::uint64_t address = kind & 0x80 ? in.u64() : kData + in.u16() % 0x8000;
            std::uint32_t length = kind & 0x40 ? in.u32() : in.u8();
            std::uint16_t flags = kind & 0x20 ? in.u16() : (kind & 0x7);
            std::uint16_t next = in.u8();
            guest.descriptor(index, address, length, flags, next);
            break;
        }
        case 7: guest.make_available(in.u8()); break;
        case 8: // the available index, raw
            guest.available_index = in.u16();
            guest.memory.write<std::uint16_t>(GuestAddress(kAvailable + 2), guest.available_index);
            break;
        case 9: // notify without an ioeventfd: the transport signals its own notifier
            guest.write32(0x50, in.u8() % 4);
            guest.run_executor();
            break;
        case 10: guest.run_executor(); break;
        case 11: // the sink's reader catches up
            if (guest.windowed)
                guest.window_sink.drain();
            guest.run_executor();
            break;
        case 12: { // a whole message: data, one descriptor (or two chained), publish, notify
            std::uint16_t head = in.u8() % 16;
            std::size_t length = in.u8();
            auto bytes = in.bytes(length);
            guest.memory.write_bytes(GuestAddress(kData), bytes);
            std::uint32_t half = std::uint32_t(bytes.size() / 2);
            if (in.flag()) {
                guest.descriptor(head, kData, half, 1, std::uint16_t(head + 1));
                guest.descriptor(std::uint16_t(head + 1), kData + half,
                                 std::uint32_t(bytes.size()) - half, 0, 0);
            } else {
                guest.descriptor(head, kData, std::uint32_t(bytes.size()), 0, 0);
            }
            guest.make_available(head);
            guest.write32(0x50, 1);
            guest.run_executor();
            break;
        }
        }
        // Broken stays quiet until the driver resets the device.
        if (was_broken && guest.broken() && !may_reset)
            KTSTR_FUZZ_CHECK(guest.output_size() == output_before);
        // Reading the used ring back is always possible; the device never moved it.
        (void)guest.memory.read<std::uint16_t>(GuestAddress(kUsed + 2));
    }
}

} // namespace ktstr_fuzz_virtio

KTSTR_FUZZ_TARGET(virtio) {
    ktstr::fuzz::Input in(data, size);
    try {
        ktstr_fuzz_virtio::run(in);
    } catch (const ktstr::Error&) {
        // GuestMemoryError from the harness's own writes; the device catches its own.
    }
    return 0;
}
