#include "ktstr/base/error.hpp"
#include "ktstr/vmm/bus.hpp"

#include <catch2/catch_test_macros.hpp>
#include <vector>

using namespace ktstr;

namespace {
struct Recorder : BusDevice {
    std::vector<std::uint64_t> offsets;
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
        offsets.push_back(offset);
        for (auto& byte : data)
            byte = 0x42;
    }
    void write(std::uint64_t offset, std::span<const std::uint8_t>) override {
        offsets.push_back(offset);
    }
};
} // namespace

TEST_CASE("the bus routes accesses inside a device's range, with offsets", "[bus]") {
    Bus bus;
    auto a = std::make_shared<Recorder>();
    auto b = std::make_shared<Recorder>();
    bus.insert(0x3f8, 8, a);
    bus.insert(0x400, 0x100, b);
    std::uint8_t data[2] = {};
    CHECK(bus.read(0x3fd, std::span(data, 1)));
    CHECK(data[0] == 0x42);
    CHECK(bus.write(0x4fe, data));
    CHECK(a->offsets == std::vector<std::uint64_t>{5});
    CHECK(b->offsets == std::vector<std::uint64_t>{0xfe});

    // Straddling a device's end, or nothing there: not delivered; reads see all ones.
    CHECK_FALSE(bus.read(0x3ff, data));
    CHECK(data[0] == 0xff);
    CHECK_FALSE(bus.write(0x4ff, data));
    CHECK_FALSE(bus.read(0x300, data));
    CHECK_FALSE(bus.read(UINT64_MAX, std::span(data, 1)));
    CHECK(a->offsets.size() == 1);
}

TEST_CASE("bus ranges cannot overlap or wrap", "[bus]") {
    Bus bus;
    bus.insert(0x100, 0x10, std::make_shared<Recorder>());
    CHECK_THROWS_AS(bus.insert(0x10f, 1, std::make_shared<Recorder>()), Error);
    CHECK_THROWS_AS(bus.insert(0xf0, 0x11, std::make_shared<Recorder>()), Error);
    CHECK_THROWS_AS(bus.insert(UINT64_MAX, 2, std::make_shared<Recorder>()), Error);
    CHECK_NOTHROW(bus.insert(0x110, 1, std::make_shared<Recorder>()));
}
