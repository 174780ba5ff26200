#include "ktstr/devices/virtio/console.hpp"

#include <algorithm>

namespace ktstr {

namespace {
constexpr std::size_t kTransmitQueue = 1;
} // namespace

void VirtioConsole::read_config(std::uint64_t, std::span<std::uint8_t> data) {
    // cols, rows, max_nr_ports, emerg_wr: all zero, as none of their features is offered.
    std::fill(data.begin(), data.end(), 0);
}

QueueResult VirtioConsole::process_queue(std::size_t index, Virtqueue& queue,
                                         const GuestMemory& memory, std::size_t budget) {
    using Progress = QueueResult::Progress;
    QueueResult result;
    if (index != kTransmitQueue)
        return result; // the receive queue holds the driver's empty buffers until input exists
    for (std::size_t served = 0; served < budget; ++served) {
        if (!pending_) {
            auto chain = queue.pop(memory);
            if (!chain)
                return result;
            pending_ = PendingChain{std::move(*chain)};
        }
        auto& readable = pending_->chain.readable;
        while (pending_->buffer < readable.size()) {
            std::span<const std::uint8_t> rest =
                readable[pending_->buffer].subspan(pending_->offset);
            pending_->offset += output_.offer(rest);
            if (pending_->offset < readable[pending_->buffer].size()) {
                result.progress = Progress::blocked;
                return result;
            }
            ++pending_->buffer;
            pending_->offset = 0;
        }
        queue.push_used(memory, pending_->chain.head, 0);
        pending_.reset();
        result.returned_buffers = true;
    }
    result.progress = Progress::more;
    return result;
}

asio::awaitable<void> VirtioConsole::unblocked() { co_await output_.room(); }

} // namespace ktstr
