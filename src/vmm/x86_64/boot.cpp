#include "ktstr/vmm/x86_64/boot.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"

#include <algorithm>
#include <cstring>
#include <fmt/format.h>
#include <gelf.h>
#include <libelf.h>
#include <optional>
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

constexpr std::uint16_t kCode32Selector = 0x08; // PVH entry
constexpr std::uint16_t kCodeSelector = 0x10;   // __BOOT_CS
constexpr std::uint16_t kDataSelector = 0x18;   // __BOOT_DS
constexpr std::uint16_t kTssSelector = 0x20;    // PVH wants a TR; the kernel loads its own

// The PVH boot ABI (Xen's hvm_start_info, version 1), from xen/include/public/arch-x86/hvm/
// start_info.h: start_info, then one module (the initrd), then the memory map.
constexpr std::uint32_t kPvhMagic = 0x336ec578;
constexpr std::uint32_t kXenElfNotePhys32Entry = 18;
constexpr std::size_t kPvhModlist = 0x40, kPvhMemmap = 0x80;
constexpr std::size_t kPvhMemmapEntrySize = 24;
constexpr std::size_t kPvhMemmapMax = (0x1000 - kPvhMemmap) / kPvhMemmapEntrySize;
// x86's COMMAND_LINE_SIZE, which boot_command_line holds with its NUL.
constexpr std::uint64_t kPvhCommandLineMax = 2047;

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

// The guest's physical memory map, shared by E820 (bzImage) and the PVH memmap table: low
// RAM, the reserved BIOS area (ACPI and MP tables live there), then RAM from 1 MiB.
struct MemoryMapEntry {
    std::uint64_t address, size;
    std::uint32_t type;
};

std::vector<MemoryMapEntry> memory_map(const GuestMemory& memory) {
    std::vector<MemoryMapEntry> entries = {
        {0, kEbdaStart.raw(), kE820Ram},
        {kEbdaStart.raw(), kKernel.raw() - kEbdaStart.raw(), kE820Reserved}};
    for (const auto& region : memory.regions()) {
        std::uint64_t start = std::max(region.start.raw(), kKernel.raw());
        if (region.end().raw() > start)
            entries.push_back({start, region.end().raw() - start, kE820Ram});
    }
    return entries;
}

// The entries as E820 and PVH lay them out: address, size, type, `stride` bytes apart.
void store_memory_map(std::vector<std::uint8_t>& bytes, std::size_t at, std::size_t stride,
                      const std::vector<MemoryMapEntry>& entries) {
    for (const auto& entry : entries) {
        store(bytes, at, entry.address);
        store(bytes, at + 8, entry.size);
        store(bytes, at + 16, entry.type);
        at += stride;
    }
}

void write_e820(std::vector<std::uint8_t>& params, const GuestMemory& memory) {
    std::vector<MemoryMapEntry> entries = memory_map(memory);
    if (entries.size() > kE820MaxEntries)
        throw Error("too many E820 entries");
    params[kE820Entries] = std::uint8_t(entries.size());
    store_memory_map(params, kE820Table, 20, entries);
}

void write_command_line(const GuestMemory& memory, std::string_view command_line,
                        std::uint64_t max) {
    if (command_line.size() > max)
        throw UsageError(fmt::format("the kernel command line is {} bytes; this kernel takes {}",
                                     command_line.size(), max));
    std::vector<std::uint8_t> bytes(command_line.begin(), command_line.end());
    bytes.push_back(0);
    memory.write_bytes(kCommandLine, bytes);
}

