// The per-vCPU CPUID tables, read back the way a Linux guest reads them
// (arch/x86/kernel/cpu/topology_ext.c, topology_amd.c, topology_common.c, cacheinfo.c): the
// decoding here is written from those files, not from cpuid.cpp.
#include "ktstr/base/error.hpp"
#include "ktstr/vmm/guest_memory.hpp"
#include "ktstr/vmm/kvm.hpp"
#include "ktstr/vmm/x86_64/apic_id.hpp"
#include "ktstr/vmm/x86_64/boot.hpp"
#include "ktstr/vmm/x86_64/cpuid.hpp"

#include <array>
#include <catch2/catch_test_macros.hpp>
#include <cstring>
#include <map>
#include <set>
#include <string>

using namespace ktstr;

namespace {

struct Regs {
    std::uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
    bool operator==(const Regs&) const = default;
};

kvm_cpuid_entry2 leaf(std::uint32_t function, Regs regs) {
    kvm_cpuid_entry2 entry{};
    entry.function = function;
    entry.eax = regs.eax;
    entry.ebx = regs.ebx;
    entry.ecx = regs.ecx;
    entry.edx = regs.edx;
    return entry;
}

kvm_cpuid_entry2 subleaf(std::uint32_t function, std::uint32_t index, Regs regs) {
    kvm_cpuid_entry2 entry = leaf(function, regs);
    entry.index = index;
    entry.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    return entry;
}

// Leaf 0 or 0x80000000: the highest leaf, then the vendor in EBX, EDX, ECX.
kvm_cpuid_entry2 vendor_leaf(std::uint32_t function, std::uint32_t max_leaf, const char* vendor) {
    Regs regs{max_leaf};
    std::memcpy(&regs.ebx, vendor, 4);
    std::memcpy(&regs.edx, vendor + 4, 4);
    std::memcpy(&regs.ecx, vendor + 8, 4);
    return leaf(function, regs);
}

constexpr std::uint32_t kKvmSignature[3] = {0x4b4d564b, 0x564b4d56, 0x4d}; // "KVMKVMKVM"

// Shaped like KVM_GET_SUPPORTED_CPUID on a recent Intel host: host cache leaves (L3 shared by
// 64 threads), zeroed 0xB and 0x1F, host APIC ID bits in leaf 1, HTT and hypervisor clear.
std::vector<kvm_cpuid_entry2> intel_supported() {
    return {
        vendor_leaf(0, 0x1f, "GenuineIntel"),
        leaf(1, {0x000806f8, 0xab400800, 0x7ffefbff, 0x07abfbff}),
        leaf(2, {0x00feff01, 0xf0, 0, 0}),
        subleaf(4, 0, {0x1c004121, 0x02c0003f, 0x3f, 0}),
        subleaf(4, 1, {0x1c004122, 0x01c0003f, 0x3f, 0}),
        subleaf(4, 2, {0x1c004143, 0x03c0003f, 0x7ff, 0}),
        subleaf(4, 3, {0x1c0fc163, 0x0380003f, 0xbfff, 4}),
        subleaf(4, 4, {}),
        leaf(6, {4, 0, 0, 0}),
        subleaf(7, 0, {2, 0xf1bf2fbb, 0x1b415f6e, 0xa4010c10}),
        subleaf(7, 1, {0x1c30, 0, 0, 0}),
        subleaf(0xb, 0, {0, 0, 0, 0x2a}),
        subleaf(0xd, 0, {0x602e7, 0xa88, 0x2b00, 0}),
        subleaf(0xd, 1, {0x1f, 0, 0, 0}),
        subleaf(0x1f, 0, {0, 0, 0, 0x2a}),
        leaf(0x40000000, {0x40000001, kKvmSignature[0], kKvmSignature[1], kKvmSignature[2]}),
        leaf(0x40000001, {0x01007afb, 0, 0, 0}),
        leaf(0x80000000, {0x80000008, 0, 0, 0}),
        leaf(0x80000001, {0, 0, 0x121, 0x2c100800}),
        leaf(0x80000006, {0, 0, 0x08007040, 0}),
        leaf(0x80000008, {0x3934, 0, 0, 0}),
    };
}

// Shaped like KVM_GET_SUPPORTED_CPUID on an AMD Zen 3 host (family 0x19): host 0x8000001D
// (L3 shared by 16 threads), zeroed 0xB and 0x8000001E, host values in 0x80000008 ECX.
std::vector<kvm_cpuid_entry2> amd_supported() {
    return {
        vendor_leaf(0, 0x10, "AuthenticAMD"),
        leaf(1, {0x00a00f11, 0x01020800, 0x7ed8320b, 0x078bfbff}),
        subleaf(4, 0, {}),
        subleaf(7, 0, {0, 0x219c91a9, 0x00400004, 0x10}),
        subleaf(0xb, 0, {0, 0, 0, 1}),
        subleaf(0xd, 0, {7, 0x340, 0x340, 0}),
        leaf(0x40000000, {0x40000001, kKvmSignature[0], kKvmSignature[1], kKvmSignature[2]}),
        leaf(0x40000001, {0x01007afb, 0, 0, 0}),
        vendor_leaf(0x80000000, 0x80000021, "AuthenticAMD"),
        leaf(0x80000001, {0x00a00f11, 0x40000000, 0x75c237ff, 0x2fd3fbff}),
        leaf(0x80000005, {0xff40ff40, 0xff40ff40, 0x20080140, 0x20080140}),
        leaf(0x80000006, {0x48002200, 0x68004200, 0x02006140, 0x08009140}),
        leaf(0x80000008, {0x3030, 0x10000005, 0x7001, 0}),
        subleaf(0x8000001d, 0, {0x121, 0x01c0003f, 0x3f, 0}),
        subleaf(0x8000001d, 1, {0x122, 0x01c0003f, 0x3f, 0}),
        subleaf(0x8000001d, 2, {0x143, 0x01c0003f, 0x3ff, 2}),
        subleaf(0x8000001d, 3, {0x3c163, 0x03c0003f, 0x7fff, 1}),
        subleaf(0x8000001d, 4, {}),
        leaf(0x8000001e, {}),
        leaf(0x80000021, {0x62fcf, 0, 0, 0}),
    };
}

void remove_leaf(std::vector<kvm_cpuid_entry2>& entries, std::uint32_t function) {
    std::erase_if(entries, [&](const kvm_cpuid_entry2& e) { return e.function == function; });
}

kvm_cpuid_entry2& entry_of(std::vector<kvm_cpuid_entry2>& entries, std::uint32_t function) {
    for (auto& entry : entries)
        if (entry.function == function)
            return entry;
    throw Error("test table lacks its own leaf");
}

// CPUID as the guest of a vCPU sees it, answered as KVM answers: the matching entry (the index
// matters only to leaves with subleaves), zeros for leaves the table lacks or beyond the
// highest leaf of their range.
class GuestCpuid {
  public:
    explicit GuestCpuid(std::vector<kvm_cpuid_entry2> entries) : entries_(std::move(entries)) {}

