#include "ktstr/base/error.hpp"
#include "ktstr/vmm/aarch64/device_tree.hpp"
#include "ktstr/vmm/aarch64/layout.hpp"

#include <catch2/catch_test_macros.hpp>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <libfdt.h>
#include <map>
#include <set>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

using namespace ktstr;
using namespace ktstr::aarch64;

namespace {

constexpr std::uint64_t kMiB = 1 << 20;
const std::string kCommandLine = "console=ttyS0 earlycon rdinit=/init quiet";

// What a test VM needs besides its topology; the device tree config refers to it.
struct Machine {
    Topology topology;
    MemoryMap map;
    std::vector<NumaMemoryRange> memory;
    std::vector<std::uint64_t> mpidrs;
    std::optional<Region> initrd;

    Machine(const Topology& topology_, std::uint64_t ram, bool with_initrd)
        : topology(topology_), map(memory_map(topology.cpus(), ram)) {
        // Even 2 MiB-multiple shares per node, the last taking the rest.
        std::uint64_t share = ram / topology.nodes() / (2 * kMiB) * (2 * kMiB);
        for (std::uint32_t node = 0; node < topology.nodes(); ++node) {
            std::uint64_t offset = node * share;
            std::uint64_t size = node + 1 == topology.nodes() ? ram - offset : share;
            memory.push_back({map.ram.base + offset, size, node});
        }
        for (std::uint32_t cpu = 0; cpu < topology.cpus(); ++cpu)
            mpidrs.push_back(default_mpidr(cpu) | 1ull << 31); // as KVM reports it
        if (with_initrd)
            initrd = Region{map.initrd(0, 40 * kMiB, 5 * kMiB + 123), 5 * kMiB + 123};
    }

    DeviceTreeConfig config() const {
        return {topology, map, memory, mpidrs, kCommandLine, initrd, true};
    }
};

struct CommandResult {
    int status = -1;
    std::string out;
    std::string err;
};

std::string slurp(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// Decompiles a blob with dtc, capturing its output, warnings and exit status.
CommandResult decompile(const std::vector<std::uint8_t>& blob) {
    static int counter = 0;
    auto base = std::filesystem::temp_directory_path() /
                fmt::format("ktstr-dt-test.{}.{}", ::getpid(), counter++);
    auto dtb = base.string() + ".dtb";
    auto err = base.string() + ".err";
    {
        std::ofstream out(dtb, std::ios::binary);
        out.write(reinterpret_cast<const char*>(blob.data()),
                  static_cast<std::streamsize>(blob.size()));
    }
    CommandResult result;
    std::string command = fmt::format("dtc -I dtb -O dts -o - '{}' 2>'{}'", dtb, err);
    FILE* pipe = ::popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;)
        result.out.append(buffer, n);
    int status = ::pclose(pipe);
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.err = slurp(err);
    std::filesystem::remove(dtb);
    std::filesystem::remove(err);
    return result;
}

// A node of dtc's dts output: one property or node per line, "name {" ... "};".
struct DtsNode {
    std::string name;
    std::map<std::string, std::string> properties; // value text as dtc prints it; "" if empty
    std::vector<DtsNode> children;

    const DtsNode* child(const std::string& child_name) const {
        for (const DtsNode& node : children)
            if (node.name == child_name)
                return &node;
        return nullptr;
    }
    bool has(const std::string& property) const { return properties.contains(property); }
    const std::string& operator[](const std::string& property) const {
        auto found = properties.find(property);
        INFO("node " << name << ", property " << property);
        REQUIRE(found != properties.end());
        return found->second;
    }
};

DtsNode parse_dts(const std::string& text) {
    DtsNode root{"<top>", {}, {}};
    std::vector<DtsNode*> open{&root};
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        line.erase(0, line.find_first_not_of('\t'));
        if (line.empty() || line == "/dts-v1/;")
            continue;
        if (line.ends_with(" {")) {
            open.back()->children.push_back({line.substr(0, line.size() - 2), {}, {}});
            open.push_back(&open.back()->children.back());
        } else if (line == "};") {
            REQUIRE(open.size() > 1);
            open.pop_back();
        } else {
            REQUIRE(line.ends_with(";"));
            line.pop_back();
            auto equals = line.find(" = ");
            if (equals == std::string::npos)
                open.back()->properties[line] = "";
            else
                open.back()->properties[line.substr(0, equals)] = line.substr(equals + 3);
        }
    }
    REQUIRE(open.size() == 1);
    REQUIRE(root.children.size() == 1);
    return root.children[0];
}

