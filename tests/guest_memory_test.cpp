#include "ktstr/vmm/guest_memory.hpp"

#include <catch2/catch_test_macros.hpp>

using namespace ktstr;

TEST_CASE("guest memory reads and writes inside its regions", "[memory]") {
    GuestMemory memory({{GuestAddress(0), 0x10000}, {GuestAddress(0x100000), 0x2000}});
    CHECK(memory.total_size() == 0x12000);
    memory.write<std::uint32_t>(GuestAddress(0x100ffc), 0xdeadbeef);
    CHECK(memory.read<std::uint32_t>(GuestAddress(0x100ffc)) == 0xdeadbeef);
    memory.write<std::uint8_t>(GuestAddress(0xffff), 7);
    CHECK(memory.slice(GuestAddress(0xffff), 1)[0] == 7);
}

TEST_CASE("guest memory refuses every access outside its regions", "[memory]") {
    GuestMemory memory({{GuestAddress(0), 0x10000}, {GuestAddress(0x20000), 0x1000}});
    // Straddling the end of a region, even into an adjacent one, is refused.
    CHECK_THROWS_AS(memory.slice(GuestAddress(0xfffe), 4), GuestMemoryError);
    CHECK_THROWS_AS(memory.slice(GuestAddress(0x10000), 1), GuestMemoryError);
    CHECK_THROWS_AS(memory.read<std::uint64_t>(GuestAddress(0x20ffc)), GuestMemoryError);
    // Lengths and addresses near 2^64 must not wrap around into a region.
    CHECK_THROWS_AS(memory.slice(GuestAddress(0x20), UINT64_MAX), GuestMemoryError);
    CHECK_THROWS_AS(memory.slice(GuestAddress(UINT64_MAX), 2), GuestMemoryError);
    CHECK_THROWS_AS(GuestAddress(UINT64_MAX - 1) + 2, GuestMemoryError);
    CHECK(memory.slice(GuestAddress(0x20000), 0x1000).size() == 0x1000);
}

TEST_CASE("guest memory layouts must be aligned and disjoint", "[memory]") {
    CHECK_THROWS_AS(GuestMemory({{GuestAddress(0x800), 0x1000}}), Error);
    CHECK_THROWS_AS(GuestMemory({{GuestAddress(0), 0x1800}}), Error);
    CHECK_THROWS_AS(GuestMemory({{GuestAddress(0), 0x2000}, {GuestAddress(0x1000), 0x1000}}),
                    Error);
}
