# The x86-64 platform: boot protocol, ACPI and MP tables, CPUID, irqchip.
set(KTSTR_PLATFORM_SOURCES
  vmm/x86_64/acpi.cpp
  vmm/x86_64/aml.cpp
  vmm/x86_64/apic_id.cpp
  vmm/x86_64/boot.cpp
  vmm/x86_64/cpuid.cpp
  vmm/x86_64/irqchip.cpp
  vmm/x86_64/mptable.cpp
  vmm/x86_64/platform.cpp
  vmm/x86_64/self_check.cpp
)
# libelf reads the uncompressed vmlinux a PVH boot enters.
set(KTSTR_PLATFORM_LIBRARIES PkgConfig::libelf)
