#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ktstr {

// Decompresses a whole .xz stream; throws Error on corrupt input.
std::vector<std::uint8_t> xz_decompress(std::span<const std::uint8_t> compressed);

} // namespace ktstr
