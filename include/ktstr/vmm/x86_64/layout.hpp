#pragma once

#include "ktstr/vmm/guest_memory.hpp"

#include <cstdint>

// Where things live in an x86-64 guest's physical address space.
namespace ktstr::x86_64 {

inline constexpr GuestAddress kGdt{0x500};
inline constexpr GuestAddress kPvhStartInfo{0x6000}; // one page: start_info, modlist, memmap
inline constexpr GuestAddress kBootParams{0x7000};
inline constexpr GuestAddress kBootStack{0x8ff0};
inline constexpr GuestAddress kPml4{0x9000};
inline constexpr GuestAddress kPdpt{0xa000};
inline constexpr GuestAddress kPageDirectories{0xb000}; // four pages: the low 4 GiB
inline constexpr GuestAddress kCommandLine{0x20000};
inline constexpr std::uint64_t kCommandLineMax = 0x10000;
inline constexpr GuestAddress kEbdaStart{0x9fc00};  // reserved from here to 1 MiB
inline constexpr GuestAddress kAcpiTables{0xe0000}; // 64 KiB, inside the reserved range
inline constexpr std::uint64_t kAcpiTablesMax = 0x10000;
// The BIOS area Linux scans for the MP floating pointer, also reserved.
inline constexpr GuestAddress kMpTable{0xf0000};
inline constexpr std::uint64_t kMpTableMax = 0x10000;
inline constexpr GuestAddress kKernel{0x100000};

// RAM never overlaps the 3-4 GiB hole: devices there must trap.
inline constexpr GuestAddress kMmioHoleStart{0xc000'0000};
inline constexpr GuestAddress kMmioHoleEnd{0x1'0000'0000};
inline constexpr GuestAddress kVirtioMmioBase{0xd000'0000};
inline constexpr std::uint64_t kVirtioMmioStride = 0x1000;
inline constexpr GuestAddress kIoapic{0xfec0'0000};
inline constexpr GuestAddress kLocalApic{0xfee0'0000};
// KVM needs three pages for the TSS and one for the identity map on Intel hosts.
inline constexpr GuestAddress kIdentityMap{0xfffb'c000};
inline constexpr GuestAddress kTss{0xfffb'd000};

} // namespace ktstr::x86_64
