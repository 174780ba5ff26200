#include "ktstr/vmm/bus.hpp"

#include "ktstr/base/error.hpp"

#include <algorithm>
#include <fmt/format.h>

namespace ktstr {

void Bus::insert(std::uint64_t base, std::uint64_t length, std::shared_ptr<BusDevice> device) {
    if (length == 0 || base + length < base)
        throw Error(fmt::format("bus range {:#x}+{:#x} is empty or wraps", base, length));
    auto next = ranges_.lower_bound(base);
    bool overlaps_next = next != ranges_.end() && next->first < base + length;
    bool overlaps_prev =
        next != ranges_.begin() && std::prev(next)->first + std::prev(next)->second.length > base;
    if (overlaps_next || overlaps_prev)
        throw Error(fmt::format("bus range {:#x}+{:#x} overlaps another device", base, length));
    ranges_.emplace(base, Range{length, std::move(device)});
}

std::pair<BusDevice*, std::uint64_t> Bus::find(std::uint64_t address, std::uint64_t size) const {
    auto it = ranges_.upper_bound(address);
    if (it == ranges_.begin())
        return {nullptr, 0};
    --it;
    std::uint64_t offset = address - it->first;
    if (offset >= it->second.length || size > it->second.length - offset)
        return {nullptr, 0};
    return {it->second.device.get(), offset};
}

bool Bus::read(std::uint64_t address, std::span<std::uint8_t> data) const {
    auto [device, offset] = find(address, data.size());
    if (!device) {
        std::fill(data.begin(), data.end(), 0xff);
        return false;
    }
    device->read(offset, data);
    return true;
}

bool Bus::write(std::uint64_t address, std::span<const std::uint8_t> data) const {
    auto [device, offset] = find(address, data.size());
    if (!device)
        return false;
    device->write(offset, data);
    return true;
}

} // namespace ktstr
