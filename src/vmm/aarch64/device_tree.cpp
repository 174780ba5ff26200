#include "ktstr/vmm/aarch64/device_tree.hpp"

#include "ktstr/base/error.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <libfdt.h>
#include <set>
#include <string_view>

namespace ktstr::aarch64 {

namespace {

// The sequential-write buffer starts small and doubles up to the boot protocol's limit.
constexpr int kInitialBlobSize = 64 * 1024;

// Interrupt specifiers of the GICv3 binding: <type number flags>.
constexpr std::uint32_t kGicSpi = 0;
constexpr std::uint32_t kGicPpi = 1;
constexpr std::uint32_t kEdgeRising = 1;
constexpr std::uint32_t kLevelHigh = 4;
// Architected timer PPIs, in the binding's order: secure physical, non-secure physical,
// virtual, hypervisor physical. KVM's defaults (arch_timer.c default_ppi) are the physical
// timer at INTID 30 and the virtual at 27, i.e. PPIs 14 and 11; level-triggered. The CPU-mask
// bits of the flags cell are GICv2-only and stay clear.
constexpr std::uint32_t kTimerPpis[] = {13, 14, 11, 10};

// The 1.8432 MHz crystal a PC UART divides for its baud rates.
constexpr std::uint32_t kUartClock = 1'843'200;

constexpr std::uint32_t kGicPhandle = 1;

// Linux's generic cacheinfo (drivers/base/cacheinfo.c) gives a CPU's cache leaves of level 1
// the cpu node itself, and each further leaf the next node along next-level-cache; two CPUs
// share a leaf when it is the same node (fw_token), which becomes the leaf's shared_cpu_list
// and, for the last level, the scheduler's LLC (llc_sibling in arch_topology.c). The levels
// are kLlcLevel's (device_tree.hpp), which the vCPUs' CLIDR_EL1 repeats.

// Cells of a 64-bit value, most significant first, as the tree stores them.
void push_u64(std::vector<std::uint32_t>& cells, std::uint64_t value) {
    cells.push_back(static_cast<std::uint32_t>(value >> 32));
    cells.push_back(static_cast<std::uint32_t>(value));
}

// libfdt's sequential-write API, checked: every failing call throws Error naming it, and a
// full buffer is grown (fdt_resize) and the call retried, up to kFdtMaxSize. libfdt leaves the
// tree unchanged when a call finds no space.
class FdtWriter {
  public:
    FdtWriter() : blob_(kInitialBlobSize) {
        run("fdt_create", "", [](void* fdt, int size) { return fdt_create(fdt, size); });
        run("fdt_finish_reservemap", "", [](void* fdt, int) { return fdt_finish_reservemap(fdt); });
    }

    void begin_node(const std::string& name) {
        run("fdt_begin_node", name,
            [&](void* fdt, int) { return fdt_begin_node(fdt, name.c_str()); });
    }
    void end_node() {
        run("fdt_end_node", "", [](void* fdt, int) { return fdt_end_node(fdt); });
    }

    void bytes(const char* name, const void* value, std::size_t length) {
        run("fdt_property", name, [&](void* fdt, int) {
            return fdt_property(fdt, name, value, static_cast<int>(length));
        });
    }
    void empty(const char* name) { bytes(name, nullptr, 0); }
    void string(const char* name, const std::string& value) {
        bytes(name, value.c_str(), value.size() + 1);
    }
    void u32(const char* name, std::uint32_t value) { cells(name, {value}); }
    void u64(const char* name, std::uint64_t value) {
        std::vector<std::uint32_t> value_cells;
        push_u64(value_cells, value);
        cells(name, value_cells);
    }
    void cells(const char* name, const std::vector<std::uint32_t>& values) {
        std::vector<fdt32_t> big_endian;
        for (std::uint32_t value : values)
            big_endian.push_back(cpu_to_fdt32(value));
        bytes(name, big_endian.data(), big_endian.size() * sizeof(fdt32_t));
    }
    // A reg of 64-bit addresses and sizes, as the root's #address-cells and #size-cells say.
    void reg(const std::vector<Region>& regions) {
        std::vector<std::uint32_t> reg_cells;
        for (const Region& region : regions) {
            push_u64(reg_cells, region.base.raw());
            push_u64(reg_cells, region.size);
        }
        cells("reg", reg_cells);
    }

