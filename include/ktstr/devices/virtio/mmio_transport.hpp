#pragma once

#include "ktstr/devices/virtio/virtqueue.hpp"
#include "ktstr/io/event_fd.hpp"
#include "ktstr/vmm/bus.hpp"

#include <asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace ktstr {

// How far a device got with a queue in one call of process_queue.
struct QueueResult {
    enum class Progress {
        idle,    // nothing left that the driver made available
        more,    // the budget ran out first: call again after other work had its turn
        blocked, // the device's output is full: call again once unblocked() completes
    };
    bool returned_buffers = false; // some went back to the driver: interrupt it
    Progress progress = Progress::idle;
};

// What a virtio device type provides to its transport.
class VirtioDevice {
  public:
    virtual ~VirtioDevice() = default;
    virtual std::uint32_t device_type() const = 0;
    // Device-specific feature bits; the transport adds VIRTIO_F_VERSION_1.
    virtual std::uint64_t features() const = 0;
    virtual std::vector<std::uint16_t> queue_max_sizes() const = 0;
    virtual void read_config(std::uint64_t offset, std::span<std::uint8_t> data) = 0;
    // Serves what the driver made available on queue `index`, at most `budget` chains, so
    // that a driver republishing buffers cannot keep the executor from its timers and
    // signals. Runs on the executor with the transport locked; throws Error when the driver
    // broke the protocol.
    virtual QueueResult process_queue(std::size_t index, Virtqueue& queue,
                                      const GuestMemory& memory, std::size_t budget) = 0;
    // Completes when a device that reported `blocked` can go on (the transport unlocked).
    virtual asio::awaitable<void> unblocked() { co_return; }
    // The driver reset the device: forget any chain taken from a queue and not returned.
    virtual void reset() {}
};

// The virtio-mmio transport, version 2 (virtio 1.x, section 4.2). Register accesses come from
// vCPU threads; queue notifications arrive on one eventfd per queue (which the VMM binds to
// KVM as an ioeventfd on the QueueNotify register) and are served by coroutines on the
// executor. A driver that breaks the protocol leaves the device broken (DEVICE_NEEDS_RESET);
// it never makes the VMM touch memory outside the guest.
class VirtioMmioTransport : public BusDevice {
  public:
    static constexpr std::uint64_t kSize = 0x200;
    static constexpr std::uint64_t kQueueNotifyOffset = 0x50;
    // Chains served per turn on the executor.
    static constexpr std::size_t kChainsPerTurn = 64;

    VirtioMmioTransport(std::unique_ptr<VirtioDevice> device, const GuestMemory& memory,
                        std::shared_ptr<InterruptLine> irq, asio::io_context& executor);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    std::size_t queue_count() const { return queues_.size(); }
    // Signalled when the driver notifies queue `index`.
    const EventFd& queue_notifier(std::size_t index) const { return *notifiers_[index]; }
    bool broken() const;

  private:
    std::uint32_t read_register(std::uint64_t offset);
    void write_register(std::uint64_t offset, std::uint32_t value);
    void set_status(std::uint32_t status);
    asio::awaitable<void> serve_queue(std::size_t index);
    Virtqueue* selected_queue();

    mutable std::mutex mutex_;
    std::unique_ptr<VirtioDevice> device_;
    const GuestMemory& memory_;
    std::shared_ptr<InterruptLine> irq_;
    asio::io_context& executor_;
    std::vector<Virtqueue> queues_;
    std::vector<std::unique_ptr<EventFd>> notifiers_;
    std::uint32_t device_features_select_ = 0;
    std::uint32_t driver_features_select_ = 0;
    std::uint64_t driver_features_ = 0;
    std::uint32_t queue_select_ = 0;
    std::uint32_t interrupt_status_ = 0;
    std::uint32_t status_ = 0;
    std::uint32_t config_generation_ = 0;
};

} // namespace ktstr
