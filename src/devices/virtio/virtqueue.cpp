#include "ktstr/devices/virtio/virtqueue.hpp"

#include <atomic>
#include <fmt/format.h>

namespace ktstr {

namespace {

struct Descriptor {
    std::uint64_t address;
    std::uint32_t length;
    std::uint16_t flags;
    std::uint16_t next;
};
static_assert(sizeof(Descriptor) == 16);

constexpr std::uint16_t kNext = 1, kWrite = 2, kIndirect = 4;
// Ring header: flags and index, two bytes each.
constexpr std::uint64_t kRingHeader = 4;

} // namespace

void Virtqueue::reset() {
    size = 0;
    ready = false;
    descriptors = available = used = GuestAddress(0);
    next_available_ = next_used_ = 0;
}

void Virtqueue::check_layout() const {
    if (!ready)
        throw VirtqueueError("the queue is not ready");
    if (size == 0 || size > max_size_ || (size & (size - 1)) != 0)
        throw VirtqueueError(
            fmt::format("queue size {} is not a power of two up to {}", size, max_size_));
}

std::optional<Virtqueue::Chain> Virtqueue::pop(const GuestMemory& memory) {
    check_layout();
    auto available_index = memory.read<std::uint16_t>(available + 2);
    if (available_index == next_available_)
        return std::nullopt;
    if (std::uint16_t(available_index - next_available_) > size)
        throw VirtqueueError(fmt::format("the driver made {} buffers available in a queue of {}",
                                         std::uint16_t(available_index - next_available_), size));
    // Read the ring entry only after the index that published it.
    std::atomic_thread_fence(std::memory_order_acquire);
    auto head = memory.read<std::uint16_t>(available + kRingHeader +
                                           2 * std::uint64_t(next_available_ % size));
    ++next_available_;

    Chain chain{head, {}, {}};
    std::uint16_t index = head;
    for (std::uint16_t count = 0;; ++count) {
        if (index >= size)
            throw VirtqueueError(fmt::format("descriptor index {} is outside the queue", index));
        if (count == size)
            throw VirtqueueError("the descriptor chain loops");
        auto descriptor = memory.read<Descriptor>(descriptors + 16 * std::uint64_t(index));
        if (descriptor.flags & kIndirect)
            throw VirtqueueError("indirect descriptors were not negotiated");
        // Throws GuestMemoryError for a buffer outside guest RAM.
        std::span<std::uint8_t> buffer =
            memory.slice(GuestAddress(descriptor.address), descriptor.length);
        if (descriptor.flags & kWrite)
            chain.writable.push_back(buffer);
        else if (!chain.writable.empty())
            throw VirtqueueError("a device-readable descriptor follows a writable one");
        else
            chain.readable.push_back(buffer);
        if (!(descriptor.flags & kNext))
            break;
        index = descriptor.next;
    }
    return chain;
}

void Virtqueue::push_used(const GuestMemory& memory, std::uint16_t head, std::uint32_t written) {
    check_layout();
    struct UsedElement {
        std::uint32_t id;
        std::uint32_t length;
    };
    memory.write(used + kRingHeader + 8 * std::uint64_t(next_used_ % size),
                 UsedElement{head, written});
    ++next_used_;
    // The element must be visible before the index that publishes it.
    std::atomic_thread_fence(std::memory_order_release);
    memory.write<std::uint16_t>(used + 2, next_used_);
}

} // namespace ktstr
