#pragma once

#include "ktstr/base/arch.hpp"
#include "ktstr/vmm/bus.hpp"
#include "ktstr/vmm/guest_memory.hpp"
#include "ktstr/vmm/kvm.hpp"
#include "ktstr/vmm/topology.hpp"
#include "ktstr/vmm/vm_stop.hpp"

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// The seam between the architecture-neutral VM core and one architecture. The build picks
// exactly one implementation (src/vmm/<arch>/platform.cpp); nothing else names an
// architecture.
namespace ktstr {

// Where a device sits in the guest and which interrupt line (GSI) it raises.
enum class BusKind { io, mmio };
struct DeviceSlot {
    BusKind bus = BusKind::mmio;
    std::uint64_t base = 0;
    std::uint64_t size = 0;
    std::uint32_t gsi = 0;
};

// The devices every ktstr VM has, placed by the architecture.
struct DevicePlacement {
    std::array<DeviceSlot, 2> uarts; // the kernel console, then the init's second port
    DeviceSlot virtio_console;
};

// What the guest boots: the kernel image in the architecture's format, the initramfs and
// the whole command line.
struct GuestImages {
    std::span<const std::uint8_t> kernel;
    std::span<const std::uint8_t> initrd;
    std::string_view command_line;
};

// What the VM's configuration asks of the architecture.
struct PlatformVmOptions {
    Topology topology = Topology(1, 1, 1, 1);
    // x86-64: a split irqchip and x2APIC even when every APIC ID fits xAPIC.
    bool x2apic = false;
};

// The architecture's part of one VM, asked for in this order by the core (run_machine):
// RAM layout, firmware and kernel, irqchip and platform devices, each vCPU, the hook after
// all vCPUs exist, then device placement (the devices with irqfds come last: arm64's GIC
// takes none before it is complete). Exceptions name what failed.
class PlatformVm {
  public:
    virtual ~PlatformVm() = default;
    virtual std::vector<GuestMemory::Layout> ram_layout(std::uint64_t bytes) const = 0;
    virtual DevicePlacement device_placement() const = 0;
    // Firmware tables or device tree, describing the topology and `numa_memory`, and the
    // kernel and initrd, loaded into `memory`.
    virtual void load(const GuestMemory& memory, const GuestImages& images,
                      std::span<const NumaMemoryRange> numa_memory) = 0;
    // The interrupt controllers that must exist before vCPUs do, and the devices only this
    // architecture has (reset and power-off paths, clocks), on its buses.
    virtual void add_irqchip_and_devices(Bus& io, Bus& mmio, VmStop& stop) = 0;
    // The id KVM_CREATE_VCPU gets for topology vCPU `cpu`, and its set-up once created.
    virtual std::uint32_t vcpu_id(std::uint32_t cpu) const = 0;
    virtual void setup_vcpu(const Vcpu& vcpu, std::uint32_t cpu) = 0;
    // Once every vCPU exists: what needs them all (the arm64 GIC), the boot vCPU's entry.
    virtual void after_vcpus(std::span<const Vcpu> vcpus) = 0;
    // Where a vCPU was, for the report of a fatal exit; and whether it is at its reset
    // vector (a triple fault there is the emulated sandbox's, not the guest's).
    virtual std::string crash_state(const Vcpu& vcpu) const = 0;
    virtual bool in_reset_state(const Vcpu& vcpu) const = 0;
};

// What the smallest possible guest did on this host's KVM.
struct KvmProbe {
    bool passed = false;
    std::string detail; // what the guest did, or why it could not run
};

// One architecture.
class Platform {
  public:
    virtual ~Platform() = default;
    virtual Arch arch() const = 0;
    // The most vCPUs a topology may have here.
    virtual std::uint32_t max_cpus() const = 0;
    // What every guest's command line starts with: console, reset path, clock.
    virtual std::string_view base_command_line() const = 0;
    // A few instructions that write one byte to a device and stop: KVM works end to end.
    virtual KvmProbe self_check() const = 0;
    // Whether this host's KVM runs this architecture's kernels at full speed (some nested
    // set-ups expose a /dev/kvm that cannot).
    virtual KvmProbe runs_guests() const = 0;
    // Checks what KVM must offer, prepares `vm` and returns its architecture state.
    virtual std::unique_ptr<PlatformVm> create_vm(const Kvm& kvm, Vm& vm,
                                                  const PlatformVmOptions& options) const = 0;
};

// The platform this build was made for.
const Platform& host_platform();

} // namespace ktstr
