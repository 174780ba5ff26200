#pragma once

#include "ktstr/base/error.hpp"
#include "ktstr/vmm/guest_memory.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace ktstr {

// The guest broke the virtqueue protocol; the device stops using the queue.
class VirtqueueError : public Error {
  public:
    using Error::Error;
};

// A split virtqueue (virtio 1.x, section 2.7) in guest memory, device side. Everything the
// guest wrote (ring indices, descriptor addresses, lengths, flags, next indices) is checked
// before use; a bad one throws VirtqueueError and nothing outside guest RAM is touched.
class Virtqueue {
  public:
    explicit Virtqueue(std::uint16_t max_size) : max_size_(max_size) {}

    // The driver's configuration, set through the transport before the queue is ready.
    std::uint16_t max_size() const { return max_size_; }
    std::uint16_t size = 0;
    bool ready = false;
    GuestAddress descriptors{0};
    GuestAddress available{0};
    GuestAddress used{0};

    // A descriptor chain: the device-readable buffers, then the device-writable ones.
    struct Chain {
        std::uint16_t head;
        std::vector<std::span<std::uint8_t>> readable;
        std::vector<std::span<std::uint8_t>> writable;
    };

    // The next chain the driver made available, if any.
    std::optional<Chain> pop(const GuestMemory& memory);
    // Returns a chain to the driver, `written` bytes of it filled in.
    void push_used(const GuestMemory& memory, std::uint16_t head, std::uint32_t written);

    void reset();

  private:
    void check_layout() const;

    std::uint16_t max_size_;
    std::uint16_t next_available_ = 0;
    std::uint16_t next_used_ = 0;
};

} // namespace ktstr
