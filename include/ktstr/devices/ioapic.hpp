#pragma once

#include "ktstr/vmm/bus.hpp"

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>

namespace ktstr {

// An x86 message-signalled interrupt in the form KVM's x2APIC API takes: the low address
// word carries destination bits 0-7 (bits 19:12) and the logical-mode flag (bit 2), the high
// word destination bits 8-31 in place; `data` holds the vector and delivery mode.
struct MsiMessage {
    std::uint64_t address = 0;
    std::uint32_t data = 0;
    bool operator==(const MsiMessage&) const = default;
};

// An 82093AA-style I/O APIC with 24 pins for a split irqchip, where the local APICs are in
// KVM and the I/O APIC is here. It does not deliver interrupts itself: each pin's
// redirection entry is turned into the MSI it would send, and the VMM installs those as the
// routes of GSIs 0-23, so a device's irqfd on GSI n reaches the CPU the guest chose for pin n.
//
// Destinations go past 8 bits the way Linux does on KVM with KVM_FEATURE_MSI_EXT_DEST_ID:
// bits 8-14 of the APIC ID sit in bits 55:49 of the entry. Every route is edge-triggered:
// devices signal edges through irqfds, so no EOI needs to come back here.
class Ioapic : public BusDevice {
  public:
    static constexpr std::uint32_t kPins = 24;
    static constexpr std::uint64_t kSize = 0x1000;
    static constexpr std::uint32_t kMaskedEntry = 1u << 16; // the mask bit of an entry's low word
    using Routes = std::array<std::optional<MsiMessage>, kPins>;
    // Receives the routes of all pins (none for a masked pin) whenever a write to a
    // redirection entry changes them; called with the device's lock held, so calls arrive in
    // order.
    using RouteUpdate = std::function<void(const Routes&)>;

    explicit Ioapic(RouteUpdate on_routes_changed);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // The MSI a redirection entry sends; none when it is masked.
    static std::optional<MsiMessage> route_of(std::uint64_t redirection_entry);

  private:
    std::uint32_t read_register(std::uint32_t index) const;
    void write_register(std::uint32_t index, std::uint32_t value);

    std::mutex mutex_;
    RouteUpdate on_routes_changed_;
    std::uint32_t select_ = 0;
    std::uint32_t id_ = 0;
    std::array<std::uint64_t, kPins> redirection_;
    Routes routes_; // as last handed over
};

} // namespace ktstr