    std::vector<std::uint8_t> finish() && {
        run("fdt_finish", "", [](void* fdt, int) { return fdt_finish(fdt); });
        run("fdt_pack", "", [](void* fdt, int) { return fdt_pack(fdt); });
        blob_.resize(fdt_totalsize(blob_.data()));
        return std::move(blob_);
    }

  private:
    template <typename Call>
    void run(std::string_view call, std::string_view what, Call&& fdt_call) {
        for (;;) {
            int result = fdt_call(blob_.data(), static_cast<int>(blob_.size()));
            if (result == -FDT_ERR_NOSPACE && blob_.size() < kFdtMaxSize) {
                grow();
                continue;
            }
            if (result == -FDT_ERR_NOSPACE)
                throw Error(fmt::format("the device tree exceeds the {} MiB an arm64 kernel "
                                        "accepts ({} failed{}{})",
                                        kFdtMaxSize >> 20, call, what.empty() ? "" : " at ", what));
            if (result < 0)
                throw Error(fmt::format("building the device tree: {}{}{}: {}", call,
                                        what.empty() ? "" : " ", what, fdt_strerror(result)));
            return;
        }
    }

    void grow() {
        std::vector<std::uint8_t> bigger(std::min<std::size_t>(blob_.size() * 2, kFdtMaxSize));
        int result = fdt_resize(blob_.data(), bigger.data(), static_cast<int>(bigger.size()));
        if (result < 0)
            throw Error(
                fmt::format("building the device tree: fdt_resize: {}", fdt_strerror(result)));
        blob_ = std::move(bigger);
    }

