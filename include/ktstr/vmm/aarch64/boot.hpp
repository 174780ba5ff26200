#pragma once

#include "ktstr/vmm/aarch64/layout.hpp"
#include "ktstr/vmm/guest_memory.hpp"

#include <cstdint>
#include <optional>
#include <span>

// Loading an arm64 kernel Image (Documentation/arch/arm64/booting.rst). Pure data: built and
// tested on any host.
namespace ktstr::aarch64 {

// The fields of the Image header a loader needs.
struct ImageHeader {
    std::uint64_t text_offset; // where above a 2 MiB-aligned base the Image goes
    std::uint64_t image_size;  // what the kernel occupies there, BSS included
};

// Reads the header; throws UsageError naming what is wrong (an x86 bzImage is named as one).
ImageHeader read_image_header(std::span<const std::uint8_t> image);

struct BootInfo {
    GuestAddress entry;           // the Image's first instruction
    std::optional<Region> initrd; // where the initrd went, if there is one
};

// Copies the Image to RAM's start (plus text_offset) and the initrd after it, below the
// device tree's place. Throws UsageError when the image is not an arm64 Image or they do
// not fit.
BootInfo load_image(const GuestMemory& memory, const MemoryMap& map,
                    std::span<const std::uint8_t> image, std::span<const std::uint8_t> initrd);

} // namespace ktstr::aarch64
