#pragma once

#include "ktstr/vmm/bus.hpp"

#include <functional>

namespace ktstr {

// The keyboard controller at ports 0x60-0x64, reduced to what a PC guest needs from it:
// "no keyboard, nothing pending", and the reset command (0xFE to port 0x64), which the
// kernel issues for `reboot=k` and which ends the VM in order.
class I8042 : public BusDevice {
  public:
    static constexpr std::uint64_t kBase = 0x60;
    static constexpr std::uint64_t kLength = 5;

    explicit I8042(std::function<void()> on_reset);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

  private:
    std::function<void()> on_reset_;
};

} // namespace ktstr
