#pragma once

#include "ktstr/vmm/bus.hpp"

#include <cstdint>
#include <functional>
#include <mutex>

namespace ktstr {

// The ACPI PM1a event block (status, enable) and control block of a VM with no power
// management to speak of: plain registers that read back what the guest set, status bits
// cleared by writing ones, and sleep-enable in the control block treated as power-off
// (the only sleep state a test VM enters is S5).
class AcpiPmRegisters : public BusDevice {
  public:
    // Ports relative to the event block: status 0-1, enable 2-3, control 4-5.
    static constexpr std::uint64_t kLength = 6;

    explicit AcpiPmRegisters(std::function<void()> on_power_off);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

  private:
    std::mutex mutex_;
    std::function<void()> on_power_off_;
    std::uint16_t status_ = 0;
    std::uint16_t enable_ = 0;
    std::uint16_t control_ = 0;
};

} // namespace ktstr
