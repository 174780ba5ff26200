#include "ktstr/devices/acpi_pm.hpp"

namespace ktstr {

namespace {
constexpr std::uint16_t kSleepEnable = 1u << 13;
constexpr std::uint16_t kSciEnable = 1u << 0; // always on: the VM has no legacy mode
} // namespace

AcpiPmRegisters::AcpiPmRegisters(std::function<void()> on_power_off)
    : on_power_off_(std::move(on_power_off)) {}

void AcpiPmRegisters::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    const std::uint16_t registers[3] = {status_, enable_, std::uint16_t(control_ | kSciEnable)};
    for (std::size_t i = 0; i < data.size(); ++i) {
        std::uint64_t at = offset + i;
        data[i] = at < kLength ? std::uint8_t(registers[at / 2] >> (8 * (at % 2))) : 0xff;
    }
}

void AcpiPmRegisters::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    bool power_off = false;
    {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < data.size(); ++i) {
            std::uint64_t at = offset + i;
            if (at >= kLength)
                break;
            std::uint16_t shift = std::uint16_t(8 * (at % 2));
            std::uint16_t byte = std::uint16_t(data[i] << shift);
            std::uint16_t mask = std::uint16_t(0xff << shift);
            if (at < 2)
                status_ &= std::uint16_t(~byte); // write one to clear
            else if (at < 4)
                enable_ = std::uint16_t((enable_ & ~mask) | byte);
            else
                control_ = std::uint16_t((control_ & ~mask) | byte);
        }
        power_off = control_ & kSleepEnable;
        control_ &= std::uint16_t(~kSleepEnable); // SLP_EN reads back as zero
    }
    if (power_off && on_power_off_)
        on_power_off_();
}

} // namespace ktstr
