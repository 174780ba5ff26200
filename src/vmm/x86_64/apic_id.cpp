#include "ktstr/vmm/x86_64/apic_id.hpp"

namespace ktstr {

std::uint32_t apic_thread_bits(const Topology& topology) {
    return bits_for(topology.threads_per_core());
}

std::uint32_t apic_core_bits(const Topology& topology) {
    return bits_for(topology.cores_per_llc());
}

std::uint32_t apic_id_of(const Topology& topology, std::uint32_t cpu) {
    CpuPlace p = topology.place(cpu);
    std::uint32_t thread_bits = apic_thread_bits(topology);
    return p.llc << (apic_core_bits(topology) + thread_bits) | p.core_in_llc << thread_bits |
           p.thread;
}

std::uint32_t max_apic_id(const Topology& topology) {
    return apic_id_of(topology, topology.cpus() - 1);
}

bool needs_x2apic(const Topology& topology) { return max_apic_id(topology) > 254; }

} // namespace ktstr
