#pragma once

#include "ktstr/devices/virtio/mmio_transport.hpp"
#include "ktstr/io/byte_sink.hpp"

#include <optional>

namespace ktstr {

// virtio-console with one port (no multiport): what the guest writes to /dev/hvc0 reaches
// `output`, in the order written. A buffer goes back to the driver only once `output` has
// taken all of it, so a slow consumer holds the guest's writer, not the executor. Guest
// input is not offered.
class VirtioConsole : public VirtioDevice {
  public:
    // `output` must outlive the device.
    explicit VirtioConsole(ByteSink& output) : output_(output) {}

    std::uint32_t device_type() const override { return 3; }
    std::uint64_t features() const override { return 0; }
    std::vector<std::uint16_t> queue_max_sizes() const override { return {256, 256}; }
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override;
    QueueResult process_queue(std::size_t index, Virtqueue& queue, const GuestMemory& memory,
                              std::size_t budget) override;
    asio::awaitable<void> unblocked() override;
    void reset() override { pending_.reset(); }

  private:
    // A chain taken from the transmit queue whose bytes `output` has not all taken yet.
    struct PendingChain {
        Virtqueue::Chain chain;
        std::size_t buffer = 0; // the readable buffer being handed over
        std::size_t offset = 0; // within it
    };

    ByteSink& output_;
    std::optional<PendingChain> pending_;
};

} // namespace ktstr
