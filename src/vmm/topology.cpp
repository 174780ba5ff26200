#include "ktstr/vmm/topology.hpp"

#include "ktstr/base/error.hpp"

#include <charconv>
#include <fmt/format.h>

namespace ktstr {

std::uint32_t bits_for(std::uint32_t n) {
    std::uint32_t bits = 0;
    while ((1u << bits) < n)
        ++bits;
    return bits;
}

Topology::Topology(std::uint32_t nodes, std::uint32_t llcs, std::uint32_t cores_per_llc,
                   std::uint32_t threads_per_core, std::uint32_t max_cpus)
    : nodes_(nodes), llcs_(llcs), cores_per_llc_(cores_per_llc),
      threads_per_core_(threads_per_core) {
    std::string text = to_string();
    if (nodes == 0 || llcs == 0 || cores_per_llc == 0 || threads_per_core == 0)
        throw UsageError("topology " + text + ": every count must be at least 1");
    if (llcs % nodes != 0)
        throw UsageError(fmt::format("topology {}: {} LLCs cannot be spread evenly over {} NUMA "
                                     "nodes",
                                     text, llcs, nodes));
    std::uint64_t total = std::uint64_t(llcs) * cores_per_llc * threads_per_core;
    if (total > max_cpus)
        throw UsageError(fmt::format("topology {}: {} vCPUs, more than the {} supported", text,
                                     total, max_cpus));
}

Topology Topology::parse(std::string_view text, std::uint32_t max_cpus) {
    // Exactly four unsigned numbers, each followed by its letter, in the order n, l, c, t.
    std::uint32_t values[4];
    const char letters[4] = {'n', 'l', 'c', 't'};
    const char* p = text.data();
    const char* end = text.data() + text.size();
    for (int i = 0; i < 4; ++i) {
        auto [next, ec] = std::from_chars(p, end, values[i]);
        if (ec == std::errc::result_out_of_range)
            throw UsageError("topology '" + std::string(text) + "': the count " +
                             std::string(p, next) + " is too large");
        if (ec != std::errc() || next == end || *next != letters[i])
            throw UsageError("topology '" + std::string(text) +
                             "' is not of the form NnNlNcNt (e.g. 1n2l4c2t: NUMA nodes, LLCs, "
                             "cores per LLC, threads per core)");
        p = next + 1;
    }
    if (p != end)
        throw UsageError("topology '" + std::string(text) + "' has trailing characters");
    return Topology(values[0], values[1], values[2], values[3], max_cpus);
}

CpuPlace Topology::place(std::uint32_t cpu) const {
    if (cpu >= cpus())
        throw Error(fmt::format("vCPU {} is outside topology {}", cpu, to_string()));
    std::uint32_t llc = cpu / cpus_per_llc();
    std::uint32_t core_in_llc = (cpu / threads_per_core_) % cores_per_llc_;
    return {llc / llcs_per_node(), llc, core_in_llc, llc * cores_per_llc_ + core_in_llc,
            cpu % threads_per_core_};
}

std::vector<std::uint32_t> Topology::node_cpus(std::uint32_t node) const {
    std::vector<std::uint32_t> cpus_of_node;
    for (std::uint32_t cpu = node * cpus_per_node(); cpu < (node + 1) * cpus_per_node(); ++cpu)
        cpus_of_node.push_back(cpu);
    return cpus_of_node;
}

std::vector<std::uint32_t> Topology::llc_cpus(std::uint32_t llc) const {
    std::vector<std::uint32_t> cpus_of_llc;
    for (std::uint32_t cpu = llc * cpus_per_llc(); cpu < (llc + 1) * cpus_per_llc(); ++cpu)
        cpus_of_llc.push_back(cpu);
    return cpus_of_llc;
}

std::uint32_t Topology::distance(std::uint32_t from, std::uint32_t to) const {
    return from == to ? 10 : 20;
}

std::string Topology::to_string() const {
    return fmt::format("{}n{}l{}c{}t", nodes_, llcs_, cores_per_llc_, threads_per_core_);
}

std::vector<TopologyPreset> topology_presets(Arch arch) {
    const std::pair<const char*, const char*> all[] = {
        {"tiny-1llc", "1n1l4c1t"},         {"tiny-2llc", "1n2l2c1t"},
        {"odd-3llc", "1n3l3c1t"},          {"odd-5llc", "1n5l3c1t"},
        {"odd-7llc", "1n7l2c1t"},          {"smt-2llc", "1n2l2c2t"},
        {"smt-3llc", "1n3l2c2t"},          {"medium-4llc", "1n4l4c2t"},
        {"medium-8llc", "1n8l4c2t"},       {"large-4llc", "1n4l16c2t"},
        {"large-8llc", "1n8l8c2t"},        {"near-max-llc", "1n15l8c2t"},
        {"max-cpu", "1n14l9c2t"},          {"medium-4llc-nosmt", "1n4l8c1t"},
        {"medium-8llc-nosmt", "1n8l8c1t"}, {"large-4llc-nosmt", "1n4l32c1t"},
        {"large-8llc-nosmt", "1n8l16c1t"}, {"near-max-llc-nosmt", "1n15l16c1t"},
        {"max-cpu-nosmt", "1n14l18c1t"},   {"numa2-4llc", "2n4l4c1t"},
        {"numa2-8llc", "2n8l8c2t"},        {"numa2-8llc-nosmt", "2n8l16c1t"},
        {"numa4-8llc", "4n8l4c1t"},        {"numa4-12llc", "4n12l8c2t"},
    };
    std::vector<TopologyPreset> presets;
    for (auto [name, text] : all) {
        Topology topology = Topology::parse(text);
        if (arch == Arch::arm64 && topology.threads_per_core() > 1)
            continue;
        presets.push_back({name, topology});
    }
    return presets;
}

} // namespace ktstr
