// ktstr's scenario agent: a static guest program the init runs as the command of a test.
// It reads the resolved scenario (the host already turned every cpuset, count and
// affinity into CPU numbers), builds the cgroups, forks the workers, runs the steps on the
// guest's monotonic clock with their operations between them, stops the workers, and
// sends every report as one JSON line to the init's report descriptor
// ($KTSTR_REPORT_FD), which carries them to the host.
#include "cgroups.hpp"
#include "worker.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sched.h>
#include <string_view>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

using nlohmann::json;
using namespace ktstr::agent;

namespace {

int report_fd = STDOUT_FILENO;
json errors = json::array(); // what the agent could not do, for the host to judge

void send_report(const json& report) {
    std::string line = report.dump() + "\n";
    for (std::size_t done = 0; done < line.size();) {
        ssize_t n = ::write(report_fd, line.data() + done, line.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        done += std::size_t(n);
    }
}

void note_error(const std::string& error) {
    if (!error.empty()) {
        std::fprintf(stderr, "ktstr agent: %s\n", error.c_str());
        errors.push_back(error);
    }
}

double now_ms() { return double(WorkerContext::now_ns()) / 1e6; }

struct Worker {
    WorkerSpec spec;
    pid_t pid = -1;
    int report = -1; // read end of its report pipe
    bool collected = false;
};

struct Group {
    json plan;
    std::vector<Worker> workers;
    void* area = nullptr;
    bool started = false;
};

SharedState* shared = nullptr;
std::map<std::string, Group> groups;
std::vector<std::string> cgroup_paths;
int next_worker_id = 0;

void ignore(int) {}

constexpr std::string_view kCannotJoin = "cannot join its cgroup: ";

// The report of a worker that measured nothing, and how it ended.
json empty_report(const Worker& worker, int pid, const std::string& ended) {
    return {{"type", "worker"},
            {"group", worker.spec.group},
            {"index", worker.spec.index},
            {"pid", pid},
            {"cgroup", worker.spec.cgroup},
            {"work", worker.spec.work},
            {"ended", ended},
            {"units", 0}};
}

[[noreturn]] void become_worker(Worker& worker, const json& plan, int report_write) {
    // A stop request interrupts any blocking call (no SA_RESTART).
    struct sigaction action {};
    action.sa_handler = ignore;
    ::sigaction(SIGUSR1, &action, nullptr);
    // A worker outside its cgroup would measure nothing the scenario asked for: it reports
    // why and the agent counts it as the scenario's error (cgroup v2 refuses, for one, a
    // domain cgroup under a parent that holds processes and hands controllers down).
    if (!worker.spec.cgroup.empty())
        if (std::string error = join_cgroup(worker.spec.cgroup, ::getpid()); !error.empty()) {
            std::string line =
                empty_report(worker, ::getpid(), std::string(kCannotJoin) + error).dump() + "\n";
            [[maybe_unused]] ssize_t n = ::write(report_write, line.data(), line.size());
            ::_exit(0);
        }
    ::prctl(PR_SET_NAME, worker.spec.comm.c_str());
    if (plan.contains("affinity") && plan["affinity"].is_array()) {
        cpu_set_t set;
        CPU_ZERO(&set);
        for (int cpu : plan["affinity"])
            CPU_SET(cpu, &set);
        ::sched_setaffinity(0, sizeof set, &set);
    }
    std::string policy = plan.value("policy", "normal");
    sched_param param{};
    param.sched_priority = plan.value("priority", 0);
    int number = policy == "batch"  ? SCHED_BATCH
                 : policy == "idle" ? SCHED_IDLE
                 : policy == "fifo" ? SCHED_FIFO
                 : policy == "rr"   ? SCHED_RR
                 : policy == "ext"  ? 7 // SCHED_EXT
                                    : SCHED_OTHER;
    if (number != SCHED_OTHER)
        ::sched_setscheduler(0, number, &param);
    ::setpriority(PRIO_PROCESS, 0, plan.value("nice", 0));

    const WorkType* type = find_work_type(worker.spec.work);
    WorkerContext ctx(worker.spec, *shared, groups[worker.spec.group].area);
    if (type)
        type->run(ctx);
    std::string line = ctx.report(type ? "stopped" : "unknown work type").dump() + "\n";
    [[maybe_unused]] ssize_t n = ::write(report_write, line.data(), line.size());
    ::_exit(0);
}

void start_group(const std::string& name) {
    Group& group = groups.at(name);
    if (group.started)
        return;
    group.started = true;
    const json& plan = group.plan;
    int count = plan.value("count", 1);
    for (int i = 0; i < count; ++i) {
        Worker& worker = group.workers.emplace_back();
        worker.spec.group = name;
        worker.spec.work = plan.value("work", "spin");
        worker.spec.params = plan.value("params", json::object());
        worker.spec.cgroup = plan.value("cgroup", "");
        worker.spec.index = i;
        worker.spec.group_size = count;
        worker.spec.worker_id = next_worker_id++;
        worker.spec.comm = plan.value("comm", name).substr(0, 15);
        worker.spec.cpus_in_cgroup = plan.value("cpus_in_cgroup", std::vector<int>{});
        worker.spec.cgroup_paths = cgroup_paths;
        if (worker.spec.worker_id >= int(kMaxWorkers)) {
            note_error("more than " + std::to_string(kMaxWorkers) + " workers");
            group.workers.pop_back();
            return;
        }
    }
    for (Worker& worker : group.workers) {
        int pipe[2];
        if (::pipe2(pipe, O_CLOEXEC) != 0) {
            note_error(std::string("pipe: ") + std::strerror(errno));
            continue;
        }
        worker.pid = ::fork();
        if (worker.pid == 0) {
            ::close(pipe[0]);
            become_worker(worker, plan, pipe[1]);
        }
        ::close(pipe[1]);
        worker.report = pipe[0];
        if (worker.pid < 0)
            note_error(std::string("fork: ") + std::strerror(errno));
    }
}

// Asks the group's workers to stop and collects their reports; a worker that does not
// answer within `patience` is killed and reported as unresponsive (zero work).
void stop_group(const std::string& name, std::chrono::milliseconds patience) {
    Group& group = groups.at(name);
    for (Worker& worker : group.workers)
        if (worker.pid > 0 && !worker.collected) {
            shared->stop[worker.spec.worker_id].store(1);
            // Its measurements are done: a SCHED_IDLE worker on busy CPUs (weight 3) may not
            // run for seconds; as SCHED_OTHER it sees the stop and reports.
            if (::sched_getscheduler(worker.pid) == SCHED_IDLE) {
                sched_param normal{};
                ::sched_setscheduler(worker.pid, SCHED_OTHER, &normal);
            }
            ::kill(worker.pid, SIGUSR1);
        }
    auto deadline = WorkerContext::now_ns() + std::uint64_t(patience.count()) * 1'000'000;
    for (Worker& worker : group.workers) {
        if (worker.pid <= 0 || worker.collected)
            continue;
        worker.collected = true;
        std::string text;
        char buffer[65536];
        ::fcntl(worker.report, F_SETFL, O_NONBLOCK);
        for (;;) {
            ssize_t n = ::read(worker.report, buffer, sizeof buffer);
            if (n > 0) {
                text.append(buffer, std::size_t(n));
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EINTR))
                break;
            if (WorkerContext::now_ns() > deadline) {
                ::kill(worker.pid, SIGKILL);
                break;
            }
            ::usleep(10'000);
        }
        ::close(worker.report);
        int status = 0;
        ::waitpid(worker.pid, &status, 0);
        json report = json::parse(text, nullptr, false);
        if (!report.is_object()) {
            std::string ended = WIFSIGNALED(status)
                                    ? "killed by signal " + std::to_string(WTERMSIG(status))
                                    : "exited without a report";
            if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
                ended = "unresponsive (killed after " + std::to_string(patience.count()) + " ms)";
            report = empty_report(worker, worker.pid, ended);
        }
        if (std::string ended = report.value("ended", ""); ended.starts_with(kCannotJoin))
            note_error(ended);
        report["stopped_ms"] = now_ms();
        send_report(report);
    }
}

// What each cgroup and group looks like now, as the kernel says: the checks compare the
// CPUs a worker ran on in this epoch with it.
json snapshot(std::uint32_t epoch, std::size_t step) {
    json cgroups = json::object();
    for (const auto& path : cgroup_paths)
        cgroups[path] = {{"cpus_effective", effective_cpus(path)},
                         {"weight", weight_of(path) ? json(*weight_of(path)) : json(nullptr)}};
    json state = json::object();
    for (const auto& [name, group] : groups)
        state[name] = {{"cgroup", group.plan.value("cgroup", "")},
                       {"affinity", group.plan.value("affinity", json(nullptr))},
                       {"running", group.started}};
    return {{"type", "step"},    {"index", step},      {"epoch", epoch},
            {"at_ms", now_ms()}, {"cgroups", cgroups}, {"groups", state}};
}

void apply(const json& op) {
    std::string kind = op.value("op", "");
    if (kind == "set_cpuset" || kind == "clear_cpuset") {
        note_error(set_cpus(op["cgroup"], op.value("cpus", std::vector<int>{})));
    } else if (kind == "set_weight") {
        note_error(set_weight(op["cgroup"], op["weight"]));
    } else if (kind == "add_cgroup") {
        note_error(make_cgroup(op["cgroup"]));
        cgroup_paths.push_back(op["cgroup"]);
        if (op.contains("cpus"))
            note_error(set_cpus(op["cgroup"], op["cpus"]));
    } else if (kind == "remove_cgroup") {
        note_error(remove_cgroup(op["cgroup"]));
        std::erase(cgroup_paths, op["cgroup"].get<std::string>());
    } else if (kind == "move_tasks") {
        note_error(move_tasks(op["from"], op["to"]));
        for (auto& [name, group] : groups)
            if (group.plan.value("cgroup", "") == op["from"])
                group.plan["cgroup"] = op["to"];
    } else if (kind == "set_affinity") {
        Group& group = groups.at(op["group"]);
        group.plan["affinity"] = op.value("cpus", json(nullptr));
        cpu_set_t set;
        CPU_ZERO(&set);
        if (op["cpus"].is_array())
            for (int cpu : op["cpus"])
                CPU_SET(cpu, &set);
        else
            for (int cpu = 0; cpu < int(kMaxCpus); ++cpu)
                CPU_SET(cpu, &set);
        for (Worker& worker : group.workers)
            if (worker.pid > 0 && !worker.collected)
                ::sched_setaffinity(worker.pid, sizeof set, &set);
    } else if (kind == "spawn") {
        start_group(op["group"]);
    } else if (kind == "stop") {
        stop_group(op["group"], std::chrono::seconds(5));
    } else {
        note_error("unknown operation " + kind);
    }
}

void sleep_until(std::uint64_t deadline_ns) {
    timespec at{time_t(deadline_ns / 1'000'000'000), long(deadline_ns % 1'000'000'000)};
    while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, nullptr) == EINTR) {
    }
}

} // namespace

