#pragma once

// The run's cgroup v2 tree under /sys/fs/cgroup, as the scenario asks for it.

#include <optional>
#include <string>
#include <vector>

namespace ktstr::agent {

// Creates `path` (and its parents), with the cpu and cpuset controllers enabled down to it.
// Returns an error message, or empty.
std::string make_cgroup(const std::string& path);
std::string remove_cgroup(const std::string& path);
// An empty list clears the cpuset (the cgroup then has its parent's CPUs).
std::string set_cpus(const std::string& path, const std::vector<int>& cpus);
std::string set_weight(const std::string& path, int weight);
// Moves `pid` into the cgroup.
std::string join_cgroup(const std::string& path, int pid);
// Every process of `from` into `to`.
std::string move_tasks(const std::string& from, const std::string& to);
// What the kernel says the cgroup may use (cpuset.cpus.effective).
std::vector<int> effective_cpus(const std::string& path);
std::optional<int> weight_of(const std::string& path);

// "0-3,8" to a list.
std::vector<int> parse_cpu_list(const std::string& text);
std::string format_cpu_list(const std::vector<int>& cpus);

} // namespace ktstr::agent
