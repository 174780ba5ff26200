#pragma once

#include "ktstr/devices/virtio/mmio_transport.hpp"

#include <functional>

namespace ktstr {

// virtio-console with one port (no multiport): what the guest writes to /dev/hvc0 reaches
// `output`, in the order written. Guest input is not offered yet.
class VirtioConsole : public VirtioDevice {
  public:
    using Output = std::function<void(std::span<const std::uint8_t>)>;
    explicit VirtioConsole(Output output) : output_(std::move(output)) {}

    std::uint32_t device_type() const override { return 3; }
    std::uint64_t features() const override { return 0; }
    std::vector<std::uint16_t> queue_max_sizes() const override { return {256, 256}; }
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override;
    bool process_queue(std::size_t index, Virtqueue& queue, const GuestMemory& memory) override;

  private:
    Output output_;
};

} // namespace ktstr
