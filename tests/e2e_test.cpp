// End to end: `ktstr run` boots the cached Debian kernel. The test command runs these inside
// the sandbox, where KVM works (nested under QEMU's emulator on hosts without it).
#include "ktstr/base/files.hpp"
#include "ktstr/kernel/kernel_cache.hpp"
#include "ktstr/vmm/topology.hpp"
#include "test_support.hpp"

#include <catch2/catch_test_macros.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <sstream>

using namespace ktstr;
namespace fs = std::filesystem;

namespace {

test::CommandResult ktstr_run(const std::string& args) { return test::run_ktstr("run " + args); }

// The kernel's cpu list format: "0-3,8,10-11".
std::string cpu_list(const std::vector<std::uint32_t>& cpus) {
    std::string text;
    for (std::size_t i = 0; i < cpus.size();) {
        std::size_t j = i;
        while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1)
            ++j;
        text += (text.empty() ? "" : ",") + std::to_string(cpus[i]);
        if (j > i)
            text += "-" + std::to_string(cpus[j]);
        i = j + 1;
    }
    return text;
}

// What the guest kernel reports about its CPUs, NUMA nodes and sched domains.
constexpr const char* kTopologyScript =
    "cd /sys/devices/system/cpu; for c in cpu[0-9]*; do echo cpu ${c#cpu} "
    "$(cat $c/topology/thread_siblings_list) $(cat $c/topology/physical_package_id) "
    "$(cat $c/cache/index3/shared_cpu_list); done; "
    "cd /sys/devices/system/node; for n in node[0-9]*; do echo node ${n#node} "
    "$(cat $n/cpulist) $(cat $n/distance); done; "
    "echo domains $(cat /sys/kernel/debug/sched/domains/cpu0/domain*/name 2>/dev/null); "
    "echo apic $(dmesg | sed -n \"s/.*Switched APIC routing to: //p\")";

// Boots `text` (with `options` for `ktstr run`) and compares the guest's view with it. With
// `x2apic`, the guest must also route interrupts in physical x2APIC mode.
void check_guest_topology(const std::string& text, bool x2apic = false) {
    Topology topology = Topology::parse(text);
    auto result = ktstr_run("--topology " + text + (x2apic ? " --x2apic" : "") +
                            " --cmdline sched_verbose -- sh -c '" + kTopologyScript + "'");
    INFO(result.err);
    REQUIRE(result.exit_code == 0);
    std::istringstream lines(result.out);
    std::map<std::uint32_t, std::string> cpus, nodes;
    std::string domains, apic_routing;
    for (std::string line; std::getline(lines, line);) {
        std::istringstream words(line);
        std::string kind, rest;
        std::uint32_t id;
        words >> kind;
        if (kind == "domains" || kind == "apic") {
            std::getline(words, kind == "apic" ? apic_routing : domains);
            continue;
        }
        words >> id;
        std::getline(words, rest);
        (kind == "cpu" ? cpus : nodes)[id] = rest;
    }
    REQUIRE(cpus.size() == topology.cpus());
    for (std::uint32_t cpu = 0; cpu < topology.cpus(); ++cpu) {
        CpuPlace place = topology.place(cpu);
        std::vector<std::uint32_t> siblings;
        for (std::uint32_t t = 0; t < topology.threads_per_core(); ++t)
            siblings.push_back(cpu - place.thread + t);
        CAPTURE(cpu);
        CHECK(cpus[cpu] ==
              " " + cpu_list(siblings) + " 0 " + cpu_list(topology.llc_cpus(place.llc)));
    }
    REQUIRE(nodes.size() == topology.nodes());
    for (std::uint32_t node = 0; node < topology.nodes(); ++node) {
        std::string distances;
        for (std::uint32_t other = 0; other < topology.nodes(); ++other)
            distances += " " + std::to_string(topology.distance(node, other));
        CAPTURE(node);
        CHECK(nodes[node] == " " + cpu_list(topology.node_cpus(node)) + distances);
    }
    // Sched domains: SMT only with siblings, MC only where an LLC spans more than one core
    // (otherwise it would repeat SMT), NUMA only with several nodes.
    CAPTURE(domains);
    auto has = [&](const char* name) {
        return (" " + domains + " ").find(std::string(" ") + name + " ") != std::string::npos;
    };
    CHECK(has("SMT") == (topology.threads_per_core() > 1));
    CHECK(has("MC") == (topology.cpus_per_llc() > topology.threads_per_core()));
    CHECK(has("NUMA") == (topology.nodes() > 1));
    if (x2apic)
        CHECK(apic_routing == " physical x2apic");
}

} // namespace

