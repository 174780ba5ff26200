#include "ktstr/vmm/x86_64/machine.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/devices/acpi_pm.hpp"
#include "ktstr/devices/cmos_rtc.hpp"
#include "ktstr/devices/i8042.hpp"
#include "ktstr/devices/ioapic.hpp"
#include "ktstr/devices/serial.hpp"
#include "ktstr/devices/virtio/console.hpp"
#include "ktstr/io/event_fd.hpp"
#include "ktstr/vmm/kvm.hpp"
#include "ktstr/vmm/vm_runner.hpp"
#include "ktstr/vmm/x86_64/acpi.hpp"
#include "ktstr/vmm/x86_64/boot.hpp"
#include "ktstr/vmm/x86_64/cpuid.hpp"
#include "ktstr/vmm/x86_64/layout.hpp"
#include "ktstr/vmm/x86_64/mptable.hpp"

#include <algorithm>
#include <array>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace ktstr::x86_64 {

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
    std::vector<std::pair<unsigned long, const char*>> needed = {
        {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
        {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
        {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
        {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
        {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
        {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
        {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
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
    std::string missing;
    for (auto [capability, name] : needed)
        if (!kvm.check_extension(capability))
            missing += std::string(missing.empty() ? "" : ", ") + name;
    if (!missing.empty())
        throw Error("this host's KVM lacks " + missing);
}

// RAM split evenly over the NUMA nodes in address order, in 2 MiB steps; the last node
// takes what does not divide evenly.
std::vector<NumaMemoryRange> split_memory_by_node(const GuestMemory& memory,
                                                  const Topology& topology) {
    constexpr std::uint64_t kStep = 2ull << 20;
    std::uint64_t share = memory.total_size() / topology.nodes() / kStep * kStep;
    if (share == 0)
        throw UsageError(fmt::format("{} MiB of memory cannot be split over {} NUMA nodes",
                                     memory.total_size() >> 20, topology.nodes()));
    std::vector<NumaMemoryRange> ranges;
    std::uint32_t node = 0;
    std::uint64_t left_in_node = share;
    for (const auto& region : memory.regions()) {
        GuestAddress at = region.start;
        std::uint64_t left = region.size;
        while (left > 0) {
            bool last_node = node + 1 == topology.nodes();
            std::uint64_t size = last_node ? left : std::min(left, left_in_node);
            ranges.push_back({at, size, node});
            at = at + size;
            left -= size;
            left_in_node -= std::min(left_in_node, size);
            if (left_in_node == 0 && !last_node) {
                ++node;
                left_in_node = share;
            }
        }
    }
    return ranges;
}

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

} // namespace

void create_irqchip(Vm& vm, bool split_irqchip, Bus& mmio) {
    if (!split_irqchip) {
        vm_ioctl(vm, KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP");
        kvm_pit_config pit{};
        pit.flags = KVM_PIT_SPEAKER_DUMMY;
        vm_ioctl(vm, KVM_CREATE_PIT2, reinterpret_cast<unsigned long>(&pit), "KVM_CREATE_PIT2");
        return;
    }
    vm.enable_capability(KVM_CAP_SPLIT_IRQCHIP, Ioapic::kPins, "KVM_CAP_SPLIT_IRQCHIP");
    vm.enable_capability(KVM_CAP_X2APIC_API,
                         KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK,
                         "KVM_CAP_X2APIC_API");
    mmio.insert(kIoapic.raw(), Ioapic::kSize,
                std::make_shared<Ioapic>([&vm](const auto& routes) { vm.set_msi_routes(routes); }));
}

StopReason run_machine(const MachineConfig& config, asio::io_context& executor, VmStop& stop) {
    if (!config.virtio_console_output)
        throw Error("the machine needs somewhere for its virtio-console output");
    const Topology& topology = config.topology;
    const bool split_irqchip = config.x2apic || topology.needs_x2apic();
    Kvm kvm;
    require_capabilities(kvm, split_irqchip);
    if (auto max_id = kvm.check_extension(KVM_CAP_MAX_VCPU_ID);
        max_id > 0 && topology.max_apic_id() >= std::uint32_t(max_id))
        throw Error(fmt::format("topology {} needs APIC ID {}, but this host's KVM stops at {}",
                                topology.to_string(), topology.max_apic_id(), max_id - 1));
    Vm vm(kvm);
    vm_ioctl(vm, KVM_SET_TSS_ADDR, kTss.raw(), "KVM_SET_TSS_ADDR");
    std::uint64_t identity_map = kIdentityMap.raw();
    vm_ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, reinterpret_cast<unsigned long>(&identity_map),
             "KVM_SET_IDENTITY_MAP_ADDR");
    GuestMemory memory(ram_layout(config.memory_bytes), config.hugepages);
    vm.map_memory(memory);

    const VirtioMmioDevice virtio_console{kVirtioMmioBase, VirtioMmioTransport::kSize,
                                          kVirtioConsoleGsi, IrqTrigger::edge};
    AcpiConfig acpi{topology, split_memory_by_node(memory, topology), {virtio_console}};
    AcpiTables tables = build_acpi_tables(acpi, kAcpiTables);
    if (tables.bytes.size() > kAcpiTablesMax)
        throw Error("the ACPI tables outgrew their reserved area");
    memory.write_bytes(kAcpiTables, tables.bytes);

    auto supported = supported_cpuid(kvm);
    add_vm_cpu_features(supported,
                        {.tsc_deadline_timer = kvm.check_extension(KVM_CAP_TSC_DEADLINE_TIMER) != 0,
                         .msi_ext_dest_id = split_irqchip});
    // For guests booted with acpi=off. It names the PC's PIC and PIT wiring, which a split
    // irqchip lacks, and its APIC IDs are 8 bits wide: such VMs have the MADT alone.
    if (!split_irqchip) {
        auto leaf1 =
            std::find_if(supported.begin(), supported.end(),
                         [](const kvm_cpuid_entry2& entry) { return entry.function == 1; });
        MpProcessorSignature processor;
        if (leaf1 != supported.end())
            processor = {leaf1->eax, leaf1->edx};
        std::vector<std::uint8_t> mp_table = build_mp_table(topology, kMpTable, processor);
        if (mp_table.size() > kMpTableMax)
            throw Error("the MP table outgrew its reserved area");
        memory.write_bytes(kMpTable, mp_table);
    }

    BootInfo boot =
        load_kernel(memory, {config.bzimage, config.initrd, config.command_line, tables.rsdp});

    Bus io, mmio;
    static_assert(kIoApicPins == Ioapic::kPins);
    create_irqchip(vm, split_irqchip, mmio);
    auto console = std::make_shared<VirtioMmioTransport>(
        std::make_unique<VirtioConsole>(*config.virtio_console_output), memory,
        std::make_shared<IrqFd>(vm, kVirtioConsoleGsi), executor);
    mmio.insert(virtio_console.base.raw(), virtio_console.size, console);
    for (std::uint32_t queue = 0; queue < console->queue_count(); ++queue)
        add_ioeventfd(vm, console->queue_notifier(queue).fd(),
                      virtio_console.base + VirtioMmioTransport::kQueueNotifyOffset, queue);
    auto com1 =
        std::make_shared<Serial16550>(std::make_shared<IrqFd>(vm, kCom1Irq), config.com1_output);
    io.insert(kCom1, Serial16550::kRegisterCount, com1);
    if (config.com1_input_fd >= 0)
        asio::co_spawn(executor,
                       forward_input(executor, config.com1_input_fd, config.com1_input_gate_fd,
                                     config.input_escape, config.com1_input_at_end, *com1, stop),
                       asio::detached);
    io.insert(
        kCom2, Serial16550::kRegisterCount,
        std::make_shared<Serial16550>(std::make_shared<IrqFd>(vm, kCom2Irq), config.com2_output));
    io.insert(I8042::kBase, I8042::kLength, std::make_shared<I8042>([&stop] {
                  stop.request({StopReason::Kind::reset, "the guest reset the machine (i8042)"});
              }));
    io.insert(CmosRtc::kBase, CmosRtc::kLength, std::make_shared<CmosRtc>());
    io.insert(kAcpiPm1EventPort, AcpiPmRegisters::kLength,
              std::make_shared<AcpiPmRegisters>([&stop] {
                  stop.request({StopReason::Kind::poweroff, "the guest powered off (ACPI)"});
              }));

    std::vector<Vcpu> vcpus;
    for (std::uint32_t cpu = 0; cpu < topology.cpus(); ++cpu) {
        vcpus.push_back(vm.create_vcpu(topology.apic_id(cpu)));
        set_vcpu_cpuid(vcpus.back(), vcpu_cpuid(supported, topology, cpu));
        setup_local_apic(vcpus.back());
    }
    setup_boot_vcpu(vcpus.front(), boot);
    if (config.on_started)
        config.on_started();
    std::vector<VcpuRunner*> runners;
    for (auto& vcpu : vcpus)
        runners.push_back(&vcpu);
    return run_vm(executor, runners, io, mmio, stop, config.run);
}

} // namespace ktstr::x86_64
