// Per-vCPU CPUID for a synthetic topology.
//
// Layout. vCPU i's APIC ID packs llc | core_in_llc | thread into bit fields (Topology::apic_id),
// and the whole machine is ONE package:
// - 0xB / 0x1F: an SMT level whose shift is thread_bits, then a core level whose shift,
//   bits_for(max APIC ID + 1), covers every APIC ID, so apic >> shift is 0 on every vCPU;
// - 0x4 / 0x8000001D: the L3 is shared by the 1 << (core_bits + thread_bits) IDs of one LLC, so
//   Linux's llc_id (apic >> order of the L3 sharing count) is the topology's LLC; L1 and L2 are
//   shared by the SMT siblings of one core.
// Why one package: a package per NUMA node cannot be expressed (a node holds llcs/nodes LLCs,
// not always a power of two, e.g. 3 in 4n12l8c2t, so no APIC-ID shift separates nodes), and a
// package per LLC would show the guest as many sockets as LLCs, with no level between LLC and
// NUMA node. Linux takes NUMA nodes inside a package (AMD's multi-node sockets, Intel's SNC) and
// builds its NUMA sched domains above the LLCs; on AMD, 0x8000001E also names the node within
// the package. The Rust ktstr lays it out the same way.

#include "ktstr/vmm/x86_64/cpuid.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/vmm/x86_64/apic_id.hpp"

#include <algorithm>
#include <asm/kvm_para.h>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fmt/format.h>
#include <string_view>
#include <sys/ioctl.h>
#include <utility>

