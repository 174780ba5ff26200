// virtio-mmio and the split virtqueue, driven by a simulated guest driver.
#include "ktstr/devices/virtio/console.hpp"
#include "ktstr/devices/virtio/mmio_transport.hpp"
#include "test_sinks.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>
#include <catch2/catch_test_macros.hpp>
#include <chrono>
#include <cstring>
#include <string>

using namespace ktstr;

namespace {

constexpr std::uint16_t kQueueSize = 8;
constexpr GuestAddress kDescriptors{0x1000}, kAvailable{0x2000}, kUsed{0x3000}, kData{0x4000};

struct CountingLine : InterruptLine {
    int edges = 0;
    void trigger() override { ++edges; }
};

// A guest driver's view: registers through the transport, rings in guest memory.
struct Driver {
    Driver() : Driver(own_executor, own_sink) {}
    // Output goes to `sink`, whose wake-ups run on `executor`.
    Driver(asio::io_context& executor, ByteSink& sink)
        : executor(executor),
          transport(std::make_unique<VirtioConsole>(sink), memory, irq, executor) {}
    asio::io_context own_executor;
    test::StringSink own_sink;
    asio::io_context& executor;
    std::string& output = own_sink.text;
    GuestMemory memory{{{GuestAddress(0), 0x10000}}};
    std::shared_ptr<CountingLine> irq = std::make_shared<CountingLine>();
    VirtioMmioTransport transport;
    std::uint16_t available_index = 0;

    std::uint32_t read(std::uint64_t offset) {
        std::uint32_t value = 0;
        transport.read(offset, std::span(reinterpret_cast<std::uint8_t*>(&value), 4));
        return value;
    }
    void write(std::uint64_t offset, std::uint32_t value) {
        transport.write(offset, std::span(reinterpret_cast<const std::uint8_t*>(&value), 4));
    }
    // The Linux driver's bring-up: reset, features (VERSION_1 only), queue 1, DRIVER_OK.
    void bring_up() {
        write(0x70, 0);
        write(0x70, 1 | 2);
        write(0x24, 1);
        write(0x20, 1); // VIRTIO_F_VERSION_1 is bit 32
        write(0x70, 1 | 2 | 8);
        REQUIRE((read(0x70) & 8) == 8);
        write(0x30, 1);
        REQUIRE(read(0x34) >= kQueueSize);
        write(0x38, kQueueSize);
        write(0x80, std::uint32_t(kDescriptors.raw()));
        write(0x90, std::uint32_t(kAvailable.raw()));
        write(0xa0, std::uint32_t(kUsed.raw()));
        write(0x44, 1);
        write(0x70, 1 | 2 | 8 | 4);
    }
    void descriptor(std::uint16_t index, std::uint64_t address, std::uint32_t length,
                    std::uint16_t flags, std::uint16_t next) {
        GuestAddress at = kDescriptors + 16 * std::uint64_t(index);
        memory.write(at, address);
        memory.write(at + 8, length);
        memory.write(at + 12, flags);
        memory.write(at + 14, next);
    }
    void make_available(std::uint16_t head) {
        memory.write<std::uint16_t>(kAvailable + 4 + 2 * (available_index % kQueueSize), head);
        memory.write<std::uint16_t>(kAvailable + 2, ++available_index);
    }
    void notify() {
        write(0x50, 1); // no ioeventfd here: the transport signals its own notifier
        executor.poll();
    }
    std::uint16_t used_index() { return memory.read<std::uint16_t>(kUsed + 2); }
    bool broken() { return (read(0x70) & 64) != 0; }
};

} // namespace

TEST_CASE("virtio-mmio identifies a version 2 console", "[virtio]") {
    Driver driver;
    CHECK(driver.read(0x000) == 0x74726976);
    CHECK(driver.read(0x004) == 2);
    CHECK(driver.read(0x008) == 3);
    driver.write(0x14, 1);
    CHECK(driver.read(0x010) == 1); // VERSION_1 in the high word
    // A driver that does not accept VERSION_1 does not get FEATURES_OK.
    driver.write(0x70, 1 | 2 | 8);
    CHECK((driver.read(0x70) & 8) == 0);
}

TEST_CASE("console output travels through the transmit queue in order", "[virtio]") {
    Driver driver;
    driver.bring_up();
    driver.memory.write_bytes(kData,
                              std::span(reinterpret_cast<const std::uint8_t*>("hello, world"), 12));
    driver.descriptor(0, kData.raw(), 7, 1, 1); // "hello, " chained to "world"
    driver.descriptor(1, kData.raw() + 7, 5, 0, 0);
    driver.make_available(0);
    driver.notify();
    CHECK(driver.output == "hello, world");
    CHECK(driver.used_index() == 1);
    CHECK(driver.memory.read<std::uint32_t>(kUsed + 4) == 0); // used element id = head 0
    CHECK(driver.irq->edges == 1);
    CHECK((driver.read(0x60) & 1) == 1);
    driver.write(0x64, 1);
    CHECK(driver.read(0x60) == 0);
    CHECK_FALSE(driver.broken());
}

