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

bool VirtioConsole::process_queue(std::size_t index, Virtqueue& queue, const GuestMemory& memory) {
    if (index != kTransmitQueue)
        return false; // the receive queue holds the driver's empty buffers until input exists
    bool returned = false;
    while (auto chain = queue.pop(memory)) {
        for (auto buffer : chain->readable)
            if (output_)
                output_(buffer);
        queue.push_used(memory, chain->head, 0);
        returned = true;
    }
    return returned;
}

} // namespace ktstr
