// The arm64 platform: a GICv3 machine with PSCI, described by a device tree, booting an
// Image. vCPUs are created before the GIC, and every vCPU but the first starts powered off
// until the guest brings it up with PSCI CPU_ON.
#include "ktstr/vmm/platform.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/devices/serial.hpp"
#include "ktstr/devices/virtio/mmio_transport.hpp"
#include "ktstr/vmm/aarch64/boot.hpp"
#include "ktstr/vmm/aarch64/device_tree.hpp"
#include "ktstr/vmm/aarch64/layout.hpp"

#include <array>
#include <cstddef>
#include <fmt/format.h>
#include <sys/ioctl.h>

namespace ktstr {

namespace {

using namespace aarch64;

// KVM_{GET,SET}_ONE_REG ids of the core registers (struct kvm_regs in asm/kvm.h).
constexpr std::uint64_t core_register(std::size_t offset) {
    return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | (offset / sizeof(std::uint32_t));
}
constexpr std::uint64_t kPc = core_register(offsetof(kvm_regs, regs.pc));
constexpr std::uint64_t kPstate = core_register(offsetof(kvm_regs, regs.pstate));
constexpr std::uint64_t general_register(unsigned n) {
    return core_register(offsetof(kvm_regs, regs.regs) + n * sizeof(std::uint64_t));
}
constexpr std::uint64_t kClidrRegister = ARM64_SYS_REG(3, 1, 0, 0, 1);
// EL1 with its own stack pointer, every exception masked: booting.rst's entry state.
constexpr std::uint64_t kBootPstate = 0x3c5;

std::uint64_t get_register(const Vcpu& vcpu, std::uint64_t id) {
    std::uint64_t value = 0;
    kvm_one_reg reg{id, reinterpret_cast<std::uint64_t>(&value)};
    if (::ioctl(vcpu.fd(), KVM_GET_ONE_REG, &reg) != 0)
        throw_errno(fmt::format("KVM_GET_ONE_REG {:#x} on vCPU {}", id, vcpu.id()));
    return value;
}

void set_register(const Vcpu& vcpu, std::uint64_t id, std::uint64_t value) {
    kvm_one_reg reg{id, reinterpret_cast<std::uint64_t>(&value)};
    if (::ioctl(vcpu.fd(), KVM_SET_ONE_REG, &reg) != 0)
        throw_errno(fmt::format("KVM_SET_ONE_REG {:#x} on vCPU {}", id, vcpu.id()));
}

// The vCPU type KVM prefers on this host, with PSCI 0.2, and pointer authentication where
// the host has it (distribution userlands built with branch protection fault without it).
kvm_vcpu_init preferred_vcpu(const Kvm& kvm, const Vm& vm) {
    kvm_vcpu_init init{};
    if (::ioctl(vm.fd(), KVM_ARM_PREFERRED_TARGET, &init) != 0)
        throw_errno("KVM_ARM_PREFERRED_TARGET");
    init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
    if (kvm.check_extension(KVM_CAP_ARM_PTRAUTH_ADDRESS) &&
        kvm.check_extension(KVM_CAP_ARM_PTRAUTH_GENERIC))
        init.features[0] |= 1u << KVM_ARM_VCPU_PTRAUTH_ADDRESS | 1u << KVM_ARM_VCPU_PTRAUTH_GENERIC;
    return init;
}

void init_vcpu(const Vcpu& vcpu, kvm_vcpu_init init, bool powered_off) {
    if (powered_off)
        init.features[0] |= 1u << KVM_ARM_VCPU_POWER_OFF;
    if (::ioctl(vcpu.fd(), KVM_ARM_VCPU_INIT, &init) != 0)
        throw_errno(fmt::format("KVM_ARM_VCPU_INIT on vCPU {}", vcpu.id()));
}

void set_device_attribute(int device, std::uint32_t group, std::uint64_t attribute,
                          const void* value, const char* what) {
    kvm_device_attr attr{0, group, attribute, reinterpret_cast<std::uint64_t>(value)};
    if (::ioctl(device, KVM_SET_DEVICE_ATTR, &attr) != 0)
        throw_errno(fmt::format("GICv3: {}", what));
}

// The GICv3 for every vCPU (they must all exist), and the routes that make GSI n raise SPI
// n: an irqfd delivers nothing on a GSI without one.
void create_gic(const Vm& vm, const MemoryMap& map, std::span<const std::uint32_t> spis) {
    kvm_create_device create{KVM_DEV_TYPE_ARM_VGIC_V3, 0, 0};
    if (::ioctl(vm.fd(), KVM_CREATE_DEVICE, &create) != 0)
        throw_errno("KVM_CREATE_DEVICE (GICv3)");
    UniqueFd gic(int(create.fd));
    std::uint64_t distributor = map.gic_distributor.base.raw();
    std::uint64_t redistributors = map.gic_redistributors.base.raw();
    std::uint32_t irqs = kGicIrqs;
    set_device_attribute(gic.get(), KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST,
                         &distributor, "distributor address");
    set_device_attribute(gic.get(), KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST,
                         &redistributors, "redistributor address");
    set_device_attribute(gic.get(), KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &irqs, "number of IRQs");
    set_device_attribute(gic.get(), KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, nullptr,
                         "init");
    std::vector<kvm_irq_routing_entry> routes;
    for (std::uint32_t spi : spis) {
        kvm_irq_routing_entry& entry = routes.emplace_back();
        entry = {};
        entry.gsi = spi;
        entry.type = KVM_IRQ_ROUTING_IRQCHIP;
        entry.u.irqchip.irqchip = 0;
        entry.u.irqchip.pin = spi; // KVM adds the 32 private INTIDs
    }
    vm.set_gsi_routing(routes);
}

const DevicePlacement kDevices{
    .uarts = {DeviceSlot{BusKind::mmio, kUart0.raw(), Serial16550::kRegisterCount, kUart0Spi},
              DeviceSlot{BusKind::mmio, kUart1.raw(), Serial16550::kRegisterCount, kUart1Spi}},
    .virtio_console = {BusKind::mmio, kVirtioMmio.raw(), VirtioMmioTransport::kSize,
                       kVirtioMmioSpi},
};
constexpr std::array<std::uint32_t, 3> kSpis = {kUart0Spi, kUart1Spi, kVirtioMmioSpi};

class Arm64Vm : public PlatformVm {
  public:
    Arm64Vm(const Kvm& kvm, const Vm& vm, const PlatformVmOptions& options)
        : vm_(vm), topology_(options.topology) {
        const Kvm::Capability needed[] = {
            {KVM_CAP_ARM_PSCI_0_2, "KVM_CAP_ARM_PSCI_0_2"},
            {KVM_CAP_ONE_REG, "KVM_CAP_ONE_REG"},
            {KVM_CAP_DEVICE_CTRL, "KVM_CAP_DEVICE_CTRL"},
            {KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"},
        };
        kvm.require(needed);
        if (int max = kvm.check_extension(KVM_CAP_MAX_VCPUS);
            max > 0 && topology_.cpus() > std::uint32_t(max))
            throw Error(fmt::format("topology {} has {} vCPUs, but this host's KVM stops at {}",
                                    topology_.to_string(), topology_.cpus(), max));
        vcpu_init_ = preferred_vcpu(kvm, vm);
    }

    std::vector<GuestMemory::Layout> ram_layout(std::uint64_t bytes) const override {
        MemoryMap map = memory_map(topology_.cpus(), bytes); // throws for a bad size
        return {{map.ram.base, map.ram.size}};
    }

    DevicePlacement device_placement() const override { return kDevices; }

    void load(const GuestMemory& memory, const GuestImages& images,
              std::span<const NumaMemoryRange> numa_memory) override {
        map_ = memory_map(topology_.cpus(), memory.total_size());
        boot_ = load_image(memory, map_, images.kernel, images.initrd);
        std::vector<std::uint64_t> mpidrs;
        for (std::uint32_t cpu = 0; cpu < topology_.cpus(); ++cpu)
            mpidrs.push_back(default_mpidr(vcpu_id(cpu)));
        std::vector<std::uint8_t> tree =
            build_device_tree({.topology = topology_,
                               .memory_map = map_,
                               .memory = {numa_memory.begin(), numa_memory.end()},
                               .mpidrs = mpidrs,
                               .command_line = std::string(images.command_line),
                               .initrd = boot_.initrd});
        memory.write_bytes(map_.fdt.base, tree);
    }

    // The GIC comes after the vCPUs; PSCI (in KVM) is the reset and power-off path.
    void add_irqchip_and_devices(Bus&, Bus&, VmStop&) override {}

    // KVM derives each vCPU's MPIDR from its id (default_mpidr), as the device tree says.
    std::uint32_t vcpu_id(std::uint32_t cpu) const override { return cpu; }

    void setup_vcpu(const Vcpu& vcpu, std::uint32_t cpu) override {
        init_vcpu(vcpu, vcpu_init_, cpu != 0);
        // KVM takes a CLIDR_EL1 from userspace since Linux 6.3.
        kvm_one_reg clidr{kClidrRegister, reinterpret_cast<std::uint64_t>(&kClidrEl1)};
        if (::ioctl(vcpu.fd(), KVM_SET_ONE_REG, &clidr) != 0)
            throw_errno(fmt::format("setting CLIDR_EL1 on vCPU {} (KVM does so from Linux 6.3 "
                                    "on), which the device tree's caches need",
                                    vcpu.id()));
    }

    void after_vcpus(std::span<const Vcpu> vcpus) override {
        create_gic(vm_, map_, kSpis);
        const Vcpu& boot = vcpus.front();
        set_register(boot, kPstate, kBootPstate);
        set_register(boot, kPc, boot_.entry.raw());
        set_register(boot, general_register(0), map_.fdt.base.raw());
        for (unsigned n = 1; n <= 3; ++n) // reserved, zero (booting.rst)
            set_register(boot, general_register(n), 0);
    }

    std::string crash_state(const Vcpu& vcpu) const override {
        return fmt::format("pc {:#x} pstate {:#x}", get_register(vcpu, kPc),
                           get_register(vcpu, kPstate));
    }

    // A VM that resets arrives as a PSCI system event, never in a reset state of its own.
    bool in_reset_state(const Vcpu&) const override { return false; }

  private:
    const Vm& vm_;
    const Topology topology_;
    kvm_vcpu_init vcpu_init_{};
    MemoryMap map_;
    BootInfo boot_{};
};

// A few instructions at 0x1000: store 'K' to an MMIO address, then PSCI SYSTEM_OFF.
constexpr std::uint64_t kProbeMmio = 0x0900'0000;
constexpr std::array<std::uint32_t, 6> kProbeCode = {
    0xd2a12001, // movz x1, #0x0900, lsl #16
    0x52800962, // movz w2, #'K'
    0x39000022, // strb w2, [x1]
    0x52800100, // movz w0, #0x0008
    0x72b08000, // movk w0, #0x8400, lsl #16: PSCI SYSTEM_OFF (0x84000008)
    0xd4000002, // hvc #0
};

KvmProbe run_probe() {
    Kvm kvm;
    Vm vm(kvm);
    GuestMemory memory({{GuestAddress(0), 0x10000}});
    vm.map_memory(memory);
    memory.write_bytes(
        GuestAddress(0x1000),
        {reinterpret_cast<const std::uint8_t*>(kProbeCode.data()), sizeof kProbeCode});
    Vcpu vcpu = vm.create_vcpu(0);
    init_vcpu(vcpu, preferred_vcpu(kvm, vm), false);
    set_register(vcpu, kPc, 0x1000);
    std::string seen;
    for (int exits = 0; exits < 8; ++exits) {
        std::uint32_t reason = vcpu.run();
        if (reason == KVM_EXIT_INTR)
            continue;
        const kvm_run& run = vcpu.state();
        if (reason == KVM_EXIT_MMIO) {
            seen +=
                fmt::format("mmio {} {:#x} byte {:#04x}; ", run.mmio.is_write ? "write" : "read",
                            run.mmio.phys_addr, run.mmio.data[0]);
            if (!run.mmio.is_write || run.mmio.phys_addr != kProbeMmio || run.mmio.len != 1 ||
                run.mmio.data[0] != 'K')
                return {false, seen + "expected a write of 'K' at 0x9000000"};
            continue;
        }
        if (reason == KVM_EXIT_SYSTEM_EVENT && run.system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN &&
            !seen.empty())
            return {true, seen + "system off"};
        return {false, seen + fmt::format("unexpected KVM exit {}", reason)};
    }
    return {false, seen + "the probe guest did not stop"};
}

class Arm64Platform : public Platform {
  public:
    Arch arch() const override { return Arch::arm64; }
    std::uint32_t max_cpus() const override { return kMaxVcpus; }
    std::string_view base_command_line() const override { return "console=ttyS0"; }
    KvmProbe self_check() const override { return run_probe(); }
    KvmProbe runs_guests() const override {
        try {
            return run_probe();
        } catch (const std::exception& e) {
            return {false, e.what()};
        }
    }
    std::unique_ptr<PlatformVm> create_vm(const Kvm& kvm, Vm& vm,
                                          const PlatformVmOptions& options) const override {
        return std::make_unique<Arm64Vm>(kvm, vm, options);
    }
};

} // namespace

const Platform& host_platform() {
    static const Arm64Platform platform;
    return platform;
}

} // namespace ktstr
