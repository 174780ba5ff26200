#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>

namespace ktstr {

// A device on a bus sees accesses relative to its base address. The guest chooses the
// offsets and sizes; a device must treat both as untrusted.
class BusDevice {
  public:
    virtual ~BusDevice() = default;
    virtual void read(std::uint64_t offset, std::span<std::uint8_t> data) = 0;
    virtual void write(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;
};

// An address space (port I/O or MMIO) mapping ranges to devices. Filled while the VM is
// built, then only read, so vCPU threads look devices up without locking; each device
// serialises its own state.
class Bus {
  public:
    // Throws Error when [base, base + length) overlaps a registered range.
    void insert(std::uint64_t base, std::uint64_t length, std::shared_ptr<BusDevice> device);
    // Returns false when no device covers the whole access (reads then see all ones).
    bool read(std::uint64_t address, std::span<std::uint8_t> data) const;
    bool write(std::uint64_t address, std::span<const std::uint8_t> data) const;

  private:
    struct Range {
        std::uint64_t length;
        std::shared_ptr<BusDevice> device;
    };
    // The device covering [address, address + size) and its offset there, if any.
    std::pair<BusDevice*, std::uint64_t> find(std::uint64_t address, std::uint64_t size) const;

    std::map<std::uint64_t, Range> ranges_; // by base
};

// A 32-bit register access in host byte order (little-endian on every supported host)
// through a Bus or a single BusDevice: how tests and fuzz targets reach MMIO registers.
template <class Target>
std::uint32_t read32(Target& target, std::uint64_t address) {
    std::uint32_t value = 0;
    target.read(address, std::span(reinterpret_cast<std::uint8_t*>(&value), 4));
    return value;
}
template <class Target>
void write32(Target& target, std::uint64_t address, std::uint32_t value) {
    target.write(address, std::span(reinterpret_cast<const std::uint8_t*>(&value), 4));
}

// An interrupt line as a device sees it; the VMM wires it to KVM (an irqfd).
class InterruptLine {
  public:
    virtual ~InterruptLine() = default;
    // Signals an edge-triggered interrupt.
    virtual void trigger() = 0;
};

} // namespace ktstr