TEST_CASE("the guest sees exactly 1n1l1c1t", "[e2e][topology-1n1l1c1t]") {
    check_guest_topology("1n1l1c1t");
}

TEST_CASE("the guest sees exactly 1n2l2c2t", "[e2e][topology-1n2l2c2t]") {
    check_guest_topology("1n2l2c2t");
}

TEST_CASE("the guest sees exactly 2n4l1c2t", "[e2e][topology-2n4l1c2t]") {
    check_guest_topology("2n4l1c2t");
}

TEST_CASE("the guest sees exactly 2n4l2c2t", "[e2e][topology-2n4l2c2t]") {
    check_guest_topology("2n4l2c2t");
}

// The split irqchip: KVM's local APICs in x2APIC mode, the VMM's I/O APIC, no PIC or PIT.
TEST_CASE("the guest sees exactly 2n2l2c2t through x2APIC and the VMM's I/O APIC",
          "[e2e][x2apic-2n2l2c2t]") {
    check_guest_topology("2n2l2c2t", true);
}

TEST_CASE("without ACPI the guest finds its CPUs in the MP table", "[e2e][mptable]") {
    auto result =
        ktstr_run("--topology 1n2l2c2t --cmdline acpi=off -- sh -c 'nproc; "
                  "dmesg | grep -q \"Intel MultiProcessor Specification v1.4\" && echo mp; "
                  "ls /sys/firmware/acpi/tables 2>/dev/null | wc -l'");
    INFO(result.err);
    CHECK(result.exit_code == 0);
    CHECK(result.out == "8\nmp\n0\n");
}

// boot_params' type_of_loader (offset 0x210) tells how the kernel was entered: 0xb0 is the
// kernel's own PVH code on a non-Xen host, 0xff what ktstr writes for a bzImage.
TEST_CASE("a cached kernel boots its vmlinux through PVH, with its modules; a bzImage by path "
          "still boots",
          "[e2e][boot-entry]") {
    const std::string loader = "-- sh -c 'od -An -tx1 -j 528 -N 1 /sys/kernel/boot_params/data; "
                               "ls /sys/class/tty | grep hvc0'";
    auto kernel = KernelCache().newest(Arch::x86_64);
    REQUIRE(kernel);
    REQUIRE(fs::exists(kernel->pvh_image())); // unpacked by `kernel fetch` and `sandbox`
    auto bzimage = ktstr_run("--kernel " + kernel->image().string() + " " + loader);
    INFO(bzimage.err);
    CHECK(bzimage.exit_code == 1); // an image by path has no modules: no virtio-console
    CHECK(bzimage.out == " ff\n");
    // The same vmlinux by path (no modules) first: the cached kernel must not reuse its
    // initramfs.
    auto by_path = ktstr_run("--kernel " + kernel->pvh_image().string() + " " + loader);
    INFO(by_path.err);
    CHECK(by_path.out == " b0\n");
    auto cached = ktstr_run(loader);
    INFO(cached.err);
    CHECK(cached.exit_code == 0);
    CHECK(cached.out == " b0\nhvc0\n");
}

TEST_CASE("the command's exit status and output come back", "[e2e][exit-status]") {
    auto result = ktstr_run("-- sh -c 'echo out; echo err >&2; exit 7'");
    CHECK(result.exit_code == 7);
    CHECK(result.out == "out\n");
    CHECK(result.err == "err\n");
    // The same boot shows the guest's settings: sched_ext is there, and an oops panics.
    auto guest =
        ktstr_run("-- sh -c 'cat /sys/kernel/sched_ext/state /proc/sys/kernel/panic_on_oops'");
    CHECK(guest.exit_code == 0);
    CHECK((guest.out == "disabled\n1\n" || guest.out == "enabled\n1\n"));
}

