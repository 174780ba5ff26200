#include "ktstr/vmm/exit_counts.hpp"

#include <fmt/format.h>
#include <linux/kvm.h>

namespace ktstr {

namespace {

std::string reason_name(std::uint32_t reason) {
    switch (reason) {
    case KVM_EXIT_IO: return "io";
    case KVM_EXIT_MMIO: return "mmio";
    case KVM_EXIT_HLT: return "hlt";
    case KVM_EXIT_SHUTDOWN: return "shutdown";
    case KVM_EXIT_SYSTEM_EVENT: return "system-event";
    case KVM_EXIT_INTR: return "signal";
    case KVM_EXIT_FAIL_ENTRY: return "fail-entry";
    case KVM_EXIT_INTERNAL_ERROR: return "internal-error";
    default: return fmt::format("exit-{}", reason);
    }
}

template <typename Map>
std::string by_address(const Map& counts, std::uint64_t other) {
    std::string text;
    for (const auto& [address, count] : counts)
        text += fmt::format("{}{:#x} {}", text.empty() ? "" : ", ", address, count);
    if (other > 0)
        text += fmt::format(", other {}", other);
    return text;
}

// Counts `key` in `map` while it has room for new keys; otherwise in `other`.
template <typename Map>
void count_bounded(Map& map, typename Map::key_type key, std::uint64_t count,
                   std::uint64_t& other) {
    auto it = map.find(key);
    if (it != map.end())
        it->second += count;
    else if (map.size() < ExitCounts::kMaxAddresses)
        map.emplace(key, count);
    else
        other += count;
}

} // namespace

void ExitCounts::add_io(std::uint16_t port) { count_bounded(io_ports, port, 1, other_io); }

void ExitCounts::add_mmio(std::uint64_t address) {
    count_bounded(mmio_addresses, address, 1, other_mmio);
}

void ExitCounts::merge(const ExitCounts& other) {
    for (const auto& [reason, count] : other.by_reason)
        by_reason[reason] += count;
    for (const auto& [port, count] : other.io_ports)
        count_bounded(io_ports, port, count, other_io);
    for (const auto& [address, count] : other.mmio_addresses)
        count_bounded(mmio_addresses, address, count, other_mmio);
    other_io += other.other_io;
    other_mmio += other.other_mmio;
}

std::uint64_t ExitCounts::total() const {
    std::uint64_t sum = 0;
    for (const auto& [reason, count] : by_reason)
        sum += count;
    return sum;
}

std::string ExitCounts::summary() const {
    std::string text;
    for (const auto& [reason, count] : by_reason) {
        text += fmt::format("{}{} {}", text.empty() ? "" : ", ", reason_name(reason), count);
        if (reason == KVM_EXIT_IO)
            text += " (" + by_address(io_ports, other_io) + ")";
        else if (reason == KVM_EXIT_MMIO)
            text += " (" + by_address(mmio_addresses, other_mmio) + ")";
    }
    return text.empty() ? "none" : text;
}

} // namespace ktstr
