// The x86-64 platform: a PC without PCI. ACPI (and an MP table) describe the topology, the
// kernel is an uncompressed vmlinux entered through PVH or a bzImage entered in long mode,
// vCPUs are numbered by APIC ID.
#include "ktstr/vmm/platform.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/devices/acpi_pm.hpp"
#include "ktstr/devices/cmos_rtc.hpp"
#include "ktstr/devices/i8042.hpp"
#include "ktstr/devices/ioapic.hpp"
#include "ktstr/devices/serial.hpp"
#include "ktstr/devices/virtio/mmio_transport.hpp"
#include "ktstr/vmm/x86_64/acpi.hpp"
#include "ktstr/vmm/x86_64/apic_id.hpp"
#include "ktstr/vmm/x86_64/boot.hpp"
#include "ktstr/vmm/x86_64/cpuid.hpp"
#include "ktstr/vmm/x86_64/irqchip.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"
#include "ktstr/vmm/x86_64/mptable.hpp"
#include "ktstr/vmm/x86_64/self_check.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <sys/ioctl.h>

namespace ktstr {

namespace {

constexpr std::uint16_t kCom1 = 0x3f8, kCom2 = 0x2f8;
constexpr std::uint32_t kCom1Irq = 4, kCom2Irq = 3;
// IOAPIC pins 16-23 belong to no ISA device.
constexpr std::uint32_t kVirtioConsoleGsi = 16;

void vm_ioctl(const Vm& vm, unsigned long request, unsigned long arg, const char* name) {
    if (::ioctl(vm.fd(), request, arg) != 0)
        throw_errno(name);
}

void require_capabilities(const Kvm& kvm, bool split_irqchip) {
    std::vector<Kvm::Capability> needed = {
        {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
        {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
        {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    };
    if (split_irqchip) {
        needed.push_back({KVM_CAP_SPLIT_IRQCHIP, "KVM_CAP_SPLIT_IRQCHIP"});
        needed.push_back({KVM_CAP_X2APIC_API, "KVM_CAP_X2APIC_API"});
        needed.push_back({KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"});
        // Without a PIT, the guest's APIC timers need no calibration only in this mode.
        needed.push_back({KVM_CAP_TSC_DEADLINE_TIMER, "KVM_CAP_TSC_DEADLINE_TIMER"});
    } else {
        needed.push_back({KVM_CAP_PIT2, "KVM_CAP_PIT2"});
    }
    kvm.require(needed);
}

const DevicePlacement kDevices{
    .uarts = {DeviceSlot{BusKind::io, kCom1, Serial16550::kRegisterCount, kCom1Irq},
              DeviceSlot{BusKind::io, kCom2, Serial16550::kRegisterCount, kCom2Irq}},
    .virtio_console = {BusKind::mmio, x86_64::kVirtioMmioBase.raw(), VirtioMmioTransport::kSize,
                       kVirtioConsoleGsi},
};

class X86Vm : public PlatformVm {
  public:
    X86Vm(const Kvm& kvm, Vm& vm, const PlatformVmOptions& options)
        : vm_(vm), topology_(options.topology),
          split_irqchip_(options.x2apic || needs_x2apic(topology_)) {
        require_capabilities(kvm, split_irqchip_);
        if (auto max_id = kvm.check_extension(KVM_CAP_MAX_VCPU_ID);
            max_id > 0 && max_apic_id(topology_) >= std::uint32_t(max_id))
            throw Error(fmt::format("topology {} needs APIC ID {}, but this host's KVM stops at {}",
                                    topology_.to_string(), max_apic_id(topology_), max_id - 1));
        vm_ioctl(vm, KVM_SET_TSS_ADDR, x86_64::kTss.raw(), "KVM_SET_TSS_ADDR");
        std::uint64_t identity_map = x86_64::kIdentityMap.raw();
        vm_ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, reinterpret_cast<unsigned long>(&identity_map),
                 "KVM_SET_IDENTITY_MAP_ADDR");
        supported_ = supported_cpuid(kvm);
        add_vm_cpu_features(
            supported_, {.tsc_deadline_timer = kvm.check_extension(KVM_CAP_TSC_DEADLINE_TIMER) != 0,
                         .msi_ext_dest_id = split_irqchip_});
    }

    std::vector<GuestMemory::Layout> ram_layout(std::uint64_t bytes) const override {
        return x86_64::ram_layout(bytes);
    }

    DevicePlacement device_placement() const override { return kDevices; }

    void load(const GuestMemory& memory, const GuestImages& images,
              std::span<const NumaMemoryRange> numa_memory) override {
        const DeviceSlot& console = kDevices.virtio_console;
        AcpiConfig acpi{
            topology_,
            {numa_memory.begin(), numa_memory.end()},
            {{GuestAddress(console.base), console.size, console.gsi, IrqTrigger::edge}}};
        AcpiTables tables = build_acpi_tables(acpi, x86_64::kAcpiTables);
        if (tables.bytes.size() > x86_64::kAcpiTablesMax)
            throw Error("the ACPI tables outgrew their reserved area");
        memory.write_bytes(x86_64::kAcpiTables, tables.bytes);
        // For guests booted with acpi=off. It names the PC's PIC and PIT wiring, which a split
        // irqchip lacks, and its APIC IDs are 8 bits wide: such VMs have the MADT alone.
        if (!split_irqchip_) {
            auto leaf1 =
                std::find_if(supported_.begin(), supported_.end(),
                             [](const kvm_cpuid_entry2& entry) { return entry.function == 1; });
            MpProcessorSignature processor;
            if (leaf1 != supported_.end())
                processor = {leaf1->eax, leaf1->edx};
            std::vector<std::uint8_t> mp_table =
                build_mp_table(topology_, x86_64::kMpTable, processor);
            if (mp_table.size() > x86_64::kMpTableMax)
                throw Error("the MP table outgrew its reserved area");
            memory.write_bytes(x86_64::kMpTable, mp_table);
        }
        x86_64::BootImage image{images.kernel, images.initrd, images.command_line, tables.rsdp};
        boot_ = x86_64::is_elf_image(images.kernel) ? x86_64::load_pvh_kernel(memory, image)
                                                    : x86_64::load_kernel(memory, image);
    }

    void add_irqchip_and_devices(Bus& io, Bus& mmio, VmStop& stop) override {
        static_assert(kIoApicPins == Ioapic::kPins);
        x86_64::create_irqchip(vm_, split_irqchip_, mmio);
        io.insert(
            I8042::kBase, I8042::kLength, std::make_shared<I8042>([&stop] {
                stop.request({StopReason::Kind::reset, "the guest reset the machine (i8042)"});
            }));
        io.insert(CmosRtc::kBase, CmosRtc::kLength, std::make_shared<CmosRtc>());
        io.insert(kAcpiPm1EventPort, AcpiPmRegisters::kLength,
                  std::make_shared<AcpiPmRegisters>([&stop] {
                      stop.request({StopReason::Kind::poweroff, "the guest powered off (ACPI)"});
                  }));
    }

    // KVM numbers a vCPU's local APIC after its vCPU id.
    std::uint32_t vcpu_id(std::uint32_t cpu) const override { return apic_id_of(topology_, cpu); }

    void setup_vcpu(const Vcpu& vcpu, std::uint32_t cpu) override {
        set_vcpu_cpuid(vcpu, vcpu_cpuid(supported_, topology_, cpu));
        x86_64::setup_local_apic(vcpu);
    }

    void after_vcpus(std::span<const Vcpu> vcpus) override {
        x86_64::setup_boot_vcpu(vcpus.front(), boot_);
    }

    std::string crash_state(const Vcpu& vcpu) const override {
        kvm_regs r = x86_64::read_regs(vcpu);
        kvm_sregs sr = x86_64::read_sregs(vcpu);
        return fmt::format("rip {:#x} rsp {:#x} cr0 {:#x} cr3 {:#x} cr4 {:#x}", r.rip, r.rsp,
                           sr.cr0, sr.cr3, sr.cr4);
    }

    bool in_reset_state(const Vcpu& vcpu) const override {
        kvm_sregs sr = x86_64::read_sregs(vcpu);
        return x86_64::read_regs(vcpu).rip == 0xfff0 && sr.cs.base == 0xffff0000 && !(sr.cr0 & 1);
    }

  private:
    Vm& vm_;
    const Topology topology_;
    const bool split_irqchip_;
    std::vector<kvm_cpuid_entry2> supported_;
    x86_64::BootInfo boot_{};
};

class X86Platform : public Platform {
  public:
    Arch arch() const override { return Arch::x86_64; }
    std::uint32_t max_cpus() const override { return Topology::kMaxCpus; }

    // The console on COM1, reset through the i8042 (which the VM has only for this), no
    // PCI, the paravirtual clock without its calibration checks.
    std::string_view base_command_line() const override {
        // Two UARTs (the console, the init's fallback port): the 8250 driver probes no more.
        return "console=ttyS0 reboot=k pci=off no_timer_check clocksource=kvm-clock i8042.noaux "
               "i8042.nomux i8042.dumbkbd 8250.nr_uarts=2";
    }

    KvmProbe self_check() const override {
        SelfCheckReport report = run_kvm_self_check();
        return {report.passed(),
                report.passed()
                    ? report.summary()
                    : fmt::format("{} (expected out {:#x} byte {:#04x} then hlt)", report.summary(),
                                  report.expected_port, report.expected_byte)};
    }

    KvmProbe runs_guests() const override {
        KvmProbe probe;
        probe.passed = kvm_runs_64bit_guests(probe.detail);
        return probe;
    }

    std::unique_ptr<PlatformVm> create_vm(const Kvm& kvm, Vm& vm,
                                          const PlatformVmOptions& options) const override {
        return std::make_unique<X86Vm>(kvm, vm, options);
    }
};

} // namespace

const Platform& host_platform() {
    static const X86Platform platform;
    return platform;
}

} // namespace ktstr