// The initrd at the top of low RAM (below `ceiling`), page-aligned, above the kernel.
GuestAddress place_initrd(const GuestMemory& memory, std::span<const std::uint8_t> initrd,
                          std::uint64_t kernel_end, std::uint64_t ceiling) {
    ceiling = std::min(ceiling, memory.regions().front().end().raw());
    std::uint64_t size = initrd.size();
    if (size > ceiling || ((ceiling - size) & ~0xfffull) < kernel_end)
        throw UsageError(fmt::format("the initramfs ({} MiB) does not fit in guest memory "
                                     "below {} MiB next to the kernel; give the VM more",
                                     size >> 20, ceiling >> 20));
    GuestAddress at((ceiling - size) & ~0xfffull);
    memory.write_bytes(at, initrd);
    return at;
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
        gdt_entry(0xc09b, 0, 0xfffff), // 0x08: 32-bit code (PVH)
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
    const auto& bz = image.kernel;
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

    write_command_line(
        memory, image.command_line,
        std::min<std::uint64_t>(load<std::uint32_t>(bz, kCmdlineSize), kCommandLineMax - 1));
    store<std::uint32_t>(params, kCmdLinePtr, std::uint32_t(kCommandLine.raw()));
    store<std::uint32_t>(params, kExtCmdLinePtr, 0);

    GuestAddress initrd{0};
    if (!image.initrd.empty()) {
        initrd = place_initrd(memory, image.initrd, kernel_end,
                              std::uint64_t(load<std::uint32_t>(bz, kInitrdAddrMax)) + 1);
        std::uint64_t size = image.initrd.size();
        store<std::uint32_t>(params, kRamdiskImage, std::uint32_t(initrd.raw()));
        store<std::uint32_t>(params, kRamdiskSize, std::uint32_t(size));
        store<std::uint32_t>(params, kExtRamdiskImage, std::uint32_t(initrd.raw() >> 32));
        store<std::uint32_t>(params, kExtRamdiskSize, std::uint32_t(size >> 32));
    }
    store<std::uint64_t>(params, kAcpiRsdpAddr, image.rsdp.raw());
    write_e820(params, memory);
    memory.write_bytes(kBootParams, params);
    write_long_mode_tables(memory);
    return {kKernel + kEntry64Offset, initrd, kernel_end, false};
}

namespace {

struct ElfSegment {
    std::uint64_t physical, offset, file_size, memory_size;
};

// The PT_LOAD segments and the PVH entry (XEN_ELFNOTE_PHYS32_ENTRY) of an x86-64 vmlinux.
// libelf checks the headers' own bounds; each segment's and note's file range is checked here.
struct PvhElf {
    std::vector<ElfSegment> segments;
    std::optional<std::uint32_t> entry;
};

PvhElf read_pvh_elf(std::span<const std::uint8_t> image) {
    elf_version(EV_CURRENT);
    // ELF_C_READ on memory: libelf only reads the image.
    Elf* elf =
        elf_memory(const_cast<char*>(reinterpret_cast<const char*>(image.data())), image.size());
    if (!elf)
        throw UsageError("the kernel is not an ELF image");
    struct Closer {
        Elf* elf;
        ~Closer() { elf_end(elf); }
    } closer{elf};
    GElf_Ehdr header;
    if (elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &header) ||
        header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_machine != EM_X86_64)
        throw UsageError("the kernel ELF is not an x86-64 vmlinux");
    std::size_t count = 0;
    if (elf_getphdrnum(elf, &count) != 0)
        throw UsageError("the kernel ELF's program headers are unreadable");
    PvhElf result;
    for (std::size_t i = 0; i < count; ++i) {
        GElf_Phdr ph;
        if (!gelf_getphdr(elf, int(i), &ph))
            throw UsageError("the kernel ELF's program headers are unreadable");
        if (ph.p_offset > image.size() || ph.p_filesz > image.size() - ph.p_offset)
            throw UsageError(fmt::format("the kernel ELF's segment {} lies outside the file", i));
        if (ph.p_type == PT_LOAD) {
            if (ph.p_memsz < ph.p_filesz)
                throw UsageError(fmt::format("the kernel ELF's segment {} is smaller in memory "
                                             "than in the file",
                                             i));
            result.segments.push_back({ph.p_paddr, ph.p_offset, ph.p_filesz, ph.p_memsz});
        } else if (ph.p_type == PT_NOTE) {
            Elf_Data* notes =
                elf_getdata_rawchunk(elf, off_t(ph.p_offset), ph.p_filesz, ELF_T_NHDR);
            GElf_Nhdr note;
            std::size_t name_at = 0, desc_at = 0;
            for (std::size_t at = 0;
                 notes && (at = gelf_getnote(notes, at, &note, &name_at, &desc_at)) != 0;) {
                const char* bytes = static_cast<const char*>(notes->d_buf);
                if (note.n_type == kXenElfNotePhys32Entry && note.n_namesz == 4 &&
                    std::memcmp(bytes + name_at, "Xen", 4) == 0 && note.n_descsz >= 4) {
                    std::uint32_t entry;
                    std::memcpy(&entry, bytes + desc_at, 4);
                    result.entry = entry;
                }
            }
        }
    }
    return result;
}

} // namespace

bool is_elf_image(std::span<const std::uint8_t> image) {
    return image.size() >= 4 && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
}

