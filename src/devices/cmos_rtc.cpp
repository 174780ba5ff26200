#include "ktstr/devices/cmos_rtc.hpp"

#include <ctime>

namespace ktstr {

namespace {
constexpr std::uint8_t kSeconds = 0x00, kMinutes = 0x02, kHours = 0x04, kWeekday = 0x06,
                       kDay = 0x07, kMonth = 0x08, kYear = 0x09, kStatusA = 0x0a, kStatusB = 0x0b,
                       kStatusC = 0x0c, kStatusD = 0x0d, kCentury = 0x32;
constexpr std::uint8_t kStatusA32kHzDivider = 0x26; // UIP (bit 7) stays clear
constexpr std::uint8_t kStatusB24Hour = 0x02;       // BCD, 24-hour, no interrupts
constexpr std::uint8_t kStatusDValidRam = 0x80;

std::uint8_t bcd(int value) { return std::uint8_t((value / 10) << 4 | (value % 10)); }
} // namespace

std::uint8_t CmosRtc::read_register(std::uint8_t index) const {
    std::time_t now = std::time(nullptr);
    std::tm utc{};
    ::gmtime_r(&now, &utc);
    switch (index) {
    case kSeconds: return bcd(utc.tm_sec);
    case kMinutes: return bcd(utc.tm_min);
    case kHours: return bcd(utc.tm_hour);
    case kWeekday: return bcd(utc.tm_wday + 1);
    case kDay: return bcd(utc.tm_mday);
    case kMonth: return bcd(utc.tm_mon + 1);
    case kYear: return bcd(utc.tm_year % 100);
    case kCentury: return bcd((utc.tm_year + 1900) / 100);
    case kStatusA: return kStatusA32kHzDivider;
    case kStatusB: return kStatusB24Hour;
    case kStatusC: return 0;
    case kStatusD: return kStatusDValidRam;
    default: return ram_[index];
    }
}

void CmosRtc::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    for (auto& byte : data)
        byte = offset == 1 ? read_register(index_) : 0xff;
}

void CmosRtc::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    if (data.size() != 1)
        return;
    if (offset == 0)
        index_ = data[0] & 0x7f; // bit 7 masks NMIs on real hardware
    else if (index_ >= 0x0e)     // the clock itself is read-only here; the rest is plain RAM
        ram_[index_] = data[0];
}

} // namespace ktstr