TEST_CASE("a hung guest is stopped at the timeout, with a report of where it hung",
          "[e2e][timeout]") {
    auto start = std::chrono::steady_clock::now();
    auto result = ktstr_run("--timeout 40s -- sleep 1000");
    auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(result.exit_code == 124);
    CHECK(result.err.find("did not finish within 40s") != std::string::npos);
    // The init's hang report, 20 s before the timeout, names the sleeping command.
    CHECK(result.err.find("ktstr-init: hang report at ") != std::string::npos);
    CHECK(result.err.find("(sleep) S in hrtimer_nanosleep") != std::string::npos);
    CHECK(result.err.find("(ktstr-hangrep)") == std::string::npos); // not itself
    CHECK(result.err.find("stopped running") == std::string::npos);
    CHECK(seconds < 180); // boot plus 40 s, with room for slow emulation; never 1000 s
}

TEST_CASE("a guest kernel panic is reported with its text", "[e2e][panic]") {
    auto result = ktstr_run("-- sh -c 'echo c > /proc/sysrq-trigger'");
    CHECK(result.exit_code == 85); // the kernel_panic verdict
    CHECK(result.err.find("the guest kernel panicked") != std::string::npos);
    CHECK(result.err.find("sysrq triggered crash") != std::string::npos);
}

TEST_CASE("10 MiB written in the guest reach the host byte-exact", "[e2e][bulk-output]") {
    auto result = ktstr_run("--timeout 600s -- sh -c 'head -c 10485760 /dev/urandom > /tmp/data; "
                            "md5sum < /tmp/data >&2; cat /tmp/data'");
    INFO(result.err.substr(0, 4000));
    REQUIRE(result.exit_code == 0);
    CHECK(result.out.size() == 10485760);
    TempDir dir("e2e");
    write_file_atomic(dir.path() / "data", result.out);
    auto sum = test::run_shell("md5sum < " + (dir.path() / "data").string());
    CHECK(sum.out == result.err); // "<md5>  -\n" on both sides
}

TEST_CASE("SIGTERM stops the VM promptly and leaves nothing behind", "[e2e][sigterm]") {
    // Started in its own process group, so that only ktstr's own children could linger.
    auto result = test::run_shell(
        "setsid " + std::string(KTSTR_BINARY) + " run --timeout 300s -- sleep 1000 & pid=$!; " +
        "sleep 20; kill -TERM $pid; start=$(date +%s); wait $pid; status=$?; " +
        "echo status=$status seconds=$(( $(date +%s) - start )); " +
        "sleep 1; pgrep -g $pid >/dev/null && echo leftover || echo clean");
    INFO(result.err);
    test::unless_spoiled_by_sandbox(test::status_in(result.out), result.err);
    CHECK(result.out.find("status=143") != std::string::npos);
    CHECK(result.out.find("clean") != std::string::npos);
    auto seconds_at = result.out.find("seconds=");
    REQUIRE(seconds_at != std::string::npos);
    CHECK(std::stoi(result.out.substr(seconds_at + 8)) < 10);
}

TEST_CASE("ktstr shell reads piped input as lines and ends with it", "[e2e][shell-piped]") {
    // "piped-42" appears only if the guest shell ran the line, and the line itself is not
    // echoed; the end of the input ends the shell, and the VM, with status 0.
    auto result = test::run_shell("printf 'echo piped-$((6 * 7))\\n' | " +
                                  std::string(KTSTR_BINARY) + " shell --timeout 60s");
    INFO(result.out << result.err);
    test::unless_spoiled_by_sandbox(result.exit_code, result.err);
    CHECK(result.exit_code == 0);
    CHECK(result.out.find("piped-42") != std::string::npos);
    CHECK(result.out.find("6 * 7") == std::string::npos);
}