// "<0x00 0x0a>" as numbers.
std::vector<std::uint64_t> cells(const std::string& value) {
    REQUIRE(value.starts_with("<"));
    REQUIRE(value.ends_with(">"));
    std::istringstream words(value.substr(1, value.size() - 2));
    std::vector<std::uint64_t> numbers;
    for (std::string word; words >> word;)
        numbers.push_back(std::stoull(word, nullptr, 0));
    return numbers;
}

std::uint64_t cell(const std::string& value) {
    auto numbers = cells(value);
    REQUIRE(numbers.size() == 1);
    return numbers[0];
}

std::uint64_t u64_cells(const std::string& value) {
    auto numbers = cells(value);
    REQUIRE(numbers.size() == 2);
    return numbers[0] << 32 | numbers[1];
}

std::string quoted(const std::string& text) { return "\"" + text + "\""; }

// Builds, checks with libfdt and decompiles with dtc, which must not warn.
DtsNode build_and_decompile(const DeviceTreeConfig& config) {
    std::vector<std::uint8_t> blob = build_device_tree(config);
    REQUIRE(blob.size() <= kFdtMaxSize);
    REQUIRE(fdt_check_header(blob.data()) == 0);
    REQUIRE(fdt_totalsize(blob.data()) == blob.size());
    int cpus = fdt_path_offset(blob.data(), "/cpus");
    REQUIRE(cpus >= 0);
    std::uint32_t cpu_nodes = 0;
    int child;
    fdt_for_each_subnode(child, blob.data(), cpus) {
        std::string_view name = fdt_get_name(blob.data(), child, nullptr);
        if (name.starts_with("cpu@"))
            ++cpu_nodes;
    }
    REQUIRE(cpu_nodes == config.topology.cpus());
    REQUIRE(fdt_path_offset(blob.data(), "/chosen") >= 0);

    CommandResult dtc = decompile(blob);
    INFO("dtc stderr:\n" << dtc.err);
    REQUIRE(dtc.status == 0);
    REQUIRE(dtc.err.find("Warning") == std::string::npos);
    REQUIRE(dtc.err.find("ERROR") == std::string::npos);
    return parse_dts(dtc.out);
}

