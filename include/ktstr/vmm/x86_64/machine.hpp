#pragma once

#include "ktstr/io/byte_sink.hpp"
#include "ktstr/vmm/bus.hpp"
#include "ktstr/vmm/kvm.hpp"
#include "ktstr/vmm/topology.hpp"
#include "ktstr/vmm/vm_runner.hpp"
#include "ktstr/vmm/vm_stop.hpp"

#include <asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ktstr::x86_64 {

struct MachineConfig {
    Topology topology = Topology(1, 1, 1, 1);
    std::uint64_t memory_bytes = 512ull << 20;
    bool hugepages = false;
    // A split irqchip and x2APIC even when every APIC ID fits xAPIC (they are used anyway
    // past APIC ID 254).
    bool x2apic = false;
    std::vector<std::uint8_t> bzimage;
    std::vector<std::uint8_t> initrd;
    std::string command_line;
    // The timeout, exit counting and the flush after the stop.
    VmRunOptions run;
    // Where the guest's COM1 (kernel console) and COM2 bytes go, on vCPU threads (the call
    // may wait for room), and the virtio-console's (hvc0), on the executor.
    std::function<void(std::span<const std::uint8_t>)> com1_output;
    std::function<void(std::span<const std::uint8_t>)> com2_output;
    ByteSink* virtio_console_output = nullptr;
    // Host input for COM1 (the guest's console), read until end of file; -1 for none.
    // `input_escape` read there stops the VM instead.
    int com1_input_fd = -1;
    std::optional<std::uint8_t> input_escape;
    // Sent to COM1 when the host input ends.
    std::vector<std::uint8_t> com1_input_at_end;
    // An eventfd, or -1: host input waits until it is signalled (the guest is ready for it).
    int com1_input_gate_fd = -1;
    // Called once the VM is built, just before the vCPUs start.
    std::function<void()> on_started;
};

// Creates the VM's interrupt controllers; call before creating vCPUs. Up to APIC ID 254 KVM
// emulates the whole PC interrupt system: PIC, I/O APIC, PIT. Past it (`split_irqchip`) the
// local APICs need x2APIC's 32-bit IDs, which KVM's I/O APIC cannot address: KVM keeps only
// the local APICs, the VMM's I/O APIC goes on `mmio`, and there is no PIC or PIT; the guest's
// APIC timers run in TSC-deadline mode instead.
void create_irqchip(Vm& vm, bool split_irqchip, Bus& mmio);

// Builds an x86-64 VM from the parts (memory, irqchip, devices, vCPUs), boots the kernel
// and runs it on `executor` until it stops (`stop` is how others end it). The executor and
// whatever the config's outputs lead to must outlive the call; the executor must not run
// again afterwards (the devices' coroutines are gone).
StopReason run_machine(const MachineConfig& config, asio::io_context& executor, VmStop& stop);

} // namespace ktstr::x86_64
