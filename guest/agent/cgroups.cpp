#include "cgroups.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace ktstr::agent {
namespace {

const std::string kRoot = "/sys/fs/cgroup";

std::string write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path);
    out << text << std::flush;
    if (!out)
        return "cannot write '" + text + "' to " + path + ": " + std::strerror(errno);
    return {};
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

} // namespace

std::vector<int> parse_cpu_list(const std::string& text) {
    std::vector<int> cpus;
    std::stringstream in(text);
    for (std::string part; std::getline(in, part, ',');) {
        if (part.empty() || part == "\n")
            continue;
        auto dash = part.find('-');
        int first = std::stoi(part.substr(0, dash));
        int last = dash == std::string::npos ? first : std::stoi(part.substr(dash + 1));
        for (int cpu = first; cpu <= last; ++cpu)
            cpus.push_back(cpu);
    }
    return cpus;
}

std::string format_cpu_list(const std::vector<int>& cpus) {
    std::string text;
    for (int cpu : cpus)
        text += (text.empty() ? "" : ",") + std::to_string(cpu);
    return text;
}

std::string make_cgroup(const std::string& path) {
    std::string parent = kRoot;
    std::stringstream parts(path);
    for (std::string part; std::getline(parts, part, '/');) {
        // A child sees cpu and cpuset only when its parent hands them down.
        if (std::string error = write_file(parent + "/cgroup.subtree_control", "+cpu +cpuset");
            !error.empty())
            return error;
        parent += "/" + part;
        if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST)
            return "cannot create " + parent + ": " + std::strerror(errno);
    }
    return {};
}

std::string remove_cgroup(const std::string& path) {
    if (::rmdir((kRoot + "/" + path).c_str()) != 0)
        return "cannot remove cgroup " + path + ": " + std::strerror(errno);
    return {};
}

std::string set_cpus(const std::string& path, const std::vector<int>& cpus) {
    return write_file(kRoot + "/" + path + "/cpuset.cpus", format_cpu_list(cpus));
}

std::string set_weight(const std::string& path, int weight) {
    return write_file(kRoot + "/" + path + "/cpu.weight", std::to_string(weight));
}

std::string join_cgroup(const std::string& path, int pid) {
    return write_file(kRoot + "/" + path + "/cgroup.procs", std::to_string(pid));
}

std::string move_tasks(const std::string& from, const std::string& to) {
    std::stringstream pids(read_file(kRoot + "/" + from + "/cgroup.procs"));
    for (std::string pid; pids >> pid;)
        if (std::string error = write_file(kRoot + "/" + to + "/cgroup.procs", pid); !error.empty())
            return error;
    return {};
}

std::vector<int> effective_cpus(const std::string& path) {
    return parse_cpu_list(read_file(kRoot + "/" + path + "/cpuset.cpus.effective"));
}

std::optional<int> weight_of(const std::string& path) {
    std::string text = read_file(kRoot + "/" + path + "/cpu.weight");
    if (text.empty())
        return std::nullopt;
    return std::stoi(text);
}

} // namespace ktstr::agent
