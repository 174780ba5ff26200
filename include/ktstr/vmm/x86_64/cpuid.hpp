#pragma once

#include "ktstr/vmm/kvm.hpp"
#include "ktstr/vmm/topology.hpp"

#include <cstdint>
#include <linux/kvm.h>
#include <span>
#include <vector>

namespace ktstr {

// Every CPUID leaf KVM can offer a guest on this host (KVM_GET_SUPPORTED_CPUID), in KVM's
// order. Fetch it once per VM and derive each vCPU's table from it.
std::vector<kvm_cpuid_entry2> supported_cpuid(const Kvm& kvm);

// What the VMM provides beyond KVM_GET_SUPPORTED_CPUID, to be shown in CPUID.
struct VmCpuFeatures {
    // The local APICs' TSC-deadline timer mode (leaf 0x1 ECX[24]): KVM emulates it where
    // KVM_CAP_TSC_DEADLINE_TIMER says so, but leaves the bit to the VMM. Without a PIT the
    // guest needs it to run its APIC timers without calibrating them against another clock.
    bool tsc_deadline_timer = false;
    // KVM_FEATURE_MSI_EXT_DEST_ID (leaf 0x40000001 EAX[15]): the I/O APIC takes APIC ID bits
    // 8-14 in its redirection entries, so Linux can bring up CPUs with APIC IDs above 255
    // without interrupt remapping.
    bool msi_ext_dest_id = false;
};

// Sets the bits of `features` in `supported`; throws Error when a leaf they live in is
// missing.
void add_vm_cpu_features(std::vector<kvm_cpuid_entry2>& supported, const VmCpuFeatures& features);

enum class CpuVendor { intel, amd, other };

// From the vendor string of leaf 0; `other` when leaf 0 is missing or names another vendor.
CpuVendor cpu_vendor(std::span<const kvm_cpuid_entry2> entries);

// The CPUID table of vCPU `cpu`: `supported` with the topology leaves rewritten so that a
// Linux guest derives exactly `topology` (SMT siblings, cores, one LLC per topology LLC, one
// package holding them all; see cpuid.cpp), leaves the vendor needs but `supported` lacks
// added, the hypervisor bit set. The guest reads its APIC ID from the local APIC too, and
// KVM numbers that after the vCPU id: create vCPU `cpu` with id `topology.apic_id(cpu)`.
// Throws Error when `cpu` is outside the topology or `supported` has no leaf 0.
std::vector<kvm_cpuid_entry2> vcpu_cpuid(std::span<const kvm_cpuid_entry2> supported,
                                         const Topology& topology, std::uint32_t cpu);

// KVM_SET_CPUID2: gives `vcpu` the table `entries`; KVM refuses changes once it has run.
void set_vcpu_cpuid(const Vcpu& vcpu, std::span<const kvm_cpuid_entry2> entries);

} // namespace ktstr
