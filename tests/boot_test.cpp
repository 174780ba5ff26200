#include "ktstr/base/error.hpp"
#include "ktstr/vmm/x86_64/boot.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"

#include <catch2/catch_test_macros.hpp>
#include <cstring>

using namespace ktstr;
using namespace ktstr::x86_64;

namespace {

// A minimal bzImage: 4 setup sectors plus the boot sector, then a 64 KiB "kernel".
std::vector<std::uint8_t> fake_bzimage(std::uint16_t protocol = 0x020f) {
    std::vector<std::uint8_t> image(5 * 512 + 0x10000, 0);
    image[0x1f1] = 4;
    image[0x1fe] = 0x55;
    image[0x1ff] = 0xaa;
    image[0x201] = 0x6a; // jump: header runs to 0x26c
    std::memcpy(&image[0x202], "HdrS", 4);
    std::memcpy(&image[0x206], &protocol, 2);
    image[0x211] = 0x01; // LOADED_HIGH
    std::uint32_t initrd_max = 0x7fffffff, cmdline_size = 2048, init_size = 0x200000;
    std::memcpy(&image[0x22c], &initrd_max, 4);
    std::uint16_t xloadflags = 0x1;
    std::memcpy(&image[0x236], &xloadflags, 2);
    std::memcpy(&image[0x238], &cmdline_size, 4);
    std::memcpy(&image[0x260], &init_size, 4);
    image[5 * 512] = 0xe9; // first byte of the protected-mode kernel
    return image;
}

} // namespace

TEST_CASE("RAM never overlaps the 3-4 GiB MMIO hole", "[boot]") {
    auto small = ram_layout(512ull << 20);
    REQUIRE(small.size() == 1);
    CHECK(small[0].size == 512ull << 20);
    auto big = ram_layout(5ull << 30);
    REQUIRE(big.size() == 2);
    CHECK(big[0].start.raw() + big[0].size == kMmioHoleStart.raw());
    CHECK(big[1].start == kMmioHoleEnd);
    CHECK(big[0].size + big[1].size == 5ull << 30);
}

TEST_CASE("a bzImage is loaded with boot_params, E820, command line and initrd", "[boot]") {
    GuestMemory memory(ram_layout(64ull << 20));
    std::vector<std::uint8_t> initrd(0x3000, 0x77);
    BootInfo boot =
        load_kernel(memory, {fake_bzimage(), initrd, "console=ttyS0 quiet", GuestAddress(0xe0000)});
    CHECK(boot.entry == kKernel + 0x200);
    CHECK(memory.read<std::uint8_t>(kKernel) == 0xe9);
    CHECK(memory.read<std::uint32_t>(kBootParams + 0x202) == 0x53726448); // "HdrS" copied
    CHECK(memory.read<std::uint8_t>(kBootParams + 0x210) == 0xff);
    CHECK(memory.read<std::uint64_t>(kBootParams + 0x70) == 0xe0000);
    CHECK(memory.read<std::uint32_t>(kBootParams + 0x228) == kCommandLine.raw());
    std::vector<std::uint8_t> cmdline(20);
    memory.read_bytes(kCommandLine, cmdline);
    CHECK(std::string(reinterpret_cast<char*>(cmdline.data())) == "console=ttyS0 quiet");

    auto initrd_at = memory.read<std::uint32_t>(kBootParams + 0x218);
    CHECK(initrd_at == boot.initrd.raw());
    CHECK(initrd_at % 4096 == 0);
    CHECK(initrd_at + initrd.size() <= 64ull << 20);
    CHECK(initrd_at >= boot.kernel_end);
    CHECK(memory.read<std::uint32_t>(kBootParams + 0x21c) == initrd.size());
    CHECK(memory.read<std::uint8_t>(GuestAddress(initrd_at)) == 0x77);

    // E820: low RAM, the reserved BIOS area (holding the ACPI tables), RAM from 1 MiB.
    REQUIRE(memory.read<std::uint8_t>(kBootParams + 0x1e8) == 3);
    auto entry = [&](int i, int field) {
        return field == 2 ? memory.read<std::uint32_t>(kBootParams + 0x2d0 + i * 20 + 16)
                          : memory.read<std::uint64_t>(kBootParams + 0x2d0 + i * 20 + field * 8);
    };
    CHECK(entry(1, 0) == kEbdaStart.raw());
    CHECK(entry(1, 2) == 2);
    CHECK(entry(2, 0) == kKernel.raw());
    CHECK(entry(2, 0) + entry(2, 1) == 64ull << 20);
    CHECK(entry(2, 2) == 1);

    // Identity map: the first and last 2 MiB page of the low 4 GiB.
    CHECK(memory.read<std::uint64_t>(kPageDirectories) == 0x83);
    CHECK(memory.read<std::uint64_t>(kPageDirectories + (4 * 4096 - 8)) == 0xffe00083);
}

TEST_CASE("unusable kernels and sizes are refused with a reason", "[boot]") {
    GuestMemory memory(ram_layout(64ull << 20));
    CHECK_THROWS_AS(load_kernel(memory, {std::vector<std::uint8_t>(8192, 0), {}, "", {}}),
                    UsageError);
    CHECK_THROWS_AS(load_kernel(memory, {fake_bzimage(0x0206), {}, "", {}}), UsageError);
    CHECK_THROWS_AS(load_kernel(memory, {fake_bzimage(), {}, std::string(4096, 'x'), {}}),
                    UsageError);
    std::vector<std::uint8_t> huge_initrd(63ull << 20);
    CHECK_THROWS_AS(load_kernel(memory, {fake_bzimage(), huge_initrd, "", {}}), UsageError);
    GuestMemory tiny(ram_layout(2ull << 20));
    CHECK_THROWS_AS(load_kernel(tiny, {fake_bzimage(), {}, "", {}}), UsageError);
}
