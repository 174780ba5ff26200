#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ktstr {

// The uncompressed vmlinux (an ELF file) inside an x86 bzImage: the payload its setup header
// points at, decompressed on the host so that a PVH boot skips the guest's decompressor.
// zstd payloads only (Debian builds its kernels so); throws Error naming what is not
// supported or is damaged.
std::vector<std::uint8_t> extract_vmlinux(std::span<const std::uint8_t> bzimage);

} // namespace ktstr
