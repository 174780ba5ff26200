#include "ktstr/base/error.hpp"
#include "ktstr/vmm/x86_64/boot.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"

#include <catch2/catch_test_macros.hpp>
#include <cstring>
#include <elf.h>

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

namespace {

// A minimal x86-64 vmlinux: one PT_LOAD (0x100 bytes of 0xab in the file, 0x2000 in memory)
// at `physical`, and a PT_NOTE holding Xen's PHYS32_ENTRY note for `entry` (unless omitted).
std::vector<std::uint8_t> fake_vmlinux(std::uint64_t physical = 0x200000,
                                       std::uint64_t entry = 0x200010, bool with_note = true,
                                       std::uint64_t file_size = 0x100) {
    std::vector<std::uint8_t> image(0x1100, 0);
    Elf64_Ehdr header{};
    std::memcpy(header.e_ident, ELFMAG, SELFMAG);
    header.e_ident[EI_CLASS] = ELFCLASS64;
    header.e_ident[EI_DATA] = ELFDATA2LSB;
    header.e_ident[EI_VERSION] = EV_CURRENT;
    header.e_type = ET_EXEC;
    header.e_machine = EM_X86_64;
    header.e_version = EV_CURRENT;
    header.e_phoff = sizeof header;
    header.e_ehsize = sizeof header;
    header.e_phentsize = sizeof(Elf64_Phdr);
    header.e_phnum = 2;
    std::memcpy(image.data(), &header, sizeof header);
    struct {
        Elf64_Nhdr header{4, 8, 18}; // XEN_ELFNOTE_PHYS32_ENTRY
        char name[4] = {'X', 'e', 'n', 0};
        std::uint64_t entry;
    } note;
    note.entry = entry;
    if (!with_note)
        note.header.n_type = 5;
    std::memcpy(image.data() + 0x200, &note, sizeof note);
    Elf64_Phdr load{PT_LOAD, PF_R | PF_X, 0x1000, physical, physical, file_size, 0x2000, 0x1000};
    Elf64_Phdr notes{PT_NOTE, PF_R, 0x200, 0, 0, sizeof note, sizeof note, 4};
    std::memcpy(image.data() + sizeof header, &load, sizeof load);
    std::memcpy(image.data() + sizeof header + sizeof load, &notes, sizeof notes);
    std::fill(image.begin() + 0x1000, image.end(), 0xab);
    return image;
}

} // namespace

TEST_CASE("a vmlinux is entered through PVH with start_info, memory map and initrd", "[boot]") {
    GuestMemory memory(ram_layout(64ull << 20));
    auto stale = memory.slice(GuestAddress(0x200100), 0x100);
    std::fill(stale.begin(), stale.end(), 0x55); // the segment's bss must come out zeroed
    std::vector<std::uint8_t> initrd(0x3000, 0x77);
    auto elf = fake_vmlinux();
    REQUIRE(is_elf_image(elf));
    CHECK_FALSE(is_elf_image(fake_bzimage()));
    BootInfo boot = load_pvh_kernel(memory, {elf, initrd, "console=ttyS0", GuestAddress(0xe0000)});
    CHECK(boot.pvh);
    CHECK(boot.entry == GuestAddress(0x200010));
    CHECK(boot.kernel_end == 0x202000);
    CHECK(memory.read<std::uint8_t>(GuestAddress(0x2000ff)) == 0xab);
    CHECK(memory.read<std::uint8_t>(GuestAddress(0x200100)) == 0);
    CHECK(memory.read<std::uint8_t>(GuestAddress(0x201fff)) == 0);

    // hvm_start_info version 1: magic, version, flags, nr_modules, modlist, cmdline, rsdp,
    // memmap, memmap_entries.
    CHECK(memory.read<std::uint32_t>(kPvhStartInfo) == 0x336ec578);
    CHECK(memory.read<std::uint32_t>(kPvhStartInfo + 4) == 1);
    CHECK(memory.read<std::uint32_t>(kPvhStartInfo + 12) == 1);
    auto modlist = memory.read<std::uint64_t>(kPvhStartInfo + 16);
    CHECK(memory.read<std::uint64_t>(kPvhStartInfo + 24) == kCommandLine.raw());
    CHECK(memory.read<std::uint64_t>(kPvhStartInfo + 32) == 0xe0000);
    auto memmap = memory.read<std::uint64_t>(kPvhStartInfo + 40);
    REQUIRE(memory.read<std::uint32_t>(kPvhStartInfo + 48) == 3);

    auto initrd_at = memory.read<std::uint64_t>(GuestAddress(modlist));
    CHECK(initrd_at == boot.initrd.raw());
    CHECK(initrd_at % 4096 == 0);
    CHECK(initrd_at >= boot.kernel_end);
    CHECK(memory.read<std::uint64_t>(GuestAddress(modlist + 8)) == initrd.size());
    CHECK(memory.read<std::uint8_t>(GuestAddress(initrd_at)) == 0x77);
    std::vector<std::uint8_t> cmdline(14);
    memory.read_bytes(kCommandLine, cmdline);
    CHECK(std::string(reinterpret_cast<char*>(cmdline.data())) == "console=ttyS0");

    // The same map as E820's: low RAM, the reserved BIOS area, RAM from 1 MiB to the end.
    auto entry = [&](int i, int field) {
        GuestAddress at(memmap + i * 24 + field * 8);
        return field == 2 ? memory.read<std::uint32_t>(at) : memory.read<std::uint64_t>(at);
    };
    CHECK(entry(0, 0) == 0);
    CHECK(entry(0, 2) == 1);
    CHECK(entry(1, 0) == kEbdaStart.raw());
    CHECK(entry(1, 2) == 2);
    CHECK(entry(2, 0) + entry(2, 1) == 64ull << 20);
    CHECK(entry(2, 2) == 1);
}

TEST_CASE("a vmlinux without a PVH entry, or whose segments do not fit, is refused", "[boot]") {
    GuestMemory memory(ram_layout(64ull << 20));
    auto refused = [&](std::vector<std::uint8_t> elf) {
        CHECK_THROWS_AS(load_pvh_kernel(memory, {elf, {}, "", {}}), UsageError);
    };
    refused(fake_vmlinux(0x200000, 0x200010, false)); // no PHYS32_ENTRY note
    refused(fake_vmlinux(0x200000, 0x300000));        // the entry is in no segment
    refused(fake_vmlinux(0x1000, 0x1010));            // over the boot tables below 1 MiB
    refused(fake_vmlinux((64ull << 20) - 0x1000, (64ull << 20) - 0xff0)); // past the end of RAM
    refused(fake_vmlinux(0x200000, 0x200010, true, 0x1000)); // the segment runs off the file
    refused(std::vector<std::uint8_t>(0x1000, 0));
    auto elf = fake_vmlinux();
    elf[0x12] = 0xb7; // EM_AARCH64
    refused(elf);
    CHECK_THROWS_AS(load_pvh_kernel(memory, {fake_vmlinux(), {}, std::string(2048, 'x'), {}}),
                    UsageError);
}
