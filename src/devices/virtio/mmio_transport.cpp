#include "ktstr/devices/virtio/mmio_transport.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>
#include <cstring>

namespace ktstr {

namespace {

// Register offsets (virtio 1.x, 4.2.2).
enum Register : std::uint64_t {
    kMagic = 0x000,
    kVersion = 0x004,
    kDeviceId = 0x008,
    kVendorId = 0x00c,
    kDeviceFeatures = 0x010,
    kDeviceFeaturesSelect = 0x014,
    kDriverFeatures = 0x020,
    kDriverFeaturesSelect = 0x024,
    kQueueSelect = 0x030,
    kQueueSizeMax = 0x034,
    kQueueSize = 0x038,
    kQueueReady = 0x044,
    kQueueNotify = 0x050,
    kInterruptStatus = 0x060,
    kInterruptAck = 0x064,
    kStatus = 0x070,
    kQueueDescriptorLow = 0x080,
    kQueueDescriptorHigh = 0x084,
    kQueueDriverLow = 0x090,
    kQueueDriverHigh = 0x094,
    kQueueDeviceLow = 0x0a0,
    kQueueDeviceHigh = 0x0a4,
    kConfigGeneration = 0x0fc,
    kConfig = 0x100,
};

constexpr std::uint32_t kMagicValue = 0x74726976; // "virt"
constexpr std::uint32_t kVendor = 0x5453544b;     // "KTST"
constexpr std::uint64_t kVersion1 = 1ull << 32;
constexpr std::uint32_t kStatusFeaturesOk = 8, kStatusDriverOk = 4, kStatusNeedsReset = 64;
constexpr std::uint32_t kInterruptUsedBuffer = 1, kInterruptConfigChange = 2;

GuestAddress with_half(GuestAddress address, std::uint32_t value, bool high) {
    std::uint64_t raw = address.raw();
    raw =
        high ? (raw & 0xffffffffull) | std::uint64_t(value) << 32 : (raw & ~0xffffffffull) | value;
    return GuestAddress(raw);
}

} // namespace

VirtioMmioTransport::VirtioMmioTransport(std::unique_ptr<VirtioDevice> device,
                                         const GuestMemory& memory,
                                         std::shared_ptr<InterruptLine> irq,
                                         asio::io_context& executor)
    : device_(std::move(device)), memory_(memory), irq_(std::move(irq)), executor_(executor) {
    for (std::uint16_t max_size : device_->queue_max_sizes()) {
        queues_.emplace_back(max_size);
        notifiers_.push_back(std::make_unique<EventFd>(executor_));
    }
    for (std::size_t i = 0; i < queues_.size(); ++i)
        asio::co_spawn(executor_, serve_queue(i), asio::detached);
}

bool VirtioMmioTransport::broken() const {
    std::lock_guard lock(mutex_);
    return status_ & kStatusNeedsReset;
}

asio::awaitable<void> VirtioMmioTransport::serve_queue(std::size_t index) {
    using Progress = QueueResult::Progress;
    for (;;) {
        co_await notifiers_[index]->wait();
        for (Progress progress = Progress::more; progress != Progress::idle;) {
            bool interrupt = false;
            progress = Progress::idle;
            {
                std::lock_guard lock(mutex_);
                if (!(status_ & kStatusDriverOk) || (status_ & kStatusNeedsReset) ||
                    !queues_[index].ready)
                    break;
                try {
                    QueueResult result =
                        device_->process_queue(index, queues_[index], memory_, kChainsPerTurn);
                    if (result.returned_buffers) {
                        interrupt_status_ |= kInterruptUsedBuffer;
                        interrupt = true;
                    }
                    progress = result.progress;
                } catch (const Error&) {
                    // The driver broke the protocol: stop serving until it resets the device.
                    status_ |= kStatusNeedsReset;
                    interrupt_status_ |= kInterruptConfigChange;
                    interrupt = true;
                }
            }
            if (interrupt && irq_)
                irq_->trigger();
            if (progress == Progress::blocked)
                co_await device_->unblocked();
            else if (progress == Progress::more) // let timers, signals and other queues run
                co_await asio::post(executor_, asio::use_awaitable);
        }
    }
}

Virtqueue* VirtioMmioTransport::selected_queue() {
    return queue_select_ < queues_.size() ? &queues_[queue_select_] : nullptr;
}

void VirtioMmioTransport::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    if (offset >= kConfig) {
        device_->read_config(offset - kConfig, data);
        return;
    }
    if (data.size() != 4 || offset % 4 != 0) {
        std::memset(data.data(), 0, data.size()); // the spec allows only 32-bit accesses
        return;
    }
    std::uint32_t value = read_register(offset);
    std::memcpy(data.data(), &value, 4);
}

