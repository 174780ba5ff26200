#include "ktstr/vmm/x86_64/boot.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"

#include <algorithm>
#include <cstring>
#include <fmt/format.h>
#include <sys/ioctl.h>

namespace ktstr::x86_64 {

namespace {

// Offsets in boot_params ("zero page") and its embedded setup header, from the kernel's
// Documentation/arch/x86/boot.rst and zero-page.rst.
constexpr std::size_t kAcpiRsdpAddr = 0x070;
constexpr std::size_t kExtRamdiskImage = 0x0c0;
constexpr std::size_t kExtRamdiskSize = 0x0c4;
constexpr std::size_t kExtCmdLinePtr = 0x0c8;
constexpr std::size_t kE820Entries = 0x1e8;
constexpr std::size_t kSetupSects = 0x1f1;
constexpr std::size_t kJump = 0x200;
constexpr std::size_t kVersion = 0x206;
constexpr std::size_t kTypeOfLoader = 0x210;
constexpr std::size_t kLoadFlags = 0x211;
constexpr std::size_t kRamdiskImage = 0x218;
constexpr std::size_t kRamdiskSize = 0x21c;
constexpr std::size_t kCmdLinePtr = 0x228;
constexpr std::size_t kInitrdAddrMax = 0x22c;
constexpr std::size_t kXloadFlags = 0x236;
constexpr std::size_t kCmdlineSize = 0x238;
constexpr std::size_t kInitSize = 0x260;
constexpr std::size_t kE820Table = 0x2d0;
constexpr std::size_t kE820MaxEntries = 128;
constexpr std::size_t kBootParamsSize = 0x1000;

constexpr std::uint16_t kMinProtocol = 0x020c; // 2.12: xloadflags, 64-bit entry
constexpr std::uint8_t kLoadedHigh = 0x01;
constexpr std::uint16_t kXlfKernel64 = 0x01;
constexpr std::uint8_t kLoaderUndefined = 0xff;
constexpr std::uint64_t kEntry64Offset = 0x200;

constexpr std::uint32_t kE820Ram = 1;
constexpr std::uint32_t kE820Reserved = 2;

constexpr std::uint16_t kCodeSelector = 0x10; // __BOOT_CS
constexpr std::uint16_t kDataSelector = 0x18; // __BOOT_DS

template <typename T>
T load(std::span<const std::uint8_t> bytes, std::size_t offset) {
    T value;
    std::memcpy(&value, bytes.data() + offset, sizeof(T));
    return value;
}

template <typename T>
void store(std::vector<std::uint8_t>& bytes, std::size_t offset, T value) {
    std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

// A GDT entry from base, limit and the access/flags bits (as the CPU lays them out).
std::uint64_t gdt_entry(std::uint16_t flags, std::uint32_t base, std::uint32_t limit) {
    return (std::uint64_t(base & 0xff000000) << 32) | (std::uint64_t(flags & 0xf0ff) << 40) |
           (std::uint64_t(limit & 0x000f0000) << 32) | (std::uint64_t(base & 0x00ffffff) << 16) |
           std::uint64_t(limit & 0x0000ffff);
}

kvm_segment segment(std::uint16_t selector, std::uint8_t type, bool long_mode) {
    kvm_segment s{};
    s.base = 0;
    s.limit = 0xffffffff;
    s.selector = selector;
    s.type = type;
    s.present = 1;
    s.dpl = 0;
    s.db = long_mode ? 0 : 1;
    s.s = 1;
    s.l = long_mode ? 1 : 0;
    s.g = 1;
    return s;
}

void write_e820(std::vector<std::uint8_t>& params, const GuestMemory& memory) {
    struct Entry {
        std::uint64_t address, size;
        std::uint32_t type;
    };
    std::vector<Entry> entries = {
        {0, kEbdaStart.raw(), kE820Ram},
        {kEbdaStart.raw(), kKernel.raw() - kEbdaStart.raw(), kE820Reserved}};
    for (const auto& region : memory.regions()) {
        std::uint64_t start = std::max(region.start.raw(), kKernel.raw());
        if (region.end().raw() > start)
            entries.push_back({start, region.end().raw() - start, kE820Ram});
    }
    if (entries.size() > kE820MaxEntries)
        throw Error("too many E820 entries");
    params[kE820Entries] = std::uint8_t(entries.size());
    for (std::size_t i = 0; i < entries.size(); ++i) {
        std::size_t at = kE820Table + i * 20;
        store(params, at, entries[i].address);
        store(params, at + 8, entries[i].size);
        store(params, at + 16, entries[i].type);
    }
}

void write_page_tables(const GuestMemory& memory) {
    constexpr std::uint64_t kPresentWritable = 0x3, kHugePage = 0x80;
    memory.write<std::uint64_t>(kPml4, kPdpt.raw() | kPresentWritable);
    for (std::uint64_t gib = 0; gib < 4; ++gib) {
        GuestAddress directory = kPageDirectories + gib * 0x1000;
        memory.write<std::uint64_t>(kPdpt + gib * 8, directory.raw() | kPresentWritable);
        for (std::uint64_t entry = 0; entry < 512; ++entry) {
            std::uint64_t address = (gib << 30) | (entry << 21);
            memory.write<std::uint64_t>(directory + entry * 8,
                                        address | kPresentWritable | kHugePage);
        }
    }
}

void write_gdt(const GuestMemory& memory) {
    const std::uint64_t gdt[] = {
        0,                             // null
        0,                             // unused
        gdt_entry(0xa09b, 0, 0xfffff), // 0x10: 64-bit code
        gdt_entry(0xc093, 0, 0xfffff), // 0x18: data
    };
    memory.write(kGdt, gdt);
}

} // namespace

void write_long_mode_tables(const GuestMemory& memory) {
    write_page_tables(memory);
    write_gdt(memory);
}

std::vector<GuestMemory::Layout> ram_layout(std::uint64_t size) {
    std::uint64_t low = std::min(size, kMmioHoleStart.raw());
    std::vector<GuestMemory::Layout> layout = {{GuestAddress(0), low}};
    if (size > low)
        layout.push_back({kMmioHoleEnd, size - low});
    return layout;
}

BootInfo load_kernel(const GuestMemory& memory, const BootImage& image) {
    const auto& bz = image.bzimage;
    if (bz.size() < 0x1000 || std::memcmp(bz.data() + 0x202, "HdrS", 4) != 0)
        throw UsageError("the kernel is not a bzImage (no 'HdrS' boot header)");
    auto version = load<std::uint16_t>(bz, kVersion);
    if (version < kMinProtocol)
        throw UsageError(fmt::format("the bzImage speaks boot protocol {}.{}; 2.12 or newer is "
                                     "needed",
                                     version >> 8, version & 0xff));
    if (!(bz[kLoadFlags] & kLoadedHigh) || !(load<std::uint16_t>(bz, kXloadFlags) & kXlfKernel64))
        throw UsageError("the bzImage has no 64-bit entry point");

    std::size_t setup_sects = bz[kSetupSects] ? bz[kSetupSects] : 4;
    std::size_t payload_offset = (setup_sects + 1) * 512;
    if (payload_offset >= bz.size())
        throw UsageError("the bzImage is truncated");
    std::span<const std::uint8_t> payload(bz.data() + payload_offset, bz.size() - payload_offset);
    auto init_size = load<std::uint32_t>(bz, kInitSize);
    std::uint64_t kernel_end = kKernel.raw() + std::max<std::uint64_t>(init_size, payload.size());
    GuestMemory::Region low = memory.regions().front();
    if (kernel_end > low.end().raw())
        throw UsageError(
            fmt::format("the kernel needs {} MiB of memory to unpack; give the VM more",
                        (kernel_end >> 20) + 1));
    memory.write_bytes(kKernel, payload);

    // boot_params starts as zeros plus the image's own setup header.
    std::vector<std::uint8_t> params(kBootParamsSize, 0);
    std::size_t header_end = std::min<std::size_t>(kJump + 2 + bz[kJump + 1], kBootParamsSize);
    std::copy(bz.begin() + kSetupSects, bz.begin() + header_end, params.begin() + kSetupSects);
    params[kTypeOfLoader] = kLoaderUndefined;

    auto cmdline_max =
        std::min<std::uint64_t>(load<std::uint32_t>(bz, kCmdlineSize), kCommandLineMax - 1);
    if (image.command_line.size() > cmdline_max)
        throw UsageError(fmt::format("the kernel command line is {} bytes; this kernel takes {}",
                                     image.command_line.size(), cmdline_max));
    std::vector<std::uint8_t> cmdline(image.command_line.begin(), image.command_line.end());
    cmdline.push_back(0);
    memory.write_bytes(kCommandLine, cmdline);
    store<std::uint32_t>(params, kCmdLinePtr, std::uint32_t(kCommandLine.raw()));
    store<std::uint32_t>(params, kExtCmdLinePtr, 0);

    GuestAddress initrd{0};
    if (!image.initrd.empty()) {
        std::uint64_t ceiling = std::min<std::uint64_t>(
            low.end().raw(), std::uint64_t(load<std::uint32_t>(bz, kInitrdAddrMax)) + 1);
        std::uint64_t size = image.initrd.size();
        if (size > ceiling || ((ceiling - size) & ~0xfffull) < kernel_end)
            throw UsageError(fmt::format("the initramfs ({} MiB) does not fit in guest memory "
                                         "below {} MiB next to the kernel; give the VM more",
                                         size >> 20, ceiling >> 20));
        initrd = GuestAddress((ceiling - size) & ~0xfffull);
        memory.write_bytes(initrd, image.initrd);
        store<std::uint32_t>(params, kRamdiskImage, std::uint32_t(initrd.raw()));
        store<std::uint32_t>(params, kRamdiskSize, std::uint32_t(size));
        store<std::uint32_t>(params, kExtRamdiskImage, std::uint32_t(initrd.raw() >> 32));
        store<std::uint32_t>(params, kExtRamdiskSize, std::uint32_t(size >> 32));
    }
    store<std::uint64_t>(params, kAcpiRsdpAddr, image.rsdp.raw());
    write_e820(params, memory);
    memory.write_bytes(kBootParams, params);
    write_long_mode_tables(memory);
    return {kKernel + kEntry64Offset, initrd, kernel_end};
}

kvm_regs read_regs(const Vcpu& vcpu) {
    kvm_regs regs{};
    if (::ioctl(vcpu.fd(), KVM_GET_REGS, &regs) != 0)
        throw_errno("KVM_GET_REGS");
    return regs;
}

void write_regs(const Vcpu& vcpu, const kvm_regs& regs) {
    if (::ioctl(vcpu.fd(), KVM_SET_REGS, &regs) != 0)
        throw_errno("KVM_SET_REGS");
}

kvm_sregs read_sregs(const Vcpu& vcpu) {
    kvm_sregs sregs{};
    if (::ioctl(vcpu.fd(), KVM_GET_SREGS, &sregs) != 0)
        throw_errno("KVM_GET_SREGS");
    return sregs;
}

void write_sregs(const Vcpu& vcpu, const kvm_sregs& sregs) {
    if (::ioctl(vcpu.fd(), KVM_SET_SREGS, &sregs) != 0)
        throw_errno("KVM_SET_SREGS");
}

void setup_boot_vcpu(const Vcpu& vcpu, const BootInfo& boot) {
    kvm_sregs sregs = read_sregs(vcpu);
    sregs.gdt.base = kGdt.raw();
    sregs.gdt.limit = 4 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = segment(kCodeSelector, 0xb, true);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = segment(kDataSelector, 0x3, false);
    constexpr std::uint64_t kCr0Pe = 1ull << 0, kCr0Et = 1ull << 4, kCr0Pg = 1ull << 31;
    constexpr std::uint64_t kCr4Pae = 1ull << 5;
    constexpr std::uint64_t kEferLme = 1ull << 8, kEferLma = 1ull << 10;
    sregs.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
    sregs.cr3 = kPml4.raw();
    sregs.cr4 = kCr4Pae;
    sregs.efer = kEferLme | kEferLma;
    write_sregs(vcpu, sregs);

    kvm_regs regs{};
    regs.rip = boot.entry.raw();
    regs.rsi = kBootParams.raw();
    regs.rsp = kBootStack.raw();
    regs.rbp = kBootStack.raw();
    regs.rflags = 0x2;
    write_regs(vcpu, regs);
}

void setup_real_mode_vcpu(const Vcpu& vcpu, GuestAddress entry) {
    kvm_sregs sregs = read_sregs(vcpu);
    sregs.cs.base = sregs.ds.base = 0;
    sregs.cs.selector = sregs.ds.selector = 0;
    write_sregs(vcpu, sregs);
    kvm_regs regs{};
    regs.rip = entry.raw();
    regs.rflags = 0x2; // bit 1 is reserved and must be set
    write_regs(vcpu, regs);
}

void setup_local_apic(const Vcpu& vcpu) {
    kvm_lapic_state lapic{};
    if (::ioctl(vcpu.fd(), KVM_GET_LAPIC, &lapic) != 0)
        throw_errno("KVM_GET_LAPIC");
    constexpr std::size_t kLvtLint0 = 0x350, kLvtLint1 = 0x360;
    constexpr std::uint32_t kDeliveryModeMask = 0x700, kExtInt = 0x700, kNmi = 0x400;
    auto set_mode = [&](std::size_t reg, std::uint32_t mode) {
        std::uint32_t value;
        std::memcpy(&value, lapic.regs + reg, 4);
        value = (value & ~kDeliveryModeMask) | mode;
        std::memcpy(lapic.regs + reg, &value, 4);
    };
    set_mode(kLvtLint0, kExtInt);
    set_mode(kLvtLint1, kNmi);
    if (::ioctl(vcpu.fd(), KVM_SET_LAPIC, &lapic) != 0)
        throw_errno("KVM_SET_LAPIC");
}

} // namespace ktstr::x86_64