    std::vector<std::uint8_t> blob_;
};

std::string node_name(std::string_view name, GuestAddress address) {
    return fmt::format("{}@{:x}", name, address.raw());
}

void check_config(const DeviceTreeConfig& config) {
    const Topology& topology = config.topology;
    if (config.memory_map.vcpus != topology.cpus() || config.mpidrs.size() != topology.cpus())
        throw Error(fmt::format("device tree for topology {} ({} vCPUs): the memory map is for {} "
                                "vCPUs and {} MPIDRs are given",
                                topology.to_string(), topology.cpus(), config.memory_map.vcpus,
                                config.mpidrs.size()));
    std::set<std::uint64_t> affinities;
    for (std::uint64_t mpidr : config.mpidrs)
        if (!affinities.insert(mpidr & kMpidrAffinityMask).second)
            throw Error(fmt::format("device tree: two vCPUs have MPIDR affinity {:#x}",
                                    mpidr & kMpidrAffinityMask));
    if (config.memory.empty())
        throw Error("device tree: no guest memory");
    for (const NumaMemoryRange& range : config.memory) {
        if (range.size == 0 || !config.memory_map.ram.contains({range.start, range.size}) ||
            range.node >= topology.nodes())
            throw Error(fmt::format("device tree: memory {:#x}+{:#x} of node {} is outside guest "
                                    "RAM or the topology's {} nodes",
                                    range.start.raw(), range.size, range.node, topology.nodes()));
    }
    if (config.initrd && !config.memory_map.ram.contains(*config.initrd))
        throw Error(fmt::format("device tree: the initrd at {:#x}+{:#x} is outside guest RAM",
                                config.initrd->base.raw(), config.initrd->size));
}

struct Phandles {
    std::uint32_t cpus;
    std::uint32_t cpu(std::uint32_t index) const { return kGicPhandle + 1 + index; }
    std::uint32_t llc(std::uint32_t index) const { return kGicPhandle + 1 + cpus + index; }
};

void write_cpus(FdtWriter& tree, const DeviceTreeConfig& config, const Phandles& phandles) {
    const Topology& topology = config.topology;
    bool numa = topology.nodes() > 1;
    // One cell holds Aff2-Aff0; Aff3 (bits 39:32) needs a second.
    bool wide = std::any_of(config.mpidrs.begin(), config.mpidrs.end(), [](std::uint64_t mpidr) {
        return (mpidr & kMpidrAffinityMask) > UINT32_MAX;
    });

    tree.begin_node("cpus");
    tree.u32("#address-cells", wide ? 2 : 1);
    tree.u32("#size-cells", 0);
    for (std::uint32_t cpu = 0; cpu < topology.cpus(); ++cpu) {
        std::uint64_t affinity = config.mpidrs[cpu] & kMpidrAffinityMask;
        CpuPlace place = topology.place(cpu);
        tree.begin_node(fmt::format("cpu@{:x}", affinity));
        tree.string("device_type", "cpu");
        tree.string("compatible", "arm,arm-v8");
        if (wide)
            tree.u64("reg", affinity);
        else
            tree.u32("reg", static_cast<std::uint32_t>(affinity));
        if (config.psci)
            tree.string("enable-method", "psci");
        tree.u32("next-level-cache", phandles.llc(place.llc));
        if (numa)
            tree.u32("numa-node-id", place.node);
        tree.u32("phandle", phandles.cpu(cpu));
        tree.end_node();
    }

    for (std::uint32_t llc = 0; llc < topology.llcs(); ++llc) {
        tree.begin_node(fmt::format("l{}-cache{}", kLlcLevel, llc));
        tree.string("compatible", "cache");
        tree.empty("cache-unified");
        tree.u32("cache-level", kLlcLevel);
        tree.u32("phandle", phandles.llc(llc));
        tree.end_node();
    }

    // arch_topology.c parse_dt_topology: clusterN, coreN and threadN are numbered from 0 without
    // gaps, a core holds either threads or a cpu, and every CPU must appear. With no socketN
    // nodes all CPUs share package 0; NUMA nodes come from numa-node-id instead.
    tree.begin_node("cpu-map");
    for (std::uint32_t llc = 0; llc < topology.llcs(); ++llc) {
        tree.begin_node(fmt::format("cluster{}", llc));
        std::vector<std::uint32_t> cpus = topology.llc_cpus(llc);
        for (std::uint32_t core = 0; core < topology.cores_per_llc(); ++core) {
            tree.begin_node(fmt::format("core{}", core));
            for (std::uint32_t cpu : cpus) {
                CpuPlace place = topology.place(cpu);
                if (place.core_in_llc != core)
                    continue;
                if (topology.threads_per_core() > 1) {
                    tree.begin_node(fmt::format("thread{}", place.thread));
                    tree.u32("cpu", phandles.cpu(cpu));
                    tree.end_node();
                } else {
                    tree.u32("cpu", phandles.cpu(cpu));
                }
            }
            tree.end_node();
        }
        tree.end_node();
    }
    tree.end_node(); // cpu-map
    tree.end_node(); // cpus
}

void write_numa(FdtWriter& tree, const Topology& topology) {
    // Documentation/devicetree/bindings/numa.txt: (node, node, distance) triplets, local 10.
    std::vector<std::uint32_t> matrix;
    for (std::uint32_t from = 0; from < topology.nodes(); ++from)
        for (std::uint32_t to = 0; to < topology.nodes(); ++to)
            matrix.insert(matrix.end(), {from, to, topology.distance(from, to)});
    tree.begin_node("distance-map");
    tree.string("compatible", "numa-distance-map-v1");
    tree.cells("distance-matrix", matrix);
    tree.end_node();
}

} // namespace

std::vector<std::uint8_t> build_device_tree(const DeviceTreeConfig& config) {
    check_config(config);
    const Topology& topology = config.topology;
    const MemoryMap& map = config.memory_map;
    bool numa = topology.nodes() > 1;
    Phandles phandles{topology.cpus()};
    std::string uart0 = "/" + node_name("serial", map.uart0.base);
    std::string uart1 = "/" + node_name("serial", map.uart1.base);

    FdtWriter tree;
    tree.begin_node("");
    tree.u32("#address-cells", 2);
    tree.u32("#size-cells", 2);
    tree.string("compatible", "linux,dummy-virt");
    tree.u32("interrupt-parent", kGicPhandle);

    tree.begin_node("chosen");
    tree.string("bootargs", config.command_line);
    tree.string("stdout-path", uart0);
    if (config.initrd) {
        tree.u64("linux,initrd-start", config.initrd->base.raw());
        tree.u64("linux,initrd-end", config.initrd->end().raw());
    }
    tree.end_node();

    tree.begin_node("aliases");
    tree.string("serial0", uart0);
    tree.string("serial1", uart1);
    tree.end_node();

    std::vector<NumaMemoryRange> memory = config.memory;
    std::sort(memory.begin(), memory.end(),
              [](const auto& a, const auto& b) { return a.start < b.start; });
    for (const NumaMemoryRange& range : memory) {
        tree.begin_node(node_name("memory", range.start));
        tree.string("device_type", "memory");
        tree.reg({{range.start, range.size}});
        if (numa)
            tree.u32("numa-node-id", range.node);
        tree.end_node();
    }

    write_cpus(tree, config, phandles);
    if (numa)
        write_numa(tree, topology);

    tree.begin_node(node_name("intc", map.gic_distributor.base));
    tree.string("compatible", "arm,gic-v3");
    tree.u32("#interrupt-cells", 3);
    tree.empty("interrupt-controller");
    // No children (no ITS) and no unit address in interrupt-map parents: dtc asks every
    // interrupt provider to say so.
    tree.u32("#address-cells", 0);
    // The distributor, then one redistributor region holding every vCPU's frames.
    tree.reg({map.gic_distributor, map.gic_redistributors});
    tree.u32("phandle", kGicPhandle);
    tree.end_node();

    tree.begin_node("timer");
    tree.string("compatible", "arm,armv8-timer");
    std::vector<std::uint32_t> timer_interrupts;
    for (std::uint32_t ppi : kTimerPpis)
        timer_interrupts.insert(timer_interrupts.end(), {kGicPpi, ppi, kLevelHigh});
    tree.cells("interrupts", timer_interrupts);
    tree.empty("always-on"); // the counter keeps running in every idle state a vCPU enters
    tree.end_node();

    if (config.psci) {
        tree.begin_node("psci");
        tree.string("compatible", "arm,psci-0.2");
        tree.string("method", "hvc");
        tree.end_node();
    }

    // The UARTs and virtio-mmio signal through irqfds, which pulse their SPI: a level-sensitive
    // input would forget a pulse the guest had not yet taken, an edge latches it. The UART
    // raises a new edge for each new pending condition (as on a PC's ISA lines), and
    // virtio-mmio's driver acknowledges through InterruptACK, so neither needs a level.
    for (auto [region, spi] : {std::pair{map.uart0, kUart0Spi}, std::pair{map.uart1, kUart1Spi}}) {
        tree.begin_node(node_name("serial", region.base));
        tree.string("compatible", "ns16550a");
        tree.reg({region});
        tree.cells("interrupts", {kGicSpi, spi, kEdgeRising});
        tree.u32("clock-frequency", kUartClock);
        tree.end_node();
    }

    tree.begin_node(node_name("virtio_mmio", map.virtio_mmio.base));
    tree.string("compatible", "virtio,mmio");
    tree.reg({map.virtio_mmio});
    tree.cells("interrupts", {kGicSpi, kVirtioMmioSpi, kEdgeRising});
    tree.empty("dma-coherent");
    tree.end_node();

    tree.end_node(); // root
    return std::move(tree).finish();
}

} // namespace ktstr::aarch64
