#include "ktstr/base/error.hpp"
#include "ktstr/vmm/aarch64/boot.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <cstring>
#include <vector>

using namespace ktstr;
using namespace ktstr::aarch64;

namespace {

// A minimal Image: a header with the magic, then `size` bytes in all.
std::vector<std::uint8_t> fake_image(std::uint64_t text_offset, std::uint64_t image_size,
                                     std::size_t size = 4096) {
    std::vector<std::uint8_t> image(size, 0x11);
    std::memcpy(image.data() + 8, &text_offset, 8);
    std::memcpy(image.data() + 16, &image_size, 8);
    std::memcpy(image.data() + 56, "ARM\x64", 4);
    return image;
}

} // namespace

TEST_CASE("an arm64 Image goes text_offset above RAM's start, its initrd after it", "[aarch64]") {
    MemoryMap map = memory_map(2, 64ull << 20);
    GuestMemory memory({{map.ram.base, map.ram.size}});
    std::vector<std::uint8_t> image = fake_image(0x10000, 3ull << 20);
    std::vector<std::uint8_t> initrd(5000, 0x77);
    BootInfo boot = load_image(memory, map, image, initrd);
    CHECK(boot.entry == map.ram.base + 0x10000);
    CHECK(memory.read<std::uint32_t>(boot.entry + 56) == 0x644d5241);
    REQUIRE(boot.initrd);
    // The first 2 MiB boundary past the kernel's whole size (image_size, BSS included).
    CHECK(boot.initrd->base == map.ram.base + (4ull << 20));
    CHECK(boot.initrd->size == initrd.size());
    CHECK(memory.read<std::uint8_t>(boot.initrd->base + 4999) == 0x77);
    CHECK(boot.initrd->end() <= map.fdt.base);

    CHECK_FALSE(load_image(memory, map, image, {}).initrd);
}

TEST_CASE("an Image without image_size is an old kernel at 0x80000", "[aarch64]") {
    MemoryMap map = memory_map(1, 64ull << 20);
    ImageHeader header = read_image_header(fake_image(0x1234, 0, 8192));
    CHECK(header.text_offset == 0x80000);
    CHECK(header.image_size == 8192);
    CHECK(map.kernel(header.text_offset) == map.ram.base + 0x80000);
}

TEST_CASE("what is not an arm64 Image, or does not fit, is refused with a reason", "[aarch64]") {
    std::vector<std::uint8_t> bzimage(8192, 0);
    std::memcpy(bzimage.data() + 0x202, "HdrS", 4);
    CHECK_THROWS_WITH(read_image_header(bzimage),
                      "the kernel is an x86 bzImage, not an arm64 Image");
    CHECK_THROWS_AS(read_image_header(std::vector<std::uint8_t>(8192, 0)), UsageError);
    CHECK_THROWS_AS(read_image_header(std::vector<std::uint8_t>(16, 0)), UsageError);
    // A header that claims less than the file holds.
    CHECK_THROWS_AS(read_image_header(fake_image(0, 100, 4096)), UsageError);

    MemoryMap map = memory_map(1, 8ull << 20); // 6 MiB below the device tree
    GuestMemory memory({{map.ram.base, map.ram.size}});
    CHECK_THROWS_AS(load_image(memory, map, fake_image(0, 7ull << 20), {}), UsageError);
    std::vector<std::uint8_t> big_initrd(5ull << 20);
    CHECK_THROWS_AS(load_image(memory, map, fake_image(0, 1ull << 20), big_initrd), UsageError);
    CHECK_THROWS_AS(load_image(memory, map, fake_image(~0ull - 10, 4096), {}), UsageError);
}
