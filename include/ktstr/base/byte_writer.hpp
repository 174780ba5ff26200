#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace ktstr {

// Builds a little-endian byte structure field by field: firmware tables (ACPI, MP) and
// the like.
class ByteWriter {
  public:
    void u8(std::uint8_t value) { bytes_.push_back(value); }
    void u16(std::uint16_t value) { little_endian(value, 2); }
    void u32(std::uint32_t value) { little_endian(value, 4); }
    void u64(std::uint64_t value) { little_endian(value, 8); }
    void text(std::string_view text) { bytes_.insert(bytes_.end(), text.begin(), text.end()); }
    void append(std::span<const std::uint8_t> bytes) {
        bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
    }
    void zeros(std::size_t count) { bytes_.resize(bytes_.size() + count); }
    std::size_t size() const { return bytes_.size(); }
    std::vector<std::uint8_t> take() { return std::move(bytes_); }

  private:
    void little_endian(std::uint64_t value, int size) {
        for (int i = 0; i < size; ++i)
            bytes_.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
    }
    std::vector<std::uint8_t> bytes_;
};

// The byte that makes `bytes` sum to zero (mod 256), as ACPI and MP table checksums want.
inline std::uint8_t checksum_for(std::span<const std::uint8_t> bytes) {
    std::uint8_t sum = 0;
    for (std::uint8_t byte : bytes)
        sum = static_cast<std::uint8_t>(sum + byte);
    return static_cast<std::uint8_t>(0x100 - sum);
}

} // namespace ktstr
