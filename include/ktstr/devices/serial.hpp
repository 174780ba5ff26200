#pragma once

#include "ktstr/vmm/bus.hpp"

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

namespace ktstr {

// A 16550A UART on eight registers: enough for Linux's 8250 driver (console and tty),
// transmitting instantly and receiving from the host through receive(). `output` is called
// on the vCPU thread without the device's lock held and may wait (backpressure).
class Serial16550 : public BusDevice {
  public:
    using Output = std::function<void(std::span<const std::uint8_t>)>;

    Serial16550(std::shared_ptr<InterruptLine> irq, Output output);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // Queues host input for the guest (held until a driver opens the port) and returns how
    // many bytes fit; the caller offers the rest again once the guest has read some.
    std::size_t receive(std::span<const std::uint8_t> bytes);

    static constexpr std::uint64_t kRegisterCount = 8;

  private:
    std::uint8_t read_register(std::uint8_t index);
    // Returns the byte transmitted, if the write was one.
    std::optional<std::uint8_t> write_register(std::uint8_t index, std::uint8_t value);
    std::uint8_t interrupt_identification() const;
    // Raises the line on a new pending interrupt (the irqfd is edge-triggered). Called
    // with the lock held; returns whether to trigger once the lock is dropped.
    bool update_interrupt();

    std::mutex mutex_;
    std::shared_ptr<InterruptLine> irq_;
    Output output_;
    void accept_host_input();

    std::deque<std::uint8_t> host_input_; // waiting for the driver
    std::deque<std::uint8_t> rx_;         // visible in the data register
    std::uint8_t ier_ = 0;
    std::uint8_t lcr_ = 0;
    std::uint8_t mcr_ = 0;
    std::uint8_t scr_ = 0;
    std::uint8_t dll_ = 0x0c; // 9600 baud
    std::uint8_t dlm_ = 0;
    bool fifo_enabled_ = false;
    bool thr_interrupt_pending_ = false;
    bool interrupt_asserted_ = false;
};

} // namespace ktstr
