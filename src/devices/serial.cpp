#include "ktstr/devices/serial.hpp"

namespace ktstr {

namespace {
// Register indices and bits from the 16550 data sheet.
constexpr std::uint8_t kData = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6,
                       kScr = 7;
constexpr std::uint8_t kIerRxData = 0x01, kIerThrEmpty = 0x02;
constexpr std::uint8_t kIirNone = 0x01, kIirThrEmpty = 0x02, kIirRxData = 0x04,
                       kIirFifoEnabled = 0xc0;
constexpr std::uint8_t kFcrEnable = 0x01, kFcrClearRx = 0x02;
constexpr std::uint8_t kLcrDlab = 0x80;
constexpr std::uint8_t kMcrDtr = 0x01, kMcrRts = 0x02, kMcrOut1 = 0x04, kMcrOut2 = 0x08,
                       kMcrLoop = 0x10;
constexpr std::uint8_t kLsrDataReady = 0x01, kLsrThrEmpty = 0x20, kLsrIdle = 0x40;
constexpr std::uint8_t kMsrCts = 0x10, kMsrDsr = 0x20, kMsrRi = 0x40, kMsrDcd = 0x80;
constexpr std::size_t kRxLimit = 1 << 16;
} // namespace

Serial16550::Serial16550(std::shared_ptr<InterruptLine> irq, Output output)
    : irq_(std::move(irq)), output_(std::move(output)) {}

std::uint8_t Serial16550::interrupt_identification() const {
    std::uint8_t fifo = fifo_enabled_ ? kIirFifoEnabled : 0;
    if ((ier_ & kIerRxData) && !rx_.empty())
        return kIirRxData | fifo;
    if ((ier_ & kIerThrEmpty) && thr_interrupt_pending_)
        return kIirThrEmpty | fifo;
    return kIirNone | fifo;
}

bool Serial16550::update_interrupt() {
    // On a PC the UART's interrupt reaches the PIC only while OUT2 is set.
    bool pending = (interrupt_identification() & kIirNone) == 0 && (mcr_ & kMcrOut2);
    bool rising = pending && !interrupt_asserted_;
    interrupt_asserted_ = pending;
    return rising;
}

void Serial16550::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    bool raise;
    {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < data.size(); ++i)
            data[i] = offset + i < kRegisterCount ? read_register(std::uint8_t(offset + i)) : 0xff;
        raise = update_interrupt();
    }
    if (raise && irq_)
        irq_->trigger();
}

void Serial16550::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    bool raise;
    std::optional<std::uint8_t> transmitted;
    {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < data.size(); ++i)
            if (offset + i < kRegisterCount)
                if (auto byte = write_register(std::uint8_t(offset + i), data[i]))
                    transmitted = byte;
        raise = update_interrupt();
    }
    // Outside the lock: the output may wait for a slow reader, and host input must still
    // reach the receiver meanwhile.
    if (transmitted && output_)
        output_(std::span(&*transmitted, 1));
    if (raise && irq_)
        irq_->trigger();
}

std::size_t Serial16550::receive(std::span<const std::uint8_t> bytes) {
    bool raise;
    std::size_t taken;
    {
        std::lock_guard lock(mutex_);
        taken = std::min(bytes.size(), kRxLimit - host_input_.size());
        host_input_.insert(host_input_.end(), bytes.begin(), bytes.begin() + long(taken));
        accept_host_input();
        raise = update_interrupt();
    }
    if (raise && irq_)
        irq_->trigger();
    return taken;
}

void Serial16550::accept_host_input() {
    // Host input waits until a driver has opened the port: receive interrupts on and routed
    // (OUT2), not in loopback. The 8250 driver's probe sets every IER bit for a moment and
    // clears the FIFO afterwards, and opening the port reads the data register once; both
    // would lose early keystrokes.
    if (!(ier_ & kIerRxData) || !(mcr_ & kMcrOut2) || (mcr_ & kMcrLoop))
        return;
    while (!host_input_.empty() && rx_.size() < kRxLimit) {
        rx_.push_back(host_input_.front());
        host_input_.pop_front();
    }
}

std::uint8_t Serial16550::read_register(std::uint8_t index) {
    bool dlab = lcr_ & kLcrDlab;
    switch (index) {
    case kData:
        if (dlab)
            return dll_;
        if (rx_.empty())
            return 0;
        {
            std::uint8_t byte = rx_.front();
            rx_.pop_front();
            accept_host_input(); // room for what is still held
            return byte;
        }
    case kIer: return dlab ? dlm_ : ier_;
    case kIir: {
        std::uint8_t iir = interrupt_identification();
        // Reading IIR acknowledges a transmitter-empty interrupt.
        if ((iir & 0x0f) == kIirThrEmpty)
            thr_interrupt_pending_ = false;
        return iir;
    }
    case kLcr: return lcr_;
    case kMcr: return mcr_;
    case kLsr: return kLsrThrEmpty | kLsrIdle | (rx_.empty() ? 0 : kLsrDataReady);
    case kMsr:
        if (mcr_ & kMcrLoop)
            return (mcr_ & kMcrDtr ? kMsrDsr : 0) | (mcr_ & kMcrRts ? kMsrCts : 0) |
                   (mcr_ & kMcrOut1 ? kMsrRi : 0) | (mcr_ & kMcrOut2 ? kMsrDcd : 0);
        return kMsrDcd | kMsrDsr | kMsrCts;
    default: return scr_;
    }
}

std::optional<std::uint8_t> Serial16550::write_register(std::uint8_t index, std::uint8_t value) {
    bool dlab = lcr_ & kLcrDlab;
    switch (index) {
    case kData:
        if (dlab) {
            dll_ = value;
        } else if (mcr_ & kMcrLoop) {
            if (rx_.size() < kRxLimit)
                rx_.push_back(value);
        } else {
            thr_interrupt_pending_ = true;
            return value;
        }
        break;
    case kIer:
        if (dlab) {
            dlm_ = value;
        } else {
            // Enabling the transmitter interrupt while THR is empty raises it at once; the
            // 8250 driver starts transmission that way.
            if ((value & kIerThrEmpty) && !(ier_ & kIerThrEmpty))
                thr_interrupt_pending_ = true;
            ier_ = value & 0x0f;
            accept_host_input();
        }
        break;
    case kIir: // FCR on write
        fifo_enabled_ = value & kFcrEnable;
        if (value & kFcrClearRx)
            rx_.clear();
        break;
    case kLcr: lcr_ = value; break;
    case kMcr:
        mcr_ = value & 0x1f;
        accept_host_input();
        break;
    case kScr: scr_ = value; break;
    default: // LSR and MSR are read-only
        break;
    }
    return std::nullopt;
}

} // namespace ktstr