namespace ktstr {

namespace {

// linux-libc-dev 6.1 (Debian 12) declares kvm_cpuid2's entries with __DECLARE_FLEX_ARRAY, which
// in C++ puts a one-byte empty struct before them: sizeof(kvm_cpuid2) is 12 instead of the
// kernel's 8, and so are the offsets and the ioctl numbers derived from it. Use the kernel's.
struct CpuidHeader {
    std::uint32_t nent;
    std::uint32_t padding;
};
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
static_assert(kGetSupportedCpuid == 0xc008ae05 && kSetCpuid2 == 0x4008ae90);

// KVM caps its tables at 256 entries today; this only bounds the E2BIG retries.
constexpr std::uint32_t kMaxCpuidEntries = 4096;

constexpr std::uint32_t kHypervisorBit = 1u << 31;  // leaf 0x1 ECX
constexpr std::uint32_t kTscDeadlineBit = 1u << 24; // leaf 0x1 ECX
constexpr std::uint32_t kHttBit = 1u << 28;         // leaf 0x1 EDX: EBX[23:16] is valid
constexpr std::uint32_t kCmpLegacyBit = 1u << 1;    // leaf 0x80000001 ECX: multi-core
constexpr std::uint32_t kTopoextBit = 1u << 22;     // leaf 0x80000001 ECX: 0x8000001D/E exist

// Level types of 0xB / 0x1F, ECX[15:8].
constexpr std::uint32_t kLevelInvalid = 0;
constexpr std::uint32_t kLevelSmt = 1;
constexpr std::uint32_t kLevelCore = 2;

// Cache types of 0x4 / 0x8000001D, EAX[4:0].
constexpr std::uint32_t kNoCache = 0;
constexpr std::uint32_t kDataCache = 1;
constexpr std::uint32_t kInstructionCache = 2;
constexpr std::uint32_t kUnifiedCache = 3;

// The ioctls take the header followed by its entries in one block; entries are copied in and
// out with memcpy, so nothing is read through a type it was not written as.
std::vector<std::byte> cpuid_block(std::uint32_t capacity,
                                   std::span<const kvm_cpuid_entry2> entries = {}) {
    std::vector<std::byte> block(sizeof(CpuidHeader) + capacity * sizeof(kvm_cpuid_entry2));
    CpuidHeader header{capacity, 0};
    std::memcpy(block.data(), &header, sizeof header);
    if (!entries.empty())
        std::memcpy(block.data() + sizeof header, entries.data(), entries.size_bytes());
    return block;
}

// The entry KVM would answer CPUID(function, index) with: leaves without subleaves ignore the
// index.
template <typename Entries>
auto* find_entry(Entries& entries, std::uint32_t function, std::uint32_t index = 0) {
    auto found = std::find_if(entries.begin(), entries.end(), [&](const kvm_cpuid_entry2& e) {
        return e.function == function &&
               (!(e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e.index == index);
    });
    return found == entries.end() ? nullptr : &*found;
}

// The entry of a leaf without subleaves, appended all zero when `entries` lacks it.
kvm_cpuid_entry2& plain_leaf(std::vector<kvm_cpuid_entry2>& entries, std::uint32_t function) {
    if (kvm_cpuid_entry2* entry = find_entry(entries, function))
        return *entry;
    kvm_cpuid_entry2 added{};
    added.function = function;
    return entries.emplace_back(added);
}

kvm_cpuid_entry2 subleaf(std::uint32_t function, std::uint32_t index) {
    kvm_cpuid_entry2 entry{};
    entry.function = function;
    entry.index = index;
    entry.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    return entry;
}

// Puts `replacement` where the entries of `function` were (at the end if there were none).
void replace_leaf(std::vector<kvm_cpuid_entry2>& entries, std::uint32_t function,
                  const std::vector<kvm_cpuid_entry2>& replacement) {
    auto first = std::find_if(entries.begin(), entries.end(),
                              [&](const kvm_cpuid_entry2& e) { return e.function == function; });
    auto at = first - entries.begin();
    std::erase_if(entries, [&](const kvm_cpuid_entry2& e) { return e.function == function; });
    entries.insert(entries.begin() + at, replacement.begin(), replacement.end());
}

constexpr std::uint32_t field(std::uint32_t reg, unsigned low, unsigned width) {
    return (reg >> low) & ((1u << width) - 1);
}

// `reg` with bits [low, low + width) set to `value`, cut to the field's width.
constexpr std::uint32_t with_field(std::uint32_t reg, unsigned low, unsigned width,
                                   std::uint32_t value) {
    std::uint32_t mask = ((1u << width) - 1) << low;
    return (reg & ~mask) | ((value << low) & mask);
}

// What the topology leaves of one vCPU are computed from.
struct VcpuLayout {
    const Topology& topology;
    CpuPlace place;
    std::uint32_t apic_id;
    std::uint32_t thread_shift;  // APIC-ID bits below the core
    std::uint32_t llc_shift;     // APIC-ID bits below the LLC
    std::uint32_t package_shift; // APIC-ID bits below the package: all of them
};

VcpuLayout layout_of(const Topology& topology, std::uint32_t cpu) {
    return {topology,
            topology.place(cpu),
            apic_id_of(topology, cpu),
            apic_thread_bits(topology),
            apic_core_bits(topology) + apic_thread_bits(topology),
            bits_for(max_apic_id(topology) + 1)};
}

// Leaf 0xB or 0x1F: the SMT level, the core level spanning the package, then the invalid
// level that ends Linux's walk. Every subleaf carries the x2APIC ID.
std::vector<kvm_cpuid_entry2> extended_topology(std::uint32_t function, const VcpuLayout& layout) {
    struct Level {
        std::uint32_t shift, count, type;
    };
    const Level levels[] = {
        {layout.thread_shift, layout.topology.threads_per_core(), kLevelSmt},
        {layout.package_shift, layout.topology.cpus(), kLevelCore},
        {0, 0, kLevelInvalid},
    };
    std::vector<kvm_cpuid_entry2> subleaves;
    for (std::uint32_t index = 0; index < std::size(levels); ++index) {
        kvm_cpuid_entry2 entry = subleaf(function, index);
        entry.eax = levels[index].shift;
        entry.ebx = levels[index].count & 0xffff;
        entry.ecx = levels[index].type << 8 | index;
        entry.edx = layout.apic_id;
        subleaves.push_back(entry);
    }
    return subleaves;
}

struct CacheShape {
    std::uint32_t type, level, size_kib, ways;
};
constexpr std::uint32_t kCacheLineBytes = 64;
// For caches the host does not list. The sizes only show in the guest's sysfs; the sharing
// fields alone decide the topology.
constexpr CacheShape kL1Data{kDataCache, 1, 32, 8};
constexpr CacheShape kL1Instruction{kInstructionCache, 1, 32, 8};
constexpr CacheShape kL2{kUnifiedCache, 2, 1024, 16};
constexpr CacheShape kL3{kUnifiedCache, 3, 32 * 1024, 16};

// A subleaf of 0x4 / 0x8000001D (the same layout) for `shape`; sharing is filled in later.
kvm_cpuid_entry2 cache_subleaf(std::uint32_t function, const CacheShape& shape) {
    kvm_cpuid_entry2 entry = subleaf(function, 0);
    entry.eax = shape.type | shape.level << 5 | 1u << 8;                    // self-initialising
    entry.ebx = (kCacheLineBytes - 1) | (shape.ways - 1) << 22;             // one line partition
    entry.ecx = shape.size_kib * 1024 / (kCacheLineBytes * shape.ways) - 1; // sets - 1
    return entry;
}

// EAX[25:14] of 0x4 / 0x8000001D: APIC IDs sharing the cache, minus one. L1 and L2 belong to
// one core, L3 (and any level above) to one LLC.
std::uint32_t cache_sharing(const VcpuLayout& layout, std::uint32_t level) {
    return (1u << (level <= 2 ? layout.thread_shift : layout.llc_shift)) - 1;
}

// The subleaves of cache leaf `function` (0x4 on Intel, 0x8000001D on AMD) for one vCPU: the
// host's caches in level order, each shared as cache_sharing says, our own when the host lists
// none, an L3 when it lists no L3 (else Linux takes the per-core L2 as the LLC), then the null
// subleaf that ends Linux's walk. Level order matters on AMD: Linux reads the LLC from the
// last subleaf. `core_ids` fills EAX[31:26], which only leaf 0x4 defines.
std::vector<kvm_cpuid_entry2> cache_subleaves(std::span<const kvm_cpuid_entry2> supported,
                                              std::uint32_t function, const VcpuLayout& layout,
                                              bool core_ids) {
    auto level_of = [](const kvm_cpuid_entry2& e) {
        return field(e.eax, 5, 3);
    };
    std::vector<kvm_cpuid_entry2> caches;
    for (const kvm_cpuid_entry2& entry : supported)
        if (entry.function == function && field(entry.eax, 0, 5) != kNoCache)
            caches.push_back(entry);
    if (caches.empty()) {
        for (const CacheShape& shape : {kL1Data, kL1Instruction, kL2})
            caches.push_back(cache_subleaf(function, shape));
    }
    if (std::none_of(caches.begin(), caches.end(),
                     [&](const kvm_cpuid_entry2& e) { return level_of(e) == 3; })) {
        caches.push_back(cache_subleaf(function, kL3));
    }
    std::stable_sort(caches.begin(), caches.end(), [&](const auto& a, const auto& b) {
        return std::pair(level_of(a), a.index) < std::pair(level_of(b), b.index);
    });

    // Cores the package has room for, minus one; the field holds up to 63.
    std::uint32_t core_id_count =
        std::min((1u << (layout.package_shift - layout.thread_shift)) - 1, 63u);
    for (std::uint32_t index = 0; index < caches.size(); ++index) {
        kvm_cpuid_entry2& cache = caches[index];
        cache.index = index;
        cache.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
        cache.eax = with_field(cache.eax, 14, 12, cache_sharing(layout, level_of(cache)));
        cache.eax = with_field(cache.eax, 26, 6, core_ids ? core_id_count : 0);
    }
    caches.push_back(subleaf(function, static_cast<std::uint32_t>(caches.size())));
    return caches;
}

// 0x80000006 descriptors of kL2 (ECX) and kL3 (EDX); 0x8 encodes 16 ways, 1 line per tag.
constexpr std::uint32_t kL2Descriptor = kL2.size_kib << 16 | 0x8u << 12 | 1u << 8 | kCacheLineBytes;
constexpr std::uint32_t kL3Descriptor =
    (kL3.size_kib / 512) << 18 | 0x8u << 12 | 1u << 8 | kCacheLineBytes;

// Leaf 0x8000001E: extended APIC ID, core and node.
kvm_cpuid_entry2 amd_topology_leaf(const VcpuLayout& layout) {
    const Topology& topology = layout.topology;
    kvm_cpuid_entry2 entry{};
    entry.function = 0x8000001e;
    entry.eax = layout.apic_id;
    // [7:0] core ID, unique in the package (at most 252 cores); [15:8] threads per core - 1.
    entry.ebx = (layout.place.core & 0xff) | ((topology.threads_per_core() - 1) & 0xff) << 8;
    // [7:0] node ID; [10:8] nodes per package - 1, a field that counts at most 8.
    entry.ecx = (layout.place.node & 0xff) | (std::min(topology.nodes(), 8u) - 1) << 8;
    return entry;
}

void patch_amd_leaves(std::vector<kvm_cpuid_entry2>& entries,
                      std::span<const kvm_cpuid_entry2> supported, const VcpuLayout& layout) {
    // Linux reads extended leaves only up to the highest one leaf 0x80000000 names.
    kvm_cpuid_entry2& extended = plain_leaf(entries, 0x80000000);
    extended.eax = std::max(extended.eax, 0x8000001eu);

    // TOPOEXT: without it Linux skips 0xB, 0x8000001D and 0x8000001E on AMD.
    kvm_cpuid_entry2& features = plain_leaf(entries, 0x80000001);
    features.ecx |= kTopoextBit;
    if (layout.topology.cpus() > 1)
        features.ecx |= kCmpLegacyBit;
    else
        features.ecx &= ~kCmpLegacyBit;

    // Linux believes in an L3 only when 0x80000006 EDX describes one.
    kvm_cpuid_entry2& l2_l3 = plain_leaf(entries, 0x80000006);
    if (l2_l3.ecx == 0)
        l2_l3.ecx = kL2Descriptor;
    if (l2_l3.edx == 0)
        l2_l3.edx = kL3Descriptor;

    // Linux takes the LLC id of family 0x17 models up to 0x1F (Zen 1, and QEMU's "EPYC" CPU
    // that the nested sandbox runs on) as APIC ID >> 3, not from 0x8000001D's sharing count;
    // those LLCs would not be ours. Present such a CPU as Zen 2 (model 0x31), which reads
    // the sharing count and needs nothing Zen 1 lacks.
    kvm_cpuid_entry2& signature = plain_leaf(entries, 0x1);
    std::uint32_t family = field(signature.eax, 8, 4) + field(signature.eax, 20, 8);
    std::uint32_t model = field(signature.eax, 4, 4) | field(signature.eax, 16, 4) << 4;
    if (family == 0x17 && model <= 0x1f)
        signature.eax = (signature.eax & ~0x000f00f0u) | 0x3u << 16 | 0x1u << 4;

    replace_leaf(entries, 0x8000001d, cache_subleaves(supported, 0x8000001d, layout, false));
    replace_leaf(entries, 0x8000001e, {amd_topology_leaf(layout)});
    // Linux prefers 0x80000026 (Zen 5 on) to 0xB; a host's would describe the host. Absent,
    // KVM answers zeros and Linux falls back to 0xB.
    std::erase_if(entries, [](const kvm_cpuid_entry2& e) { return e.function == 0x80000026; });
}

} // namespace

std::vector<kvm_cpuid_entry2> supported_cpuid(const Kvm& kvm) {
    // KVM answers E2BIG until the block has room for every entry.
    for (std::uint32_t capacity = 64; capacity <= kMaxCpuidEntries; capacity *= 2) {
        std::vector<std::byte> block = cpuid_block(capacity);
        if (::ioctl(kvm.fd(), kGetSupportedCpuid, block.data()) == 0) {
            CpuidHeader header;
            std::memcpy(&header, block.data(), sizeof header);
            std::vector<kvm_cpuid_entry2> entries(std::min(header.nent, capacity));
            std::memcpy(entries.data(), block.data() + sizeof header,
                        entries.size() * sizeof(kvm_cpuid_entry2));
            return entries;
        }
        if (errno != E2BIG)
            throw_errno("KVM_GET_SUPPORTED_CPUID");
    }
    throw Error(fmt::format("KVM_GET_SUPPORTED_CPUID: more than {} entries", kMaxCpuidEntries));
}

void add_vm_cpu_features(std::vector<kvm_cpuid_entry2>& supported, const VmCpuFeatures& features) {
    auto leaf = [&](std::uint32_t function) -> kvm_cpuid_entry2& {
        kvm_cpuid_entry2* entry = find_entry(supported, function);
        if (!entry)
            throw Error(fmt::format("the supported CPUID table has no leaf {:#x}", function));
        return *entry;
    };
    if (features.tsc_deadline_timer)
        leaf(1).ecx |= kTscDeadlineBit;
    if (features.msi_ext_dest_id)
        leaf(KVM_CPUID_FEATURES).eax |= 1u << KVM_FEATURE_MSI_EXT_DEST_ID;
}

CpuVendor cpu_vendor(std::span<const kvm_cpuid_entry2> entries) {
    const kvm_cpuid_entry2* leaf0 = find_entry(entries, 0);
    if (!leaf0)
        return CpuVendor::other;
    // Twelve characters, in EBX, EDX, ECX order.
    char vendor[12];
    std::memcpy(vendor, &leaf0->ebx, 4);
    std::memcpy(vendor + 4, &leaf0->edx, 4);
    std::memcpy(vendor + 8, &leaf0->ecx, 4);
    std::string_view name(vendor, sizeof vendor);
    if (name == "GenuineIntel")
        return CpuVendor::intel;
    if (name == "AuthenticAMD")
        return CpuVendor::amd;
    return CpuVendor::other;
}

std::vector<kvm_cpuid_entry2> vcpu_cpuid(std::span<const kvm_cpuid_entry2> supported,
                                         const Topology& topology, std::uint32_t cpu) {
    const VcpuLayout layout = layout_of(topology, cpu);
    const CpuVendor vendor = cpu_vendor(supported);
    std::vector<kvm_cpuid_entry2> entries(supported.begin(), supported.end());

    kvm_cpuid_entry2* leaf0 = find_entry(entries, 0);
    if (!leaf0)
        throw Error("the supported CPUID table has no leaf 0");
    // Linux reads 0xB only when the highest basic leaf reaches it.
    leaf0->eax = std::max(leaf0->eax, 0xbu);
    const std::uint32_t max_basic_leaf = leaf0->eax;

    kvm_cpuid_entry2& leaf1 = plain_leaf(entries, 1);
    // Initial APIC ID (its low 8 bits under x2APIC) and the logical processors the package has
    // room for, which the 8-bit field caps at 255.
    leaf1.ebx = with_field(leaf1.ebx, 24, 8, layout.apic_id & 0xff);
    leaf1.ebx = with_field(leaf1.ebx, 16, 8, std::min(1u << layout.package_shift, 255u));
    leaf1.ecx |= kHypervisorBit;
    if (topology.cpus() > 1)
        leaf1.edx |= kHttBit;
    else
        leaf1.edx &= ~kHttBit;

    replace_leaf(entries, 0xb, extended_topology(0xb, layout));
    // Linux tries 0x1F first on any vendor; KVM lists it (zeroed) when the host has it.
    if (max_basic_leaf >= 0x1f)
        replace_leaf(entries, 0x1f, extended_topology(0x1f, layout));

    // AMD guests read caches from 0x8000001D; Intel's (and Centaur's, Zhaoxin's) from 0x4.
    if (vendor == CpuVendor::amd)
        patch_amd_leaves(entries, supported, layout);
    else
        replace_leaf(entries, 4, cache_subleaves(supported, 4, layout, true));

    // ECX: [15:12] APIC-ID bits of the package, [7:0] logical processors in it - 1 (8 bits).
    // Not added when missing: its EAX holds the address sizes, which only the host knows.
    if (kvm_cpuid_entry2* sizes = find_entry(entries, 0x80000008)) {
        sizes->ecx = with_field(sizes->ecx, 12, 4, layout.package_shift);
        sizes->ecx = with_field(sizes->ecx, 0, 8, std::min(topology.cpus() - 1, 255u));
    }
    return entries;
}

void set_vcpu_cpuid(const Vcpu& vcpu, std::span<const kvm_cpuid_entry2> entries) {
    std::vector<std::byte> block = cpuid_block(static_cast<std::uint32_t>(entries.size()), entries);
    if (::ioctl(vcpu.fd(), kSetCpuid2, block.data()) != 0)
        throw_errno(fmt::format("KVM_SET_CPUID2 on vCPU {}", vcpu.id()));
}

} // namespace ktstr
