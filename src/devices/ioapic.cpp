#include "ktstr/devices/ioapic.hpp"

#include <algorithm>
#include <cstring>

namespace ktstr {

namespace {

// Register window: the guest writes a register index to IOREGSEL, then reads or writes the
// register through IOWIN, both 32 bits wide.
constexpr std::uint64_t kRegisterSelect = 0x00;
constexpr std::uint64_t kRegisterWindow = 0x10;

constexpr std::uint32_t kIdRegister = 0x00;
constexpr std::uint32_t kVersionRegister = 0x01;
constexpr std::uint32_t kArbitrationRegister = 0x02;
constexpr std::uint32_t kFirstRedirectionRegister = 0x10; // two per pin: low, then high word

constexpr std::uint32_t kVersion = 0x11;
constexpr std::uint32_t kIdMask = 0x0f000000;

// Redirection entry fields.
constexpr std::uint64_t kVectorMask = 0xff;
constexpr unsigned kDeliveryModeShift = 8;
constexpr std::uint64_t kDeliveryModeMask = 0x7;
constexpr std::uint64_t kLogicalDestination = 1ull << 11;
constexpr std::uint64_t kMasked = Ioapic::kMaskedEntry;
// Delivery status (bit 12) and remote IRR (bit 14) belong to the hardware; with edge-only
// delivery they stay clear, so guest writes to them are dropped.
constexpr std::uint64_t kReadOnlyBits = (1ull << 12) | (1ull << 14);
constexpr unsigned kExtendedDestinationShift = 49; // destination bits 8-14
constexpr unsigned kDestinationShift = 56;         // destination bits 0-7

constexpr std::uint64_t kMsiBaseAddress = 0xfee00000;
constexpr unsigned kMsiDestinationShift = 12;
constexpr std::uint64_t kMsiLogicalDestination = 1ull << 2;

} // namespace

Ioapic::Ioapic(RouteUpdate on_routes_changed) : on_routes_changed_(std::move(on_routes_changed)) {
    redirection_.fill(kMasked);
}

std::optional<MsiMessage> Ioapic::route_of(std::uint64_t entry) {
    if (entry & kMasked)
        return std::nullopt;
    std::uint32_t destination = std::uint32_t(entry >> kDestinationShift) |
                                std::uint32_t((entry >> kExtendedDestinationShift) & 0x7f) << 8;
    MsiMessage message;
    message.address = kMsiBaseAddress | std::uint64_t(destination & 0xff) << kMsiDestinationShift |
                      std::uint64_t(destination & ~0xffu) << 32;
    if (entry & kLogicalDestination)
        message.address |= kMsiLogicalDestination;
    message.data = std::uint32_t(entry & kVectorMask) |
                   std::uint32_t((entry >> kDeliveryModeShift) & kDeliveryModeMask)
                       << kDeliveryModeShift;
    return message;
}

void Ioapic::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    std::uint32_t value = 0;
    if (data.size() == 4) {
        std::lock_guard lock(mutex_);
        if (offset == kRegisterSelect)
            value = select_;
        else if (offset == kRegisterWindow)
            value = read_register(select_);
    }
    std::memcpy(data.data(), &value, std::min<std::size_t>(data.size(), sizeof value));
}

void Ioapic::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (data.size() != 4)
        return;
    std::uint32_t value;
    std::memcpy(&value, data.data(), sizeof value);
    std::lock_guard lock(mutex_);
    if (offset == kRegisterSelect)
        select_ = value & 0xff;
    else if (offset == kRegisterWindow)
        write_register(select_, value);
}

std::uint32_t Ioapic::read_register(std::uint32_t index) const {
    switch (index) {
    case kIdRegister:
    case kArbitrationRegister: return id_;
    case kVersionRegister: return (kPins - 1) << 16 | kVersion;
    default: break;
    }
    std::uint32_t pin = (index - kFirstRedirectionRegister) / 2;
    if (index < kFirstRedirectionRegister || pin >= kPins)
        return 0;
    bool high = (index - kFirstRedirectionRegister) % 2;
    return std::uint32_t(redirection_[pin] >> (high ? 32 : 0));
}

void Ioapic::write_register(std::uint32_t index, std::uint32_t value) {
    if (index == kIdRegister) {
        id_ = value & kIdMask;
        return;
    }
    std::uint32_t pin = (index - kFirstRedirectionRegister) / 2;
    if (index < kFirstRedirectionRegister || pin >= kPins)
        return;
    bool high = (index - kFirstRedirectionRegister) % 2;
    std::uint64_t& entry = redirection_[pin];
    std::uint64_t kept = high ? 0x00000000ffffffffull : 0xffffffff00000000ull | kReadOnlyBits;
    std::uint64_t written = std::uint64_t(value) << (high ? 32 : 0) & ~kReadOnlyBits;
    entry = (entry & kept) | written;
    // Each update costs KVM a routing-table swap and a rescan on every vCPU; skip the writes
    // that change no route (a destination written before its unmasking word, say).
    Routes routes;
    std::transform(redirection_.begin(), redirection_.end(), routes.begin(), route_of);
    if (routes != routes_ && on_routes_changed_)
        on_routes_changed_(routes);
    routes_ = routes;
}

} // namespace ktstr
