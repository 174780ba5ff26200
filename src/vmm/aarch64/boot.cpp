#include "ktstr/vmm/aarch64/boot.hpp"

#include "ktstr/base/error.hpp"

#include <cstring>
#include <fmt/format.h>

namespace ktstr::aarch64 {

namespace {

constexpr std::size_t kHeaderSize = 64;
constexpr std::size_t kTextOffsetField = 8, kImageSizeField = 16, kMagicField = 56;
constexpr char kMagic[4] = {'A', 'R', 'M', 0x64};
// booting.rst: an image_size of 0 comes from kernels older than 3.17, whose text_offset is
// then 0x80000 whatever the field says.
constexpr std::uint64_t kLegacyTextOffset = 0x80000;

std::uint64_t field64(std::span<const std::uint8_t> image, std::size_t at) {
    std::uint64_t value;
    std::memcpy(&value, image.data() + at, sizeof value); // little-endian, as every host here
    return value;
}

} // namespace

ImageHeader read_image_header(std::span<const std::uint8_t> image) {
    if (image.size() >= 0x206 && std::memcmp(image.data() + 0x202, "HdrS", 4) == 0)
        throw UsageError("the kernel is an x86 bzImage, not an arm64 Image");
    if (image.size() < kHeaderSize || std::memcmp(image.data() + kMagicField, kMagic, 4) != 0)
        throw UsageError("the kernel is not an arm64 Image (no 'ARM\\x64' magic at offset 0x38)");
    ImageHeader header{field64(image, kTextOffsetField), field64(image, kImageSizeField)};
    if (header.image_size == 0)
        header = {kLegacyTextOffset, image.size()};
    if (header.image_size < image.size())
        throw UsageError(fmt::format("the arm64 Image is {} bytes but its header says it "
                                     "occupies {}",
                                     image.size(), header.image_size));
    return header;
}

BootInfo load_image(const GuestMemory& memory, const MemoryMap& map,
                    std::span<const std::uint8_t> image, std::span<const std::uint8_t> initrd) {
    ImageHeader header = read_image_header(image);
    // Throws when the kernel and initrd do not fit below the device tree.
    GuestAddress initrd_at = map.initrd(header.text_offset, header.image_size, initrd.size());
    BootInfo boot{map.kernel(header.text_offset), std::nullopt};
    memory.write_bytes(boot.entry, image);
    if (!initrd.empty()) {
        memory.write_bytes(initrd_at, initrd);
        boot.initrd = Region{initrd_at, initrd.size()};
    }
    return boot;
}

} // namespace ktstr::aarch64