    Regs operator()(std::uint32_t function, std::uint32_t index = 0) const {
        if (function < 0x40000000 && function > max_basic())
            return {};
        if (function >= 0x80000000 && function > max_extended())
            return {};
        return lookup(function, index);
    }
    std::uint32_t max_basic() const { return lookup(0, 0).eax; }
    std::uint32_t max_extended() const { return lookup(0x80000000, 0).eax; }
    const std::vector<kvm_cpuid_entry2>& entries() const { return entries_; }

  private:
    Regs lookup(std::uint32_t function, std::uint32_t index) const {
        for (const auto& e : entries_)
            if (e.function == function &&
                (!(e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e.index == index))
                return {e.eax, e.ebx, e.ecx, e.edx};
        return {};
    }
    std::vector<kvm_cpuid_entry2> entries_;
};

std::uint32_t bits(std::uint32_t reg, unsigned low, unsigned width) {
    return (reg >> low) & ((1u << width) - 1);
}

// Linux's get_count_order: ceil(log2 n).
std::uint32_t count_order(std::uint32_t n) {
    std::uint32_t order = 0;
    while ((1u << order) < n)
        ++order;
    return order;
}

constexpr std::uint32_t kBadApicId = 0xffff;

// Linux's topology domains (enum x86_topology_domains).
enum Domain { kSmt, kCore, kModule, kTile, kDie, kDieGroup, kPackage, kDomains };

// What the guest kernel concludes about one CPU (struct topo_scan plus cpuinfo_x86.topo).
struct LinuxView {
    std::uint32_t apicid = 0;         // from the local APIC, which KVM numbers by vCPU id
    std::uint32_t initial_apicid = 0; // from CPUID
    std::uint32_t shifts[kDomains] = {};
    std::uint32_t ncpus[kDomains] = {};
    std::uint32_t llc_id = kBadApicId;
    std::uint32_t l2_id = kBadApicId;
    std::uint32_t amd_node_id = 0;
    std::uint32_t amd_nodes_per_pkg = 1;
    std::vector<std::string> firmware_bugs; // what Linux would log as FW_BUG or fall back on

    std::uint32_t smt_id() const { return apicid & ((1u << shifts[kSmt]) - 1); }
    std::uint32_t package_id() const { return apicid >> shifts[kPackage]; }
    // Package-relative core ID (topo_set_ids).
    std::uint32_t core_id() const {
        return (apicid & ((1u << shifts[kPackage]) - 1)) >> shifts[kSmt];
    }
    std::uint32_t max_cores() const { return ncpus[kDieGroup] >> shifts[kSmt]; }