void VirtioMmioTransport::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    bool notify_only = offset == kQueueNotify;
    if (data.size() != 4 || offset % 4 != 0 || offset >= kConfig)
        return; // config space is read-only here; other sizes are invalid
    std::uint32_t value;
    std::memcpy(&value, data.data(), 4);
    if (notify_only) {
        // Reaches here only without an ioeventfd (the VMM normally binds one).
        if (value < notifiers_.size())
            notifiers_[value]->signal();
        return;
    }
    std::lock_guard lock(mutex_);
    write_register(offset, value);
}

std::uint32_t VirtioMmioTransport::read_register(std::uint64_t offset) {
    std::uint64_t features = device_->features() | kVersion1;
    Virtqueue* queue = selected_queue();
    switch (offset) {
    case kMagic: return kMagicValue;
    case kVersion: return 2;
    case kDeviceId: return device_->device_type();
    case kVendorId: return kVendor;
    case kDeviceFeatures:
        return device_features_select_ < 2
                   ? std::uint32_t(features >> (32 * device_features_select_))
                   : 0;
    case kQueueSizeMax: return queue ? queue->max_size() : 0;
    case kQueueReady: return queue && queue->ready;
    case kInterruptStatus: return interrupt_status_;
    case kStatus: return status_;
    case kConfigGeneration: return config_generation_;
    default: return 0;
    }
}

void VirtioMmioTransport::write_register(std::uint64_t offset, std::uint32_t value) {
    Virtqueue* queue = selected_queue();
    // Queue layout may change only while the queue is not ready.
    bool configurable = queue && !queue->ready;
    switch (offset) {
    case kDeviceFeaturesSelect: device_features_select_ = value; break;
    case kDriverFeaturesSelect: driver_features_select_ = value; break;
    case kDriverFeatures:
        if (driver_features_select_ < 2 && !(status_ & kStatusFeaturesOk)) {
            std::uint64_t shift = 32 * driver_features_select_;
            driver_features_ = (driver_features_ & ~(0xffffffffull << shift)) | std::uint64_t(value)
                                                                                    << shift;
        }
        break;
    case kQueueSelect: queue_select_ = value; break;
    case kQueueSize:
        if (configurable)
            queue->size = std::uint16_t(std::min<std::uint32_t>(value, 0xffff));
        break;
    case kQueueReady:
        if (queue)
            queue->ready = value == 1;
        break;
    case kInterruptAck: interrupt_status_ &= ~value; break;
    case kStatus: set_status(value); break;
    case kQueueDescriptorLow:
    case kQueueDescriptorHigh:
        if (configurable)
            queue->descriptors =
                with_half(queue->descriptors, value, offset == kQueueDescriptorHigh);
        break;
    case kQueueDriverLow:
    case kQueueDriverHigh:
        if (configurable)
            queue->available = with_half(queue->available, value, offset == kQueueDriverHigh);
        break;
    case kQueueDeviceLow:
    case kQueueDeviceHigh:
        if (configurable)
            queue->used = with_half(queue->used, value, offset == kQueueDeviceHigh);
        break;
    default: break; // read-only or unknown: ignored
    }
}

void VirtioMmioTransport::set_status(std::uint32_t status) {
    if (status == 0) { // reset
        status_ = 0;
        interrupt_status_ = 0;
        driver_features_ = 0;
        queue_select_ = 0;
        for (auto& queue : queues_)
            queue.reset();
        device_->reset();
        return;
    }
    // FEATURES_OK sticks only for a subset of what the device offers, with VERSION_1.
    std::uint64_t offered = device_->features() | kVersion1;
    if ((status & kStatusFeaturesOk) &&
        ((driver_features_ & ~offered) || !(driver_features_ & kVersion1)))
        status &= ~kStatusFeaturesOk;
    bool starting = (status & kStatusDriverOk) && !(status_ & kStatusDriverOk);
    status_ = status | (status_ & kStatusNeedsReset);
    // Buffers may already wait in the queues.
    if (starting)
        for (auto& notifier : notifiers_)
            notifier->signal();
}

} // namespace ktstr
