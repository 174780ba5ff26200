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
std::string by_address(const Map& counts) {
    std::string text;
    for (const auto& [address, count] : counts)
        text += fmt::format("{}{:#x} {}", text.empty() ? "" : ", ", address, count);
    return text;
}

} // namespace

void ExitCounts::merge(const ExitCounts& other) {
    for (const auto& [reason, count] : other.by_reason)
        by_reason[reason] += count;
    for (const auto& [port, count] : other.io_ports)
        io_ports[port] += count;
    for (const auto& [address, count] : other.mmio_addresses)
        mmio_addresses[address] += count;
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
            text += " (" + by_address(io_ports) + ")";
        else if (reason == KVM_EXIT_MMIO)
            text += " (" + by_address(mmio_addresses) + ")";
    }
    return text.empty() ? "none" : text;
}

} // namespace ktstr
