#pragma once

#include "ktstr/vmm/bus.hpp"

#include <array>
#include <cstdint>
#include <mutex>

namespace ktstr {

// The MC146818 CMOS clock at ports 0x70 (index) and 0x71 (data): the host's current UTC
// time in BCD, never "update in progress". Without it, a PC kernel polls the missing chip
// tens of thousands of times per boot, each poll a VM exit.
class CmosRtc : public BusDevice {
  public:
    static constexpr std::uint64_t kBase = 0x70;
    static constexpr std::uint64_t kLength = 2;

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

  private:
    std::uint8_t read_register(std::uint8_t index) const;

    std::mutex mutex_;
    std::uint8_t index_ = 0;
    std::array<std::uint8_t, 128> ram_{};
};

} // namespace ktstr