TEST_CASE("hostile descriptor chains break the device, never the VMM", "[virtio]") {
    struct Case {
        const char* what;
        std::uint64_t address;
        std::uint32_t length;
        std::uint16_t flags;
        std::uint16_t next;
    };
    const Case cases[] = {
        {"address outside guest memory", 0x10'0000'0000, 16, 0, 0},
        {"buffer running off the end of RAM", 0xfff0, 0x100, 0, 0},
        {"huge length", kData.raw(), 0xffffffff, 0, 0},
        {"address near 2^64", 0xffff'ffff'ffff'fff0, 0x20, 0, 0},
        {"loop", kData.raw(), 4, 1, 0},
        {"next outside the queue", kData.raw(), 4, 1, 200},
        {"indirect table", kData.raw(), 16, 4, 0},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        Driver driver;
        driver.bring_up();
        driver.descriptor(0, c.address, c.length, c.flags, c.next);
        driver.make_available(0);
        driver.notify();
        CHECK(driver.broken());
        CHECK(driver.output.empty());
        CHECK(driver.used_index() == 0);
        // Once broken it stays quiet, until the driver resets it.
        driver.descriptor(1, kData.raw(), 4, 0, 0);
        driver.make_available(1);
        driver.notify();
        CHECK(driver.output.empty());
        driver.write(0x70, 0);
        CHECK_FALSE(driver.broken());
    }
}

TEST_CASE("a bad head index or avail count breaks the device", "[virtio]") {
    Driver head;
    head.bring_up();
    head.make_available(kQueueSize); // head outside the table
    head.notify();
    CHECK(head.broken());

    Driver count;
    count.bring_up();
    count.memory.write<std::uint16_t>(kAvailable + 2, kQueueSize + 1); // more than fit
    count.notify();
    CHECK(count.broken());

    Driver size;
    size.bring_up();
    size.write(0x30, 1);
    size.write(0x44, 0);
    size.write(0x38, 6); // not a power of two
    size.write(0x44, 1);
    size.descriptor(0, kData.raw(), 1, 0, 0);
    size.make_available(0);
    size.notify();
    CHECK(size.broken());
}

TEST_CASE("queue layout cannot change while the queue is live", "[virtio]") {
    Driver driver;
    driver.bring_up();
    driver.write(0x30, 1);
    driver.write(0x80, 0xdead000); // ignored: queue 1 is ready
    driver.memory.write_bytes(kData, std::span(reinterpret_cast<const std::uint8_t*>("ok"), 2));
    driver.descriptor(0, kData.raw(), 2, 0, 0);
    driver.make_available(0);
    driver.notify();
    CHECK(driver.output == "ok");
    // Out-of-range registers and odd sizes are ignored.
    std::uint8_t byte = 0xff;
    driver.transport.write(0x70, std::span(&byte, 1));
    CHECK(driver.read(0x70) == (1 | 2 | 8 | 4));
    driver.write(0x30, 99);
    CHECK(driver.read(0x34) == 0);
}

TEST_CASE("a full output holds the guest's buffer until there is room", "[virtio]") {
    asio::io_context executor;
    test::WindowSink window(executor, 4);
    Driver slow(executor, window);
    slow.bring_up();
    slow.memory.write_bytes(kData,
                            std::span(reinterpret_cast<const std::uint8_t*>("abcdefghij"), 10));
    slow.descriptor(0, kData.raw(), 10, 0, 0);
    slow.make_available(0);
    slow.notify();
    CHECK(window.held == "abcd");
    CHECK(slow.used_index() == 0); // not returned: the guest's writer waits
    window.drain();
    executor.poll();
    CHECK(window.taken + window.held == "abcdefgh");
    CHECK(slow.used_index() == 0);
    window.drain();
    executor.poll();
    CHECK(window.taken + window.held == "abcdefghij"); // the sink has it all: returned
    CHECK(slow.used_index() == 1);
    CHECK(slow.irq->edges == 1);
    CHECK_FALSE(slow.broken());
}

// A driver that republishes a buffer each time the device takes one keeps the queue
// non-empty forever; the executor must still get to its timers.
struct Republisher : ByteSink {
    Driver* driver = nullptr;
    std::size_t bytes = 0;
    std::size_t offer(std::span<const std::uint8_t> data) override {
        bytes += data.size();
        driver->make_available(0);
        return data.size();
    }
    asio::awaitable<void> room() override { co_return; }
};

TEST_CASE("a driver that keeps the queue full cannot starve the executor", "[virtio]") {
    asio::io_context executor;
    Republisher republisher;
    Driver driver(executor, republisher);
    republisher.driver = &driver;
    driver.bring_up();
    driver.memory.write_bytes(kData, std::span(reinterpret_cast<const std::uint8_t*>("x"), 1));
    driver.descriptor(0, kData.raw(), 1, 0, 0);
    driver.make_available(0);
    driver.write(0x50, 1);
    bool fired = false;
    asio::steady_timer timer(executor, std::chrono::milliseconds(20));
    timer.async_wait([&](const std::error_code&) {
        fired = true;
        executor.stop();
    });
    executor.run();
    CHECK(fired);
    CHECK(republisher.bytes > VirtioMmioTransport::kChainsPerTurn); // it did keep serving
    CHECK_FALSE(driver.broken());
}
