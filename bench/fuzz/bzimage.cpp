// x86_64::load_kernel with the fuzz input as the bzImage: a kernel image is a file the user
// names (`--kernel PATH`), so its header fields are untrusted. Guest RAM is laid out by
// ram_layout(256 MiB) once per process (the mapping is reserved, not populated, and
// load_kernel's result does not depend on what an earlier input left in it).
//
// Each input is loaded twice: with no initrd and an empty command line, and with a 12 KiB
// initrd and a command line of 0-255 bytes (its length from the input's last byte).
// Invariants for a load that succeeds: the entry is 1 MiB + 0x200; kernel_end lies in low RAM
// and covers the payload; the payload is in RAM at 1 MiB; the initrd is page-aligned, above
// kernel_end, below both the end of low RAM and the header's initrd_addr_max, and holds the
// initrd; boot_params carry the image's header (as far as its jump says), the loader type, the
// command line pointer (with the command line there, NUL-terminated), the initrd's place and an
// E820 map that covers only guest RAM. A rejected image is a UsageError, never another exception.
#include "fuzz_target.hpp"
#include "ktstr/base/error.hpp"
#include "ktstr/vmm/x86_64/boot.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace ktstr_fuzz_bzimage {

using namespace ktstr;
using namespace ktstr::x86_64;

constexpr std::uint64_t kRamSize = 256ull << 20;

const GuestMemory& memory() {
    static const GuestMemory ram(ram_layout(kRamSize));
    return ram;
}

template <typename T>
T field(std::span<const std::uint8_t> bytes, std::size_t at) {
    T value;
    std::memcpy(&value, bytes.data() + at, sizeof value);
    return value;
}

void check_loaded(const GuestMemory& ram, const BootImage& image, const BootInfo& info) {
    const auto& bz = image.kernel;
    const auto& low = ram.regions().front();
    KTSTR_FUZZ_CHECK(info.entry == kKernel + 0x200);
    std::size_t setup_sects = bz[0x1f1] ? bz[0x1f1] : 4;
    std::size_t payload_offset = (setup_sects + 1) * 512;
    KTSTR_FUZZ_CHECK(payload_offset < bz.size());
    std::size_t payload_size = bz.size() - payload_offset;
    KTSTR_FUZZ_CHECK(info.kernel_end >= kKernel.raw() + payload_size);
    KTSTR_FUZZ_CHECK(info.kernel_end >= kKernel.raw() + field<std::uint32_t>(bz, 0x260));
    KTSTR_FUZZ_CHECK(info.kernel_end <= low.end().raw());
    auto loaded = ram.slice(kKernel, payload_size);
    KTSTR_FUZZ_CHECK(std::memcmp(loaded.data(), bz.data() + payload_offset, payload_size) == 0);

    auto params = ram.slice(kBootParams, 0x1000);
    // The setup header is copied as far as the image's jump at 0x200 says it reaches
    // (0x202 + byte 0x201). An image may claim a header shorter than the fields load_kernel
    // itself reads (init_size at 0x260, say); load_kernel accepts that, so the guest's copy
    // then lacks them. Only what the header covers is checked.
    std::size_t header_end = 0x202 + bz[0x201];
    if (header_end >= 0x206)
        KTSTR_FUZZ_CHECK(std::memcmp(params.data() + 0x202, "HdrS", 4) == 0);
    KTSTR_FUZZ_CHECK(std::memcmp(params.data() + 0x1f1, bz.data() + 0x1f1,
                                 std::min<std::size_t>(header_end, 0x210) - 0x1f1) == 0);
    KTSTR_FUZZ_CHECK(params[0x210] == 0xff);
    std::uint32_t cmdline_at;
    std::memcpy(&cmdline_at, params.data() + 0x228, 4);
    KTSTR_FUZZ_CHECK(cmdline_at == kCommandLine.raw());
    auto cmdline = ram.slice(kCommandLine, image.command_line.size() + 1);
    // An empty command line's view may have no data pointer, which memcmp must not get.
    KTSTR_FUZZ_CHECK(
        image.command_line.empty() ||
        std::memcmp(cmdline.data(), image.command_line.data(), image.command_line.size()) == 0);
    KTSTR_FUZZ_CHECK(cmdline[image.command_line.size()] == 0);
    KTSTR_FUZZ_CHECK(image.command_line.size() <= field<std::uint32_t>(bz, 0x238));
    // The kernel, the command line and boot_params do not overlap what the loader wrote
    // after them: the command line and boot_params sit below 1 MiB.
    KTSTR_FUZZ_CHECK(kCommandLine.raw() + image.command_line.size() + 1 <= kEbdaStart.raw());

    std::uint32_t initrd_at, initrd_size;
    std::memcpy(&initrd_at, params.data() + 0x218, 4);
    std::memcpy(&initrd_size, params.data() + 0x21c, 4);
    if (image.initrd.empty()) {
        KTSTR_FUZZ_CHECK(info.initrd.raw() == 0);
    } else {
        std::uint64_t at = info.initrd.raw();
        KTSTR_FUZZ_CHECK(at == initrd_at && initrd_size == image.initrd.size());
        KTSTR_FUZZ_CHECK(at % 4096 == 0);
        KTSTR_FUZZ_CHECK(at >= info.kernel_end);
        KTSTR_FUZZ_CHECK(at + image.initrd.size() <= low.end().raw());
        KTSTR_FUZZ_CHECK(at + image.initrd.size() <=
                         std::uint64_t(field<std::uint32_t>(bz, 0x22c)) + 1);
        auto placed = ram.slice(info.initrd, image.initrd.size());
        KTSTR_FUZZ_CHECK(std::memcmp(placed.data(), image.initrd.data(), placed.size()) == 0);
    }

    std::uint8_t entries = params[0x1e8];
    KTSTR_FUZZ_CHECK(entries >= 3 && entries <= 128);
    for (std::size_t i = 0; i < entries; ++i) {
        std::uint64_t address, size;
        std::uint32_t type;
        std::memcpy(&address, params.data() + 0x2d0 + 20 * i, 8);
        std::memcpy(&size, params.data() + 0x2d0 + 20 * i + 8, 8);
        std::memcpy(&type, params.data() + 0x2d0 + 20 * i + 16, 4);
        KTSTR_FUZZ_CHECK(type == 1 || type == 2);
        if (type == 1) // RAM the guest may use is guest RAM
            KTSTR_FUZZ_CHECK(size > 0 && ram.slice(GuestAddress(address), size).size() == size);
    }
}

void load(const BootImage& image) {
    try {
        BootInfo info = load_kernel(memory(), image);
        check_loaded(memory(), image, info);
    } catch (const UsageError&) {
        // Not a usable bzImage, or it does not fit: what a bad --kernel gets.
    }
}

} // namespace ktstr_fuzz_bzimage

KTSTR_FUZZ_TARGET(bzimage) {
    using namespace ktstr_fuzz_bzimage;
    ktstr::x86_64::BootImage image;
    image.kernel = {data, size};
    load(image);
    const std::vector<std::uint8_t> initrd(12 * 1024, 0x5a);
    const std::string command_line(size ? data[size - 1] : 0, 'c');
    image.initrd = initrd;
    image.command_line = command_line;
    image.rsdp = ktstr::GuestAddress(0xe0000);
    load(image);
    return 0;
}
