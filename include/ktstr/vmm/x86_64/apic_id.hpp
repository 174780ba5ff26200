#pragma once

#include "ktstr/vmm/topology.hpp"

#include <cstdint>

namespace ktstr {

// How x86-64 numbers the topology's vCPUs: APIC IDs with one bit field per level, so that
// CPUID's topology leaves can describe them. bits(n) = ceil(log2 n).
std::uint32_t apic_thread_bits(const Topology& topology);
std::uint32_t apic_core_bits(const Topology& topology);
// llc << (core_bits + thread_bits) | core_in_llc << thread_bits | thread
std::uint32_t apic_id_of(const Topology& topology, std::uint32_t cpu);
std::uint32_t max_apic_id(const Topology& topology);
// Above APIC ID 254 the VM needs x2APIC and a split irqchip.
bool needs_x2apic(const Topology& topology);

} // namespace ktstr
