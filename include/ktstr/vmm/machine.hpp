#pragma once

#include "ktstr/io/byte_sink.hpp"
#include "ktstr/vmm/platform.hpp"
#include "ktstr/vmm/topology.hpp"
#include "ktstr/vmm/vm_runner.hpp"
#include "ktstr/vmm/vm_stop.hpp"

#include <asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ktstr {

struct MachineConfig {
    Topology topology = Topology(1, 1, 1, 1);
    std::uint64_t memory_bytes = 512ull << 20;
    bool hugepages = false;
    // x86-64: a split irqchip and x2APIC even when every APIC ID fits xAPIC (they are used
    // anyway past APIC ID 254).
    bool x2apic = false;
    std::vector<std::uint8_t> kernel; // in the host platform's boot format
    std::vector<std::uint8_t> initrd;
    std::string command_line;
    // The timeout, exit counting and the flush after the stop.
    VmRunOptions run;
    // Where the guest's first UART (kernel console) and second UART bytes go, on vCPU
    // threads (the call may wait for room), and the virtio-console's (hvc0), on the executor.
    std::function<void(std::span<const std::uint8_t>)> console_output;
    std::function<void(std::span<const std::uint8_t>)> second_uart_output;
    ByteSink* virtio_console_output = nullptr;
    // Host input for the console UART, read until end of file; -1 for none.
    // `input_escape` read there stops the VM instead.
    int console_input_fd = -1;
    std::optional<std::uint8_t> input_escape;
    // Sent to the console when the host input ends.
    std::vector<std::uint8_t> console_input_at_end;
    // An eventfd, or -1: host input waits until it is signalled (the guest is ready for it).
    int console_input_gate_fd = -1;
    // Called once the VM is built, just before the vCPUs start.
    std::function<void()> on_started;
};

// Builds a VM for `platform` from the parts (memory, irqchip, devices, vCPUs), boots
// the kernel and runs it on `executor` until it stops (`stop` is how others end it). The
// executor and whatever the config's outputs lead to must outlive the call; the executor
// must not run again afterwards (the devices' coroutines are gone).
StopReason run_machine(const Platform& platform, const MachineConfig& config,
                       asio::io_context& executor, VmStop& stop);

} // namespace ktstr
