#include "ktstr/vmm/machine.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/devices/serial.hpp"
#include "ktstr/devices/virtio/console.hpp"
#include "ktstr/io/event_fd.hpp"
#include "ktstr/vmm/kvm.hpp"

#include <algorithm>
#include <array>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <unistd.h>

namespace ktstr {

namespace {

// What every platform's VM uses: memory slots, irqfds and ioeventfds, prompt vCPU stops.
constexpr Kvm::Capability kCapabilities[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
};

// Offers `bytes` to the UART until it has taken them all, waiting while its queue is full
// (the guest reads slower than a pipe writes).
asio::awaitable<void> deliver(asio::io_context& executor, Serial16550& uart,
                              std::span<const std::uint8_t> bytes) {
    asio::steady_timer pause(executor);
    for (;;) {
        bytes = bytes.subspan(uart.receive(bytes));
        if (bytes.empty())
            co_return;
        pause.expires_after(std::chrono::milliseconds(10));
        co_await pause.async_wait(asio::use_awaitable);
    }
}

// Host bytes into the guest's UART, once `gate_fd` (if any) is signalled, until the escape
// byte, or until end of file, then `at_end`.
asio::awaitable<void> forward_input(asio::io_context& executor, int fd, int gate_fd,
                                    std::optional<std::uint8_t> escape,
                                    std::vector<std::uint8_t> at_end, Serial16550& uart,
                                    VmStop& stop) {
    if (gate_fd >= 0) {
        EventFd gate(executor, gate_fd);
        co_await gate.wait();
    }
    asio::posix::stream_descriptor input(executor, ::dup(fd));
    std::array<std::uint8_t, 256> buffer;
    for (;;) {
        std::error_code ec;
        std::size_t n = co_await input.async_read_some(
            asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
            co_await deliver(executor, uart, at_end);
            co_return;
        }
        std::span<const std::uint8_t> bytes(buffer.data(), n);
        auto escape_at = escape ? std::find(bytes.begin(), bytes.end(), *escape) : bytes.end();
        co_await deliver(executor, uart, bytes.first(std::size_t(escape_at - bytes.begin())));
        if (escape_at != bytes.end()) {
            stop.request({StopReason::Kind::interrupted, "left the guest (escape key)"});
            co_return;
        }
    }
}

// A vCPU as its thread drives it, with the platform's view of where it crashed.
class MachineVcpu : public VcpuRunner {
  public:
    MachineVcpu(Vcpu& vcpu, const PlatformVm& platform) : vcpu_(vcpu), platform_(platform) {}
    std::uint32_t id() const override { return vcpu_.id(); }
    kvm_run& state() const override { return vcpu_.state(); }
    std::uint32_t run() override { return vcpu_.run(); }
    std::string crash_state() const override { return platform_.crash_state(vcpu_); }
    bool in_reset_state() const override { return platform_.in_reset_state(vcpu_); }

  private:
    Vcpu& vcpu_;
    const PlatformVm& platform_;
};

} // namespace

StopReason run_machine(const Platform& platform, const MachineConfig& config,
                       asio::io_context& executor, VmStop& stop) {
    if (!config.virtio_console_output)
        throw Error("the machine needs somewhere for its virtio-console output");
    const Topology& topology = config.topology;
    Kvm kvm;
    kvm.require(kCapabilities);
    Vm vm(kvm);
    std::unique_ptr<PlatformVm> arch =
        platform.create_vm(kvm, vm, {.topology = topology, .x2apic = config.x2apic});
    GuestMemory memory(arch->ram_layout(config.memory_bytes), config.hugepages);
    vm.map_memory(memory);
    arch->load(memory, {config.kernel, config.initrd, config.command_line},
               split_memory_by_node(memory, topology.nodes()));

    Bus io, mmio;
    arch->add_irqchip_and_devices(io, mmio, stop);
    // The interrupt controller is complete only with every vCPU (the arm64 GIC), and an
    // irqfd needs it complete: vCPUs first, then the devices.
    std::vector<Vcpu> vcpus;
    for (std::uint32_t cpu = 0; cpu < topology.cpus(); ++cpu) {
        vcpus.push_back(vm.create_vcpu(arch->vcpu_id(cpu)));
        arch->setup_vcpu(vcpus.back(), cpu);
    }
    arch->after_vcpus(vcpus);
    const DevicePlacement placement = arch->device_placement();
    const DeviceSlot& console_slot = placement.virtio_console;
    auto console = std::make_shared<VirtioMmioTransport>(
        std::make_unique<VirtioConsole>(*config.virtio_console_output), memory,
        std::make_shared<IrqFd>(vm, console_slot.gsi), executor);
    mmio.insert(console_slot.base, console_slot.size, console);
    for (std::uint32_t queue = 0; queue < console->queue_count(); ++queue)
        add_ioeventfd(vm, console->queue_notifier(queue).fd(),
                      GuestAddress(console_slot.base) + VirtioMmioTransport::kQueueNotifyOffset,
                      queue);
    auto add_uart = [&](const DeviceSlot& slot, const Serial16550::Output& output) {
        auto uart = std::make_shared<Serial16550>(std::make_shared<IrqFd>(vm, slot.gsi), output);
        (slot.bus == BusKind::io ? io : mmio).insert(slot.base, slot.size, uart);
        return uart;
    };
    auto console_uart = add_uart(placement.uarts[0], config.console_output);
    add_uart(placement.uarts[1], config.second_uart_output);
    if (config.console_input_fd >= 0)
        asio::co_spawn(executor,
                       forward_input(executor, config.console_input_fd,
                                     config.console_input_gate_fd, config.input_escape,
                                     config.console_input_at_end, *console_uart, stop),
                       asio::detached);

    if (config.on_started)
        config.on_started();
    std::vector<MachineVcpu> machine_vcpus;
    for (auto& vcpu : vcpus)
        machine_vcpus.emplace_back(vcpu, *arch);
    std::vector<VcpuRunner*> runners;
    for (auto& vcpu : machine_vcpus)
        runners.push_back(&vcpu);
    return run_vm(executor, runners, io, mmio, stop, config.run);
}

} // namespace ktstr
