#pragma once

#include "ktstr/base/arch.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ktstr {

// Where one vCPU sits. `llc` and `core` are global indices (llc 0..llcs-1, core 0..cores-1
// across the machine); `core_in_llc` and `thread` are local.
struct CpuPlace {
    std::uint32_t node;
    std::uint32_t llc;
    std::uint32_t core_in_llc;
    std::uint32_t core;
    std::uint32_t thread;
};

// A synthetic CPU topology, written NnNlNcNt: NUMA nodes, last-level caches (spread evenly
// over the nodes), cores per LLC, threads per core. vCPU i is numbered LLC-major:
// llc = i / (cores*threads), core_in_llc = (i / threads) % cores, thread = i % threads.
class Topology {
  public:
    // Throws UsageError naming what is wrong: the syntax, a zero, LLCs not divisible by
    // nodes, or more vCPUs than `max_cpus`.
    static Topology parse(std::string_view text, std::uint32_t max_cpus = kMaxCpus);
    Topology(std::uint32_t nodes, std::uint32_t llcs, std::uint32_t cores_per_llc,
             std::uint32_t threads_per_core, std::uint32_t max_cpus = kMaxCpus);

    static constexpr std::uint32_t kMaxCpus = 252;

    std::uint32_t nodes() const { return nodes_; }
    std::uint32_t llcs() const { return llcs_; }
    std::uint32_t cores_per_llc() const { return cores_per_llc_; }
    std::uint32_t threads_per_core() const { return threads_per_core_; }
    std::uint32_t llcs_per_node() const { return llcs_ / nodes_; }
    std::uint32_t cpus() const { return llcs_ * cores_per_llc_ * threads_per_core_; }
    std::uint32_t cpus_per_llc() const { return cores_per_llc_ * threads_per_core_; }
    std::uint32_t cpus_per_node() const { return cpus() / nodes_; }

    CpuPlace place(std::uint32_t cpu) const;
    // The vCPUs of one NUMA node or LLC, ascending.
    std::vector<std::uint32_t> node_cpus(std::uint32_t node) const;
    std::vector<std::uint32_t> llc_cpus(std::uint32_t llc) const;

    // SLIT-style distance between NUMA nodes: 10 local, 20 remote.
    std::uint32_t distance(std::uint32_t from, std::uint32_t to) const;

    std::string to_string() const; // "1n2l4c2t"
    bool operator==(const Topology&) const = default;

  private:
    std::uint32_t nodes_;
    std::uint32_t llcs_;
    std::uint32_t cores_per_llc_;
    std::uint32_t threads_per_core_;
};

// ceil(log2 n); 0 for n <= 1.
std::uint32_t bits_for(std::uint32_t n);

struct TopologyPreset {
    std::string name;
    Topology topology;
};

// The gauntlet: named topologies every scheduler should survive. arm64 drops the ones
// with SMT (its guests have no SMT siblings).
std::vector<TopologyPreset> topology_presets(Arch arch);

} // namespace ktstr