int main(int argc, char** argv) {
    if (const char* fd = std::getenv("KTSTR_REPORT_FD"))
        report_fd = std::atoi(fd);
    if (argc != 2) {
        std::fprintf(stderr, "usage: ktstr-agent SCENARIO.json\n");
        return 2;
    }
    std::ifstream in(argv[1]);
    json plan = json::parse(in, nullptr, false);
    if (!plan.is_object()) {
        std::fprintf(stderr, "ktstr agent: %s is not a resolved scenario\n", argv[1]);
        return 2;
    }
    const json& group_plans = plan["groups"];
    std::size_t area = sizeof(SharedState) + group_plans.size() * kGroupAreaSize;
    void* memory = ::mmap(nullptr, area, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (memory == MAP_FAILED) {
        std::perror("ktstr agent: mmap");
        return 1;
    }
    shared = new (memory) SharedState();
    char* next_area = static_cast<char*>(memory) + sizeof(SharedState);
    for (const auto& group : group_plans) {
        Group& entry = groups[group["name"]];
        entry.plan = group;
        entry.area = next_area;
        next_area += kGroupAreaSize;
    }
    for (const auto& cgroup : plan["cgroups"]) {
        std::string path = cgroup["path"];
        note_error(make_cgroup(path));
        cgroup_paths.push_back(path);
        if (cgroup.contains("cpus") && cgroup["cpus"].is_array())
            note_error(set_cpus(path, cgroup["cpus"]));
        if (cgroup.contains("weight") && cgroup["weight"].is_number())
            note_error(set_weight(path, cgroup["weight"]));
    }

    std::uint32_t epoch = 0;
    std::uint64_t start = WorkerContext::now_ns();
    std::uint64_t at = start;
    const json& steps = plan["steps"];
    for (std::size_t step = 0; step < steps.size(); ++step) {
        // Odd while the operations take effect: no cpuset is held against a worker then.
        shared->epoch.store(++epoch);
        for (const auto& op : steps[step].value("ops", json::array()))
            apply(op);
        for (auto& [name, group] : groups)
            if (group.plan.value("start_step", 0) == int(step))
                start_group(name);
        shared->epoch.store(++epoch);
        send_report(snapshot(epoch, step));
        at += std::uint64_t(steps[step].value("hold_ms", 1000)) * 1'000'000;
        sleep_until(at);
    }
    for (auto& [name, group] : groups)
        if (group.started)
            stop_group(name, std::chrono::seconds(5));
    send_report({{"type", "agent"},
                 {"started_ms", double(start) / 1e6},
                 {"ended_ms", now_ms()},
                 {"errors", errors}});
    return errors.empty() ? 0 : 1;
}