BootInfo load_pvh_kernel(const GuestMemory& memory, const BootImage& image) {
    PvhElf elf = read_pvh_elf(image.kernel);
    if (!elf.entry)
        throw UsageError("the kernel ELF has no PVH entry (XEN_ELFNOTE_PHYS32_ENTRY): build it "
                         "with CONFIG_PVH=y or give its bzImage");
    if (elf.segments.empty())
        throw UsageError("the kernel ELF has no loadable segment");
    const std::uint64_t low_end = memory.regions().front().end().raw();
    std::uint64_t kernel_end = 0;
    bool entry_loaded = false;
    for (const auto& segment : elf.segments) {
        if (segment.physical < kKernel.raw() || segment.memory_size > low_end ||
            segment.physical > low_end - segment.memory_size)
            throw UsageError(fmt::format("the kernel's segment at {:#x} ({} MiB) does not fit in "
                                         "guest RAM from 1 MiB to {} MiB; give the VM more",
                                         segment.physical, segment.memory_size >> 20,
                                         low_end >> 20));
        GuestAddress at(segment.physical);
        memory.write_bytes(at, image.kernel.subspan(segment.offset, segment.file_size));
        auto bss = memory.slice(at + segment.file_size, segment.memory_size - segment.file_size);
        std::fill(bss.begin(), bss.end(), 0);
        kernel_end = std::max(kernel_end, segment.physical + segment.memory_size);
        entry_loaded |=
            *elf.entry >= segment.physical && *elf.entry - segment.physical < segment.file_size;
    }
    if (!entry_loaded)
        throw UsageError(
            fmt::format("the kernel's PVH entry {:#x} is in no loaded segment", *elf.entry));

    write_command_line(memory, image.command_line, kPvhCommandLineMax);
    std::vector<std::uint8_t> info(0x1000, 0);
    store<std::uint32_t>(info, 0, kPvhMagic);
    store<std::uint32_t>(info, 4, 1); // version
    store<std::uint64_t>(info, 16, kPvhStartInfo.raw() + kPvhModlist);
    store<std::uint64_t>(info, 24, kCommandLine.raw());
    store<std::uint64_t>(info, 32, image.rsdp.raw());
    GuestAddress initrd{0};
    if (!image.initrd.empty()) {
        initrd = place_initrd(memory, image.initrd, kernel_end, kMmioHoleStart.raw());
        store<std::uint32_t>(info, 12, 1); // nr_modules
        store<std::uint64_t>(info, kPvhModlist, initrd.raw());
        store<std::uint64_t>(info, kPvhModlist + 8, image.initrd.size());
    }
    std::vector<MemoryMapEntry> map = memory_map(memory);
    if (map.size() > kPvhMemmapMax)
        throw Error("too many memory map entries for PVH's start_info page");
    store<std::uint64_t>(info, 40, kPvhStartInfo.raw() + kPvhMemmap);
    store<std::uint32_t>(info, 48, std::uint32_t(map.size()));
    store_memory_map(info, kPvhMemmap, kPvhMemmapEntrySize, map);
    memory.write_bytes(kPvhStartInfo, info);
    write_gdt(memory);
    return {GuestAddress(*elf.entry), initrd, kernel_end, true};
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
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = segment(kDataSelector, 0x3, false);
    constexpr std::uint64_t kCr0Pe = 1ull << 0, kCr0Et = 1ull << 4, kCr0Pg = 1ull << 31;
    constexpr std::uint64_t kCr4Pae = 1ull << 5;
    constexpr std::uint64_t kEferLme = 1ull << 8, kEferLma = 1ull << 10;
    kvm_regs regs{};
    regs.rip = boot.entry.raw();
    regs.rflags = 0x2;
    if (boot.pvh) {
        // PVH: 32-bit protected mode without paging, %ebx = start_info, a 32-bit TSS in TR.
        sregs.cs = segment(kCode32Selector, 0xb, false);
        sregs.tr = kvm_segment{};
        sregs.tr.limit = 0x67;
        sregs.tr.selector = kTssSelector;
        sregs.tr.type = 0xb; // busy 32-bit TSS
        sregs.tr.present = 1;
        sregs.cr0 = kCr0Pe | kCr0Et;
        sregs.cr3 = 0;
        sregs.cr4 = 0;
        sregs.efer = 0;
        regs.rbx = kPvhStartInfo.raw();
    } else {
        sregs.cs = segment(kCodeSelector, 0xb, true);
        sregs.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
        sregs.cr3 = kPml4.raw();
        sregs.cr4 = kCr4Pae;
        sregs.efer = kEferLme | kEferLma;
        regs.rsi = kBootParams.raw();
        regs.rsp = kBootStack.raw();
        regs.rbp = kBootStack.raw();
    }
    write_sregs(vcpu, sregs);
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
