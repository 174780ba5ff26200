#pragma once

#include "ktstr/vmm/guest_memory.hpp"
#include "ktstr/vmm/kvm.hpp"

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ktstr::x86_64 {

// The RAM layout for `size` bytes: below the MMIO hole, and the rest above 4 GiB.
std::vector<GuestMemory::Layout> ram_layout(std::uint64_t size);

struct BootImage {
    std::span<const std::uint8_t> kernel; // a bzImage, or an ELF vmlinux for load_pvh_kernel
    std::span<const std::uint8_t> initrd; // may be empty
    std::string_view command_line;
    GuestAddress rsdp{0}; // 0: no ACPI
};

struct BootInfo {
    GuestAddress entry;       // the kernel's 64-bit entry, or its 32-bit PVH entry
    GuestAddress initrd;      // where the initrd was placed
    std::uint64_t kernel_end; // first byte past the kernel's init_size (or its segments)
    bool pvh = false;         // entered through PVH (32-bit, %ebx = start_info)
};

// Loads a bzImage (boot protocol 2.12 or newer, 64-bit entry) at 1 MiB, the initrd at the
// top of low RAM, and writes boot_params (E820 map, command line, initrd, RSDP), the GDT
// and identity-mapped page tables for the low 4 GiB. Throws UsageError when the image is
// not a usable bzImage or does not fit.
BootInfo load_kernel(const GuestMemory& memory, const BootImage& image);

// Whether the image is an ELF file (an uncompressed vmlinux) rather than a bzImage.
bool is_elf_image(std::span<const std::uint8_t> image);

// Loads an x86-64 vmlinux at its segments' physical addresses and writes the PVH start_info
// (version 1: command line, the initrd as module 0, RSDP, memory map) and a GDT. The kernel
// decompresses nothing: this is the bzImage's payload, unpacked once on the host. Throws
// UsageError when the ELF has no PVH entry note or its segments do not fit.
BootInfo load_pvh_kernel(const GuestMemory& memory, const BootImage& image);

// A vCPU's general and segment registers (KVM_GET/SET_REGS, KVM_GET/SET_SREGS).
kvm_regs read_regs(const Vcpu& vcpu);
void write_regs(const Vcpu& vcpu, const kvm_regs& regs);
kvm_sregs read_sregs(const Vcpu& vcpu);
void write_sregs(const Vcpu& vcpu, const kvm_sregs& sregs);

// Identity-mapped page tables for the low 4 GiB and a GDT with flat 64-bit segments.
void write_long_mode_tables(const GuestMemory& memory);

// Puts the boot vCPU in 64-bit mode at the kernel's entry with %rsi = boot_params, or for a
// PVH boot in 32-bit protected mode with %ebx = start_info.
void setup_boot_vcpu(const Vcpu& vcpu, const BootInfo& boot);

// Puts a vCPU in real mode at `entry` (CS = DS = 0): for the few bytes of code that probe
// KVM itself.
void setup_real_mode_vcpu(const Vcpu& vcpu, GuestAddress entry);

// LINT0 as ExtINT (the legacy PIC) and LINT1 as NMI on a vCPU's in-kernel local APIC.
void setup_local_apic(const Vcpu& vcpu);

} // namespace ktstr::x86_64