// Everything the topology decides: CPUs, caches, cpu-map, NUMA.
void check_topology(const DtsNode& root, const Machine& machine) {
    const Topology& topology = machine.topology;
    bool numa = topology.nodes() > 1;
    const DtsNode* cpus = root.child("cpus");
    REQUIRE(cpus != nullptr);
    REQUIRE(cell((*cpus)["#address-cells"]) == 1);
    REQUIRE(cell((*cpus)["#size-cells"]) == 0);

    // phandle -> vCPU index, and the LLC cache node each vCPU points at.
    std::map<std::uint64_t, std::uint32_t> cpu_by_phandle;
    std::map<std::uint64_t, std::set<std::uint32_t>> cpus_by_cache;
    for (std::uint32_t cpu = 0; cpu < topology.cpus(); ++cpu) {
        std::uint64_t affinity = default_mpidr(cpu);
        INFO("vCPU " << cpu);
        const DtsNode* node = cpus->child(fmt::format("cpu@{:x}", affinity));
        REQUIRE(node != nullptr);
        REQUIRE((*node)["device_type"] == quoted("cpu"));
        REQUIRE((*node)["compatible"] == quoted("arm,arm-v8"));
        REQUIRE((*node)["enable-method"] == quoted("psci"));
        REQUIRE(cell((*node)["reg"]) == affinity);
        cpu_by_phandle[cell((*node)["phandle"])] = cpu;
        cpus_by_cache[cell((*node)["next-level-cache"])].insert(cpu);
        // Two level-1 leaves for Linux, as CLIDR_EL1's Ctype1 (separate) says.
        for (const char* property : {"cache-unified", "cache-size", "i-cache-size", "d-cache-size"})
            REQUIRE_FALSE(node->has(property));
        if (numa)
            REQUIRE(cell((*node)["numa-node-id"]) == topology.place(cpu).node);
        else
            REQUIRE_FALSE(node->has("numa-node-id"));
    }
    REQUIRE(cpu_by_phandle.size() == topology.cpus());

    // One cache node per LLC, shared by exactly that LLC's vCPUs.
    std::set<std::set<std::uint32_t>> llc_groups;
    std::uint32_t cache_nodes = 0;
    for (const DtsNode& node : cpus->children) {
        if (!node.name.starts_with("l2-cache"))
            continue;
        ++cache_nodes;
        REQUIRE(node["compatible"] == quoted("cache"));
        REQUIRE(node.has("cache-unified"));
        REQUIRE(cell(node["cache-level"]) == kLlcLevel);
        auto sharers = cpus_by_cache.find(cell(node["phandle"]));
        REQUIRE(sharers != cpus_by_cache.end());
        llc_groups.insert(sharers->second);
    }
    REQUIRE(cache_nodes == topology.llcs());
    REQUIRE(cpus_by_cache.size() == topology.llcs());
    std::set<std::set<std::uint32_t>> expected_groups;
    for (std::uint32_t llc = 0; llc < topology.llcs(); ++llc) {
        auto llc_cpus = topology.llc_cpus(llc);
        expected_groups.insert(std::set<std::uint32_t>(llc_cpus.begin(), llc_cpus.end()));
    }
    REQUIRE(llc_groups == expected_groups);

    // cpu-map: clusterN = LLC N, coreM, threadK; each vCPU exactly once, where place() says.
    const DtsNode* map = cpus->child("cpu-map");
    REQUIRE(map != nullptr);
    REQUIRE(map->children.size() == topology.llcs());
    std::set<std::uint32_t> mapped;
    for (std::uint32_t llc = 0; llc < topology.llcs(); ++llc) {
        const DtsNode* cluster = map->child(fmt::format("cluster{}", llc));
        REQUIRE(cluster != nullptr);
        REQUIRE(cluster->children.size() == topology.cores_per_llc());
        for (std::uint32_t core = 0; core < topology.cores_per_llc(); ++core) {
            const DtsNode* core_node = cluster->child(fmt::format("core{}", core));
            REQUIRE(core_node != nullptr);
            std::vector<std::pair<std::uint32_t, const DtsNode*>> leaves;
            if (topology.threads_per_core() == 1) {
                REQUIRE(core_node->children.empty());
                leaves.push_back({0, core_node});
            } else {
                REQUIRE_FALSE(core_node->has("cpu"));
                REQUIRE(core_node->children.size() == topology.threads_per_core());
                for (std::uint32_t thread = 0; thread < topology.threads_per_core(); ++thread) {
                    const DtsNode* thread_node = core_node->child(fmt::format("thread{}", thread));
                    REQUIRE(thread_node != nullptr);
                    leaves.push_back({thread, thread_node});
                }
            }
            for (auto [thread, leaf] : leaves) {
                auto cpu = cpu_by_phandle.find(cell((*leaf)["cpu"]));
                REQUIRE(cpu != cpu_by_phandle.end());
                CpuPlace place = topology.place(cpu->second);
                REQUIRE(place.llc == llc);
                REQUIRE(place.core_in_llc == core);
                REQUIRE(place.thread == thread);
                REQUIRE(mapped.insert(cpu->second).second);
            }
        }
    }
    REQUIRE(mapped.size() == topology.cpus());

    const DtsNode* distances = root.child("distance-map");
    if (!numa) {
        REQUIRE(distances == nullptr);
        return;
    }
    REQUIRE(distances != nullptr);
    REQUIRE((*distances)["compatible"] == quoted("numa-distance-map-v1"));
    std::vector<std::uint64_t> expected;
    for (std::uint32_t from = 0; from < topology.nodes(); ++from)
        for (std::uint32_t to = 0; to < topology.nodes(); ++to)
            expected.insert(expected.end(), {from, to, topology.distance(from, to)});
    REQUIRE(cells((*distances)["distance-matrix"]) == expected);
}

