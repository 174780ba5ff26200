#include "ktstr/devices/i8042.hpp"

#include <algorithm>

namespace ktstr {

namespace {
constexpr std::uint64_t kCommandPort = 4; // 0x64, relative to 0x60
constexpr std::uint8_t kResetCommand = 0xfe;
} // namespace

I8042::I8042(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}

void I8042::read(std::uint64_t, std::span<std::uint8_t> data) {
    // Status 0: output buffer empty, input buffer empty; data reads see nothing pending.
    std::fill(data.begin(), data.end(), 0);
}

void I8042::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (offset == kCommandPort && data.size() == 1 && data[0] == kResetCommand && on_reset_)
        on_reset_();
}

} // namespace ktstr