    void set_domain(Domain domain, std::uint32_t shift, std::uint32_t count) {
        shifts[domain] = shift;
        ncpus[domain] = count;
        for (int above = domain + 1; above < kDomains; ++above) {
            shifts[above] = shifts[above - 1];
            ncpus[above] = ncpus[above - 1];
        }
    }
};

// topology_ext.c: parse_topology_leaf for 0xB, 0x1F or 0x80000026.
bool parse_topology_leaf(const GuestCpuid& cpuid, std::uint32_t function, LinuxView& view) {
    static const std::map<std::uint32_t, std::vector<Domain>> domain_of_type = {
        {0xb, {kSmt, kSmt, kCore}},
        {0x1f, {kSmt, kSmt, kCore, kModule, kTile, kDie, kDieGroup}},
        {0x80000026, {kSmt, kSmt, kCore, kTile, kDie}},
    };
    const std::vector<Domain>& types = domain_of_type.at(function);
    std::uint32_t index = 0;
    int last_domain = 0;
    for (;; ++index) {
        Regs regs = cpuid(function, index);
        std::uint32_t shift = bits(regs.eax, 0, 5);
        std::uint32_t count = bits(regs.ebx, 0, 16);
        std::uint32_t type = bits(regs.ecx, 8, 8);
        if (count == 0 || type == 0)
            break;
        int domain;
        if (type >= types.size()) {
            view.firmware_bugs.push_back("unknown domain type " + std::to_string(type));
            domain = last_domain + 1;
        } else {
            domain = types[type];
            last_domain = domain;
        }
        if (domain == kSmt)
            view.initial_apicid = regs.edx;
        else if (view.initial_apicid != regs.edx)
            view.firmware_bugs.push_back("APIC ID mismatch between subleaves");
        if (domain < kDomains)
            view.set_domain(static_cast<Domain>(domain), shift, count);
        if (index > 64)
            break;
    }
    if (index == 0)
        return false;
    if (view.shifts[kSmt] == 0 && view.ncpus[kSmt] > 1)
        view.firmware_bugs.push_back("SMT level with shift 0");
    return true;
}

bool parse_extended_topology(const GuestCpuid& cpuid, LinuxView& view) {
    return (cpuid.max_basic() >= 0x1f && parse_topology_leaf(cpuid, 0x1f, view)) ||
           (cpuid.max_extended() >= 0x80000026 && parse_topology_leaf(cpuid, 0x80000026, view)) ||
           (cpuid.max_basic() >= 0xb && parse_topology_leaf(cpuid, 0xb, view));
}

// cacheinfo.c: find_num_cache_leaves.
std::uint32_t cache_leaf_count(const GuestCpuid& cpuid, std::uint32_t function) {
    std::uint32_t count = 0;
    while (bits(cpuid(function, count).eax, 0, 5) != 0 && count < 64)
        ++count;
    return count;
}

std::uint32_t threads_sharing(const Regs& cache) { return bits(cache.eax, 14, 12) + 1; }

LinuxView linux_view_intel(const GuestCpuid& cpuid, std::uint32_t apicid) {
    LinuxView view;
    view.apicid = apicid;
    view.initial_apicid = bits(cpuid(1).ebx, 24, 8);
    if (!parse_extended_topology(cpuid, view))
        view.firmware_bugs.push_back("no extended topology leaf: legacy parsing");
    // intel_cacheinfo_0x4: cache IDs are the APIC ID without the bits of the sharers.
    std::uint32_t l3_id = kBadApicId;
    for (std::uint32_t index = 0; index < cache_leaf_count(cpuid, 4); ++index) {
        Regs cache = cpuid(4, index);
        std::uint32_t id = apicid & ~((1u << count_order(threads_sharing(cache))) - 1);
        if (bits(cache.eax, 5, 3) == 2)
            view.l2_id = id;
        else if (bits(cache.eax, 5, 3) == 3)
            l3_id = id;
    }
    view.llc_id = l3_id == kBadApicId ? view.l2_id : l3_id;
    return view;
}

LinuxView linux_view_amd(const GuestCpuid& cpuid, std::uint32_t apicid) {
    LinuxView view;
    view.apicid = apicid;
    view.initial_apicid = bits(cpuid(1).ebx, 24, 8);
    bool topoext = bits(cpuid(0x80000001).ecx, 22, 1);
    bool extended = topoext && parse_extended_topology(cpuid, view);
    if (!extended) {
        view.firmware_bugs.push_back("no extended topology leaf: 0x80000008 parsing");
        Regs sizes = cpuid(0x80000008);
        std::uint32_t shift = bits(sizes.ecx, 12, 4);
        if (shift == 0)
            shift = count_order(bits(sizes.ecx, 0, 8) + 1);
        view.set_domain(kSmt, 0, 1);
        view.set_domain(kCore, shift, bits(sizes.ecx, 0, 8) + 1);
    }
    if (!topoext) {
        view.firmware_bugs.push_back("no TOPOEXT: no 0x8000001E, no LLC");
        return view;
    }
    // parse_8000_001e
    Regs topology = cpuid(0x8000001e);
    view.initial_apicid = topology.eax;
    if (!extended)
        view.shifts[kSmt] = count_order(bits(topology.ebx, 8, 8) + 1);
    view.amd_nodes_per_pkg = bits(topology.ecx, 8, 3) + 1;
    view.amd_node_id = bits(topology.ecx, 0, 8);
    // cacheinfo_amd_init_llc_id, for family 0x17 model 0x20 on: the last cache subleaf is the
    // LLC; without an L3 in 0x80000006 Linux assumes none.
    Regs signature = cpuid(1);
    std::uint32_t family = bits(signature.eax, 8, 4) + bits(signature.eax, 20, 8);
    REQUIRE(family >= 0x19); // older families place LLCs differently; the test tables are Zen 3
    if (cpuid(0x80000006).edx == 0) {
        view.firmware_bugs.push_back("0x80000006 EDX describes no L3");
        return view;
    }
    std::uint32_t leaves = cache_leaf_count(cpuid, 0x8000001d);
    if (leaves == 0) {
        view.firmware_bugs.push_back("no cache subleaves");
        return view;
    }
    Regs llc = cpuid(0x8000001d, leaves - 1);
    view.llc_id = apicid >> count_order(threads_sharing(llc));
    return view;
}

// Which vCPUs share a cache at subleaf `index` of `function`, by the key Linux groups them
// with (cacheinfo.c: __cache_amd_cpumap_setup, __cache_cpumap_setup).
std::uint32_t cache_group(const LinuxView& view, const GuestCpuid& cpuid, CpuVendor vendor,
                          std::uint32_t index) {
    if (vendor == CpuVendor::amd) {
        if (index == 3)
            return view.llc_id; // Linux uses the LLC mask for AMD's subleaf 3
        std::uint32_t sharing = threads_sharing(cpuid(0x8000001d, index));
        return view.apicid - view.apicid % sharing;
    }
    return view.apicid >> count_order(threads_sharing(cpuid(4, index)));
}

using Partition = std::set<std::set<std::uint32_t>>;

// The vCPUs grouped by `key`.
template <typename Key>
Partition partition(std::uint32_t cpus, Key key) {
    std::map<std::uint64_t, std::set<std::uint32_t>> groups;
    for (std::uint32_t cpu = 0; cpu < cpus; ++cpu)
        groups[key(cpu)].insert(cpu);
    Partition result;
    for (auto& [id, members] : groups)
        result.insert(members);
    return result;
}

// Builds every vCPU's table from `supported`, decodes each as Linux would and checks that the
// guest sees `topology`.
void check_guest_topology(const std::vector<kvm_cpuid_entry2>& supported, CpuVendor vendor,
                          const Topology& topology) {
    const std::uint32_t cpus = topology.cpus();
    std::vector<GuestCpuid> tables;
    std::vector<LinuxView> views;
    for (std::uint32_t cpu = 0; cpu < cpus; ++cpu) {
        tables.emplace_back(vcpu_cpuid(supported, topology, cpu));
        views.push_back(vendor == CpuVendor::amd
                            ? linux_view_amd(tables.back(), apic_id_of(topology, cpu))
                            : linux_view_intel(tables.back(), apic_id_of(topology, cpu)));
    }

    const std::uint32_t llc_shift = apic_core_bits(topology) + apic_thread_bits(topology);
    const std::uint32_t max_apic_id = ktstr::max_apic_id(topology);
    for (std::uint32_t cpu = 0; cpu < cpus; ++cpu) {
        CAPTURE(cpu);
        const GuestCpuid& cpuid = tables[cpu];
        const LinuxView& view = views[cpu];
        const CpuPlace place = topology.place(cpu);
        const std::uint32_t apic_id = apic_id_of(topology, cpu);
        CHECK(view.firmware_bugs == std::vector<std::string>{});
        CHECK(cpuid.entries().size() <= 256); // KVM_MAX_CPUID_ENTRIES

        // APIC IDs: leaf 1 (8 bits), every extended-topology subleaf, and what Linux settled on.
        CHECK(view.initial_apicid == apic_id);
        CHECK(bits(cpuid(1).ebx, 24, 8) == (apic_id & 0xff));
        for (std::uint32_t function : {0xbu, 0x1fu}) {
            if (function > cpuid.max_basic())
                continue;
            for (std::uint32_t index = 0; index < 3; ++index)
                CHECK(cpuid(function, index).edx == apic_id);
        }

        // SMT id, core id, package, LLC id.
        CHECK(view.smt_id() == place.thread);
        CHECK(view.core_id() >> apic_core_bits(topology) == place.llc);
        CHECK((view.core_id() & ((1u << apic_core_bits(topology)) - 1)) == place.core_in_llc);
        CHECK(view.package_id() == 0);
        if (vendor == CpuVendor::amd)
            CHECK(view.llc_id == place.llc);
        else
            CHECK(view.llc_id == place.llc << llc_shift);

        // Counts: siblings, cores, and the legacy fields.
        CHECK(view.ncpus[kSmt] == topology.threads_per_core()); // smp_num_siblings
        CHECK(view.max_cores() == topology.llcs() * topology.cores_per_llc());
        CHECK(view.ncpus[kCore] == cpus);
        CHECK(bits(cpuid(1).ecx, 31, 1) == 1); // hypervisor
        CHECK(bits(cpuid(1).edx, 28, 1) == (cpus > 1));
        std::uint32_t logical = bits(cpuid(1).ebx, 16, 8);
        if (max_apic_id < 255)
            CHECK((1u << count_order(logical)) > max_apic_id);
        else
            CHECK(logical == 255);
        // 0x80000008 as parse_8000_0008 reads it: the package spans every APIC ID.
        Regs sizes = cpuid(0x80000008);
        std::uint32_t package_bits = bits(sizes.ecx, 12, 4);
        if (package_bits == 0)
            package_bits = count_order(bits(sizes.ecx, 0, 8) + 1);
        CHECK((max_apic_id >> package_bits) == 0);
        CHECK(bits(sizes.ecx, 0, 8) + 1 == std::min(cpus, 256u));

        // The cache leaf: L1/L2 shared by a core's threads, L3 by the LLC; a null subleaf ends it.
        const std::uint32_t cache_function = vendor == CpuVendor::amd ? 0x8000001d : 4;
        const std::uint32_t caches = cache_leaf_count(cpuid, cache_function);
        REQUIRE(caches >= 2);
        bool has_l3 = false;
        for (std::uint32_t index = 0; index < caches; ++index) {
            CAPTURE(index);
            Regs cache = cpuid(cache_function, index);
            std::uint32_t level = bits(cache.eax, 5, 3);
            std::uint32_t shift = level <= 2 ? apic_thread_bits(topology) : llc_shift;
            CHECK(bits(cache.eax, 14, 12) == (1u << shift) - 1);
            has_l3 = has_l3 || level == 3;
            if (vendor != CpuVendor::amd) {
                // Core IDs the package has room for, minus one (6 bits).
                std::uint32_t core_ids = bits(cache.eax, 26, 6) + 1;
                if (core_ids < 64)
                    CHECK(((1u << count_order(core_ids)) << apic_thread_bits(topology)) >
                          max_apic_id);
            }
        }
        CHECK(has_l3);
        if (vendor == CpuVendor::amd) {
            CHECK(bits(cpuid(0x8000001d, caches - 1).eax, 5, 3) == 3); // the LLC comes last
            Regs extended = cpuid(0x8000001e);
            CHECK(extended.eax == apic_id);
            CHECK(bits(extended.ebx, 8, 8) == topology.threads_per_core() - 1);
            CHECK(view.amd_node_id == place.node);
            CHECK(view.amd_nodes_per_pkg == topology.nodes());
        }
    }

    // The groups Linux forms match the topology's.
    Partition by_core = partition(cpus, [&](auto cpu) { return topology.place(cpu).core; });
    Partition by_llc = partition(cpus, [&](auto cpu) { return topology.place(cpu).llc; });
    CHECK(partition(cpus, [&](auto cpu) {
              return std::uint64_t(views[cpu].package_id()) << 32 | views[cpu].core_id();
          }) == by_core);
    CHECK(partition(cpus, [&](auto cpu) { return views[cpu].llc_id; }) == by_llc);
    CHECK(partition(cpus, [&](auto cpu) { return views[cpu].package_id(); }).size() == 1);
    const std::uint32_t cache_function = vendor == CpuVendor::amd ? 0x8000001d : 4;
    for (std::uint32_t index = 0; index < cache_leaf_count(tables[0], cache_function); ++index) {
        CAPTURE(index);
        std::uint32_t level = bits(tables[0](cache_function, index).eax, 5, 3);
        CHECK(partition(cpus, [&](auto cpu) {
                  return cache_group(views[cpu], tables[cpu], vendor, index);
              }) == (level <= 2 ? by_core : by_llc));
    }
    if (vendor == CpuVendor::amd) {
        CHECK(partition(cpus, [&](auto cpu) { return tables[cpu](0x8000001e).ebx & 0xff; }) ==
              by_core);
        CHECK(partition(cpus, [&](auto cpu) { return views[cpu].amd_node_id; }) ==
              partition(cpus, [&](auto cpu) { return topology.place(cpu).node; }));
    }
}

const kvm_cpuid_entry2* find(const std::vector<kvm_cpuid_entry2>& entries, std::uint32_t function,
                             std::uint32_t index = 0) {
    for (const auto& e : entries)
        if (e.function == function && e.index == index)
            return &e;
    return nullptr;
}

bool same_entry(const kvm_cpuid_entry2& a, const kvm_cpuid_entry2& b) {
    return a.function == b.function && a.index == b.index && a.flags == b.flags && a.eax == b.eax &&
           a.ebx == b.ebx && a.ecx == b.ecx && a.edx == b.edx;
}

} // namespace

TEST_CASE("the vendor comes from leaf 0", "[cpuid]") {
    CHECK(cpu_vendor(intel_supported()) == CpuVendor::intel);
    CHECK(cpu_vendor(amd_supported()) == CpuVendor::amd);
    std::vector<kvm_cpuid_entry2> hygon{vendor_leaf(0, 0x10, "HygonGenuine")};
    CHECK(cpu_vendor(hygon) == CpuVendor::other);
    CHECK(cpu_vendor(std::vector<kvm_cpuid_entry2>{}) == CpuVendor::other);
}

TEST_CASE("a Linux guest on Intel derives every preset topology from CPUID", "[cpuid]") {
    const auto supported = intel_supported();
    for (const auto& [name, topology] : topology_presets(Arch::x86_64)) {
        CAPTURE(name);
        check_guest_topology(supported, CpuVendor::intel, topology);
    }
}

TEST_CASE("a Linux guest on AMD derives every preset topology from CPUID", "[cpuid]") {
    const auto supported = amd_supported();
    for (const auto& [name, topology] : topology_presets(Arch::x86_64)) {
        CAPTURE(name);
        check_guest_topology(supported, CpuVendor::amd, topology);
    }
}

TEST_CASE("leaves the guest needs are added when the host table lacks them", "[cpuid]") {
    const std::array topologies{Topology::parse("1n2l2c2t"), Topology::parse("2n4l3c1t"),
                                Topology::parse("1n1l1c1t")};
    SECTION("Intel without 0xB, 0x1F or an L3") {
        auto supported = intel_supported();
        remove_leaf(supported, 0xb);
        remove_leaf(supported, 0x1f);
        std::erase_if(supported, [](const auto& e) { return e.function == 4 && e.index >= 3; });
        supported.push_back(subleaf(4, 3, {}));
        for (const Topology& topology : topologies) {
            CAPTURE(topology.to_string());
            check_guest_topology(supported, CpuVendor::intel, topology);
        }
    }
    SECTION("Intel without any cache subleaf and with leaf 0 below 0xB") {
        auto supported = intel_supported();
        remove_leaf(supported, 4);
        remove_leaf(supported, 0xb);
        remove_leaf(supported, 0x1f);
        entry_of(supported, 0).eax = 0xa;
        for (const Topology& topology : topologies) {
            CAPTURE(topology.to_string());
            check_guest_topology(supported, CpuVendor::intel, topology);
        }
    }
    SECTION("AMD without TOPOEXT, 0x8000001D/E, an L3 in 0x80000006, up to 0x80000008") {
        auto supported = amd_supported();
        remove_leaf(supported, 0x8000001d);
        remove_leaf(supported, 0x8000001e);
        remove_leaf(supported, 0x80000021);
        remove_leaf(supported, 0xb);
        entry_of(supported, 0x80000000).eax = 0x80000008;
        entry_of(supported, 0x80000001).ecx &= ~(1u << 22);
        entry_of(supported, 0x80000006).edx = 0;
        for (const Topology& topology : topologies) {
            CAPTURE(topology.to_string());
            check_guest_topology(supported, CpuVendor::amd, topology);
        }
    }
    SECTION("AMD listing its L3 first") {
        // Linux takes the last subleaf as the LLC, whatever the host's order.
        auto supported = amd_supported();
        for (auto& entry : supported)
            if (entry.function == 0x8000001d && entry.index < 4)
                entry.index = (entry.index + 1) % 4;
        for (const Topology& topology : topologies) {
            CAPTURE(topology.to_string());
            check_guest_topology(supported, CpuVendor::amd, topology);
        }
    }
    SECTION("AMD whose leaf 0 reaches 0x1F") {
        auto supported = amd_supported();
        entry_of(supported, 0).eax = 0x1f;
        supported.push_back(subleaf(0x1f, 0, {}));
        for (const Topology& topology : topologies) {
            CAPTURE(topology.to_string());
            check_guest_topology(supported, CpuVendor::amd, topology);
        }
    }
    SECTION("AMD with the host's own 0x80000026") {
        auto supported = amd_supported();
        entry_of(supported, 0x80000000).eax = 0x80000026;
        supported.push_back(subleaf(0x80000026, 0, {1, 2, 0x100, 5}));
        supported.push_back(subleaf(0x80000026, 1, {7, 32, 0x201, 5}));
        supported.push_back(subleaf(0x80000026, 2, {}));
        for (const Topology& topology : topologies) {
            CAPTURE(topology.to_string());
            check_guest_topology(supported, CpuVendor::amd, topology);
        }
    }
}

TEST_CASE("leaves outside the topology pass through untouched", "[cpuid]") {
    const Topology topology = Topology::parse("2n4l2c2t");
    for (const auto& supported : {intel_supported(), amd_supported()}) {
        auto table = vcpu_cpuid(supported, topology, 13);
        for (std::uint32_t function : {7u, 0xdu, 0x40000000u, 0x40000001u, 0x80000005u}) {
            CAPTURE(function);
            const kvm_cpuid_entry2* before = find(supported, function);
            if (!before)
                continue;
            const kvm_cpuid_entry2* after = find(table, function);
            REQUIRE(after != nullptr);
            CHECK(same_entry(*before, *after));
        }
        // Leaf 1 keeps the signature and CLFLUSH size; 0x80000008 keeps the address sizes.
        CHECK(find(table, 1)->eax == find(supported, 1)->eax);
        CHECK(bits(find(table, 1)->ebx, 0, 16) == bits(find(supported, 1)->ebx, 0, 16));
        CHECK(find(table, 0x80000008)->eax == find(supported, 0x80000008)->eax);
    }
    // The supported table is not changed.
    auto supported = intel_supported();
    auto copy = supported;
    vcpu_cpuid(supported, topology, 3);
    REQUIRE(copy.size() == supported.size());
    for (std::size_t i = 0; i < copy.size(); ++i)
        CHECK(same_entry(copy[i], supported[i]));
}

TEST_CASE("0x1F repeats 0xB on Intel; the AMD table loses the host's 0x80000026", "[cpuid]") {
    const Topology topology = Topology::parse("1n3l3c2t");
    auto intel = vcpu_cpuid(intel_supported(), topology, 17);
    for (std::uint32_t index = 0; index < 3; ++index) {
        const kvm_cpuid_entry2* b = find(intel, 0xb, index);
        const kvm_cpuid_entry2* f = find(intel, 0x1f, index);
        REQUIRE(b != nullptr);
        REQUIRE(f != nullptr);
        CHECK(Regs{b->eax, b->ebx, b->ecx, b->edx} == Regs{f->eax, f->ebx, f->ecx, f->edx});
        CHECK((f->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) != 0);
    }
    // vCPU 17: LLC 2, core 2, thread 1 -> APIC ID 2 << 3 | 2 << 1 | 1.
    CHECK(find(intel, 0xb, 0)->edx == 21);
    CHECK(find(intel, 0xb, 0)->ebx == 2);
    CHECK(find(intel, 0xb, 1)->ebx == 18);
    CHECK(find(intel, 0xb, 1)->ecx == (2u << 8 | 1));
    CHECK(find(intel, 0xb, 2)->ecx == 2);

    auto amd = amd_supported();
    entry_of(amd, 0x80000000).eax = 0x80000026;
    amd.push_back(subleaf(0x80000026, 0, {1, 2, 0x100, 5}));
    auto table = vcpu_cpuid(amd, topology, 17);
    CHECK(find(table, 0x80000026) == nullptr);
    CHECK(find(table, 0x1f) == nullptr); // AMD's leaf 0 stops at 0x10
}

TEST_CASE("vCPUs outside the topology and tables without leaf 0 are refused", "[cpuid]") {
    const Topology topology = Topology::parse("1n2l2c2t");
    CHECK_THROWS_AS(vcpu_cpuid(intel_supported(), topology, 8), Error);
    auto headless = intel_supported();
    remove_leaf(headless, 0);
    CHECK_THROWS_AS(vcpu_cpuid(headless, topology, 0), Error);
}

TEST_CASE("a real vCPU takes the table and its guest reads the topology back", "[cpuid][kvm]") {
    Kvm kvm;
    std::vector<kvm_cpuid_entry2> supported = supported_cpuid(kvm);
    REQUIRE(supported.size() > 10);
    REQUIRE(find(supported, 0) != nullptr);
    INFO("host vendor " << static_cast<int>(cpu_vendor(supported)));

    const Topology topology = Topology::parse("1n2l2c2t");
    const std::uint32_t cpu = 6; // LLC 1, core 1, thread 0
    const std::uint32_t apic_id = apic_id_of(topology, cpu);
    std::vector<kvm_cpuid_entry2> table = vcpu_cpuid(supported, topology, cpu);

    Vm vm(kvm);
    GuestMemory memory({{GuestAddress(0), 0x10000}});
    vm.map_memory(memory);
    Vcpu vcpu = vm.create_vcpu(apic_id); // KVM's APIC ID is the vCPU id
    set_vcpu_cpuid(vcpu, table);

    // Real mode: CPUID(1) and CPUID(0xB, 1), each register stored from 0x3000 on; hlt.
    const std::uint8_t code[] = {
        0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
        0x66, 0x31, 0xc9,                   // xor ecx, ecx
        0x0f, 0xa2,                         // cpuid
        0x66, 0xa3, 0x00, 0x30,             // mov [0x3000], eax
        0x66, 0x89, 0x1e, 0x04, 0x30,       // mov [0x3004], ebx
        0x66, 0x89, 0x0e, 0x08, 0x30,       // mov [0x3008], ecx
        0x66, 0x89, 0x16, 0x0c, 0x30,       // mov [0x300c], edx
        0x66, 0xb8, 0x0b, 0x00, 0x00, 0x00, // mov eax, 0xb
        0x66, 0xb9, 0x01, 0x00, 0x00, 0x00, // mov ecx, 1
        0x0f, 0xa2,                         // cpuid
        0x66, 0xa3, 0x10, 0x30,             // mov [0x3010], eax
        0x66, 0x89, 0x1e, 0x14, 0x30,       // mov [0x3014], ebx
        0x66, 0x89, 0x0e, 0x18, 0x30,       // mov [0x3018], ecx
        0x66, 0x89, 0x16, 0x1c, 0x30,       // mov [0x301c], edx
        0xf4,                               // hlt
    };
    memory.write_bytes(GuestAddress(0x1000), code);
    x86_64::setup_real_mode_vcpu(vcpu, GuestAddress(0x1000));

    std::uint32_t reason = vcpu.run();
    while (reason == KVM_EXIT_INTR)
        reason = vcpu.run();
    REQUIRE(reason == KVM_EXIT_HLT);
    auto seen = [&](std::uint64_t offset) {
        return memory.read<std::uint32_t>(GuestAddress(0x3000 + offset));
    };
    const kvm_cpuid_entry2* leaf1 = find(table, 1);
    const kvm_cpuid_entry2* core_level = find(table, 0xb, 1);
    REQUIRE(leaf1 != nullptr);
    REQUIRE(core_level != nullptr);
    CHECK(seen(0x0) == leaf1->eax);
    CHECK(seen(0x4) == leaf1->ebx);
    CHECK(bits(seen(0x4), 24, 8) == apic_id);
    CHECK(bits(seen(0x8), 31, 1) == 1); // hypervisor
    CHECK(bits(seen(0xc), 28, 1) == 1); // HTT
    CHECK(seen(0x10) == core_level->eax);
    CHECK(seen(0x14) == topology.cpus());
    CHECK(seen(0x18) == (2u << 8 | 1)); // core level, subleaf 1
    CHECK(seen(0x1c) == apic_id);
}

TEST_CASE("an AMD Zen 1 CPU is shown as Zen 2, whose LLCs Linux reads from CPUID", "[cpuid]") {
    auto supported = amd_supported();
    entry_of(supported, 1).eax = 0x00800f12; // family 0x17 model 0x01, as QEMU's "EPYC"
    Topology topology = Topology::parse("1n2l2c2t");
    auto table = vcpu_cpuid(supported, topology, 5);
    std::uint32_t eax = find(table, 1)->eax;
    CHECK(bits(eax, 8, 4) + bits(eax, 20, 8) == 0x17);
    CHECK((bits(eax, 4, 4) | bits(eax, 16, 4) << 4) == 0x31);
    CHECK(bits(eax, 0, 4) == 2);             // stepping kept
    entry_of(supported, 1).eax = 0x00830f10; // Zen 2 Rome: left alone
    CHECK(find(vcpu_cpuid(supported, topology, 5), 1)->eax == 0x00830f10);
}

TEST_CASE("VM features set their bits and nothing else; a missing leaf is refused", "[cpuid]") {
    auto supported = intel_supported();
    auto table = supported;
    add_vm_cpu_features(table, {});
    CHECK(entry_of(table, 1).ecx == entry_of(supported, 1).ecx);
    CHECK(entry_of(table, 0x40000001).eax == entry_of(supported, 0x40000001).eax);

    add_vm_cpu_features(table, {.tsc_deadline_timer = true, .msi_ext_dest_id = true});
    CHECK(entry_of(table, 1).ecx == (entry_of(supported, 1).ecx | 1u << 24));
    CHECK(entry_of(table, 0x40000001).eax == (entry_of(supported, 0x40000001).eax | 1u << 15));
    CHECK(entry_of(table, 1).edx == entry_of(supported, 1).edx);

    auto without_kvm_leaf = supported;
    remove_leaf(without_kvm_leaf, 0x40000001);
    CHECK_THROWS_AS(add_vm_cpu_features(without_kvm_leaf, {.msi_ext_dest_id = true}), Error);
}
