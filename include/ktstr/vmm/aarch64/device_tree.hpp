#pragma once

#include "ktstr/vmm/aarch64/layout.hpp"
#include "ktstr/vmm/guest_memory.hpp"
#include "ktstr/vmm/topology.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ktstr::aarch64 {

// The cache hierarchy the tree describes, and CLIDR_EL1 saying the same to every vCPU: an L1
// split into instruction and data caches (the cpu node itself, which declares neither size
// nor cache-unified, so Linux counts two leaves for it), then one unified level-2 cache per
// LLC, the last level. Linux's cacheinfo counts leaves from the tree but types them from
// CLIDR_EL1, and stops at the first leaf CLIDR_EL1 leaves out; KVM's own CLIDR_EL1 follows
// the host's CTR_EL0 (one unified L1 under QEMU's `-cpu max`), which would hide the LLC.
inline constexpr std::uint32_t kLlcLevel = 2;
inline constexpr std::uint64_t kClidrSeparate = 3, kClidrUnified = 4;
inline constexpr std::uint64_t kClidrEl1 = kClidrSeparate                   // Ctype1
                                           | kClidrUnified << 3             // Ctype2
                                           | std::uint64_t(1) << 21         // LoUIS
                                           | std::uint64_t(kLlcLevel) << 24 // LoC
                                           | std::uint64_t(1) << 27;        // LoUU

struct DeviceTreeConfig {
    const Topology& topology;
    const MemoryMap& memory_map; // for as many vCPUs as the topology has
    // Guest RAM by NUMA node; every range inside memory_map.ram.
    std::vector<NumaMemoryRange> memory;
    // One MPIDR_EL1 per vCPU, in vCPU index order (default_mpidr, or what KVM reports: bits
    // outside the affinity fields, such as RES1 bit 31, are dropped).
    std::vector<std::uint64_t> mpidrs;
    std::string command_line;
    std::optional<Region> initrd = std::nullopt; // inside memory_map.ram
    // PSCI 0.2 through HVC (KVM_ARM_VCPU_PSCI_0_2) brings up the secondary vCPUs; without it
    // the tree has no psci node and no enable-method, and only the boot vCPU runs.
    bool psci = true;
};

// The flattened device tree (DTB) describing the VM to an arm64 Linux guest: CPUs with their
// cluster, LLC and NUMA placement, memory, the GICv3, the architected timer, PSCI, two
// ns16550a UARTs (the first is the console) and one virtio-mmio transport. Throws Error
// naming the libfdt call that failed, if the blob would exceed the 2 MiB boot limit, or if the
// configuration is inconsistent (counts that disagree, memory or initrd outside RAM).
std::vector<std::uint8_t> build_device_tree(const DeviceTreeConfig& config);

} // namespace ktstr::aarch64