// Memory, chosen and the fixed devices.
void check_platform(const DtsNode& root, const Machine& machine) {
    const MemoryMap& map = machine.map;
    bool numa = machine.topology.nodes() > 1;
    REQUIRE(cell(root["#address-cells"]) == 2);
    REQUIRE(cell(root["#size-cells"]) == 2);
    REQUIRE(root["compatible"] == quoted("linux,dummy-virt"));

    for (const NumaMemoryRange& range : machine.memory) {
        const DtsNode* node = root.child(fmt::format("memory@{:x}", range.start.raw()));
        REQUIRE(node != nullptr);
        REQUIRE((*node)["device_type"] == quoted("memory"));
        REQUIRE(cells((*node)["reg"]) ==
                std::vector<std::uint64_t>{range.start.raw() >> 32, range.start.raw() & 0xffffffff,
                                           range.size >> 32, range.size & 0xffffffff});
        if (numa)
            REQUIRE(cell((*node)["numa-node-id"]) == range.node);
        else
            REQUIRE_FALSE(node->has("numa-node-id"));
    }

    std::string uart0 = fmt::format("serial@{:x}", map.uart0.base.raw());
    std::string uart1 = fmt::format("serial@{:x}", map.uart1.base.raw());
    const DtsNode* chosen = root.child("chosen");
    REQUIRE(chosen != nullptr);
    REQUIRE((*chosen)["bootargs"] == quoted(kCommandLine));
    REQUIRE((*chosen)["stdout-path"] == quoted("/" + uart0));
    if (machine.initrd) {
        REQUIRE(u64_cells((*chosen)["linux,initrd-start"]) == machine.initrd->base.raw());
        REQUIRE(u64_cells((*chosen)["linux,initrd-end"]) == machine.initrd->end().raw());
    } else {
        REQUIRE_FALSE(chosen->has("linux,initrd-start"));
        REQUIRE_FALSE(chosen->has("linux,initrd-end"));
    }
    const DtsNode* aliases = root.child("aliases");
    REQUIRE(aliases != nullptr);
    REQUIRE((*aliases)["serial0"] == quoted("/" + uart0));
    REQUIRE((*aliases)["serial1"] == quoted("/" + uart1));

    const DtsNode* gic = root.child(fmt::format("intc@{:x}", map.gic_distributor.base.raw()));
    REQUIRE(gic != nullptr);
    REQUIRE((*gic)["compatible"] == quoted("arm,gic-v3"));
    REQUIRE(gic->has("interrupt-controller"));
    REQUIRE(cell((*gic)["#interrupt-cells"]) == 3);
    REQUIRE(cell((*gic)["#address-cells"]) == 0);
    REQUIRE(cells((*gic)["reg"]) ==
            std::vector<std::uint64_t>{0, 0x0800'0000, 0, 0x1'0000, 0, 0x0801'0000, 0,
                                       machine.topology.cpus() * 0x2'0000ull});
    REQUIRE(cell(root["interrupt-parent"]) == cell((*gic)["phandle"]));

    const DtsNode* timer = root.child("timer");
    REQUIRE(timer != nullptr);
    REQUIRE((*timer)["compatible"] == quoted("arm,armv8-timer"));
    REQUIRE(cells((*timer)["interrupts"]) ==
            std::vector<std::uint64_t>{1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4});
    REQUIRE(timer->has("always-on"));

    const DtsNode* psci = root.child("psci");
    REQUIRE(psci != nullptr);
    REQUIRE((*psci)["compatible"] == quoted("arm,psci-0.2"));
    REQUIRE((*psci)["method"] == quoted("hvc"));

    for (auto [name, region, spi] :
         {std::tuple{uart0, map.uart0, kUart0Spi}, std::tuple{uart1, map.uart1, kUart1Spi}}) {
        const DtsNode* serial = root.child(name);
        REQUIRE(serial != nullptr);
        REQUIRE((*serial)["compatible"] == quoted("ns16550a"));
        REQUIRE(cells((*serial)["reg"]) ==
                std::vector<std::uint64_t>{0, region.base.raw(), 0, region.size});
        REQUIRE(cells((*serial)["interrupts"]) == std::vector<std::uint64_t>{0, spi, 1});
        REQUIRE(cell((*serial)["clock-frequency"]) == 1843200);
    }

    const DtsNode* virtio = root.child(fmt::format("virtio_mmio@{:x}", map.virtio_mmio.base.raw()));
    REQUIRE(virtio != nullptr);
    REQUIRE((*virtio)["compatible"] == quoted("virtio,mmio"));
    REQUIRE(cells((*virtio)["reg"]) ==
            std::vector<std::uint64_t>{0, map.virtio_mmio.base.raw(), 0, map.virtio_mmio.size});
    REQUIRE(cells((*virtio)["interrupts"]) == std::vector<std::uint64_t>{0, kVirtioMmioSpi, 1});
    REQUIRE(virtio->has("dma-coherent"));
}

void check_machine(const Machine& machine) {
    INFO("topology " << machine.topology.to_string());
    DtsNode root = build_and_decompile(machine.config());
    check_topology(root, machine);
    check_platform(root, machine);
}

} // namespace

TEST_CASE("device tree for one vCPU", "[aarch64]") {
    check_machine(Machine(Topology(1, 1, 1, 1), 64 * kMiB, false));
}

TEST_CASE("device tree for two NUMA nodes and four LLCs", "[aarch64]") {
    Machine machine(Topology(2, 4, 2, 1), 1024 * kMiB, true);
    check_machine(machine);
    // Spelled out once: vCPUs 0-3 on node 0, pairs per LLC.
    DtsNode root = build_and_decompile(machine.config());
    const DtsNode& cpus = *root.child("cpus");
    REQUIRE(cell(cpus.child("cpu@3")->properties.at("numa-node-id")) == 0);
    REQUIRE(cell(cpus.child("cpu@4")->properties.at("numa-node-id")) == 1);
    REQUIRE(cpus.child("cpu@2")->properties.at("next-level-cache") ==
            cpus.child("cpu@3")->properties.at("next-level-cache"));
    REQUIRE(cpus.child("cpu@1")->properties.at("next-level-cache") !=
            cpus.child("cpu@2")->properties.at("next-level-cache"));
    REQUIRE(cells(root.child("distance-map")->properties.at("distance-matrix")) ==
            std::vector<std::uint64_t>{0, 0, 10, 0, 1, 20, 1, 0, 20, 1, 1, 10});
    REQUIRE(root.child("memory@40000000") != nullptr);
    REQUIRE(root.child("memory@60000000") != nullptr);
}

TEST_CASE("device tree for SMT cores", "[aarch64]") {
    check_machine(Machine(Topology(1, 2, 2, 2), 256 * kMiB, true));
}

TEST_CASE("device tree for 256 vCPUs", "[aarch64]") {
    Machine machine(Topology(2, 16, 16, 1, kMaxVcpus), 4096 * kMiB, true);
    REQUIRE(machine.topology.cpus() == 256);
    check_machine(machine);
    // vCPU 16 is the first with Aff1 set, vCPU 255 the last.
    DtsNode root = build_and_decompile(machine.config());
    REQUIRE(root.child("cpus")->child("cpu@100") != nullptr);
    REQUIRE(root.child("cpus")->child("cpu@f0f") != nullptr);
}

TEST_CASE("device tree for the most vCPUs KVM allows", "[aarch64]") {
    Machine machine(Topology(4, 16, 16, 2, kMaxVcpus), 8192 * kMiB, true);
    REQUIRE(machine.topology.cpus() == kMaxVcpus);
    check_machine(machine);
}

TEST_CASE("device tree without PSCI has no enable-method", "[aarch64]") {
    Machine machine(Topology(1, 1, 1, 1), 64 * kMiB, false);
    DeviceTreeConfig config = machine.config();
    config.psci = false;
    DtsNode root = build_and_decompile(config);
    REQUIRE(root.child("psci") == nullptr);
    REQUIRE_FALSE(root.child("cpus")->child("cpu@0")->has("enable-method"));
}

TEST_CASE("device tree rejects inconsistent configurations", "[aarch64]") {
    Machine machine(Topology(1, 2, 2, 1), 64 * kMiB, true);
    {
        DeviceTreeConfig config = machine.config();
        config.mpidrs.pop_back();
        REQUIRE_THROWS_AS(build_device_tree(config), Error);
    }
    {
        DeviceTreeConfig config = machine.config();
        config.mpidrs[1] = config.mpidrs[0];
        REQUIRE_THROWS_AS(build_device_tree(config), Error);
    }
    {
        DeviceTreeConfig config = machine.config();
        config.memory.push_back({GuestAddress(0), 2 * kMiB, 0}); // below RAM
        REQUIRE_THROWS_AS(build_device_tree(config), Error);
    }
    {
        DeviceTreeConfig config = machine.config();
        config.memory[0].node = 1; // the topology has one node
        REQUIRE_THROWS_AS(build_device_tree(config), Error);
    }
    {
        DeviceTreeConfig config = machine.config();
        config.initrd = Region{machine.map.ram.end(), 4096};
        REQUIRE_THROWS_AS(build_device_tree(config), Error);
    }
    {
        MemoryMap other = memory_map(3, 64 * kMiB);
        DeviceTreeConfig config{machine.topology, other, machine.memory, machine.mpidrs,
                                kCommandLine};
        REQUIRE_THROWS_AS(build_device_tree(config), Error);
    }
}

TEST_CASE("device tree larger than 2 MiB is refused", "[aarch64]") {
    Machine machine(Topology(1, 1, 1, 1), 64 * kMiB, false);
    DeviceTreeConfig config = machine.config();
    config.command_line = std::string(3 * kMiB, 'x');
    try {
        build_device_tree(config);
        FAIL("a 3 MiB command line fit");
    } catch (const Error& error) {
        REQUIRE(std::string(error.what()).find("2 MiB") != std::string::npos);
    }
}

TEST_CASE("CLIDR_EL1 describes the device tree's caches: split L1, unified LLC, nothing past it",
          "[device_tree]") {
    auto ctype = [](unsigned level) {
        return (kClidrEl1 >> (3 * (level - 1))) & 7;
    };
    CHECK(ctype(1) == 3);         // separate instruction and data
    CHECK(ctype(kLlcLevel) == 4); // unified
    for (unsigned level = kLlcLevel + 1; level <= 7; ++level)
        CHECK(ctype(level) == 0);
    CHECK(((kClidrEl1 >> 24) & 7) == kLlcLevel); // LoC: the LLC is the point of coherency
    CHECK(((kClidrEl1 >> 21) & 7) == 1);         // LoUIS
    CHECK(((kClidrEl1 >> 27) & 7) == 1);         // LoUU
    CHECK((kClidrEl1 >> 30) == 0);               // no ICB, no tag caches
}
