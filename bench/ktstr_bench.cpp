// ktstr-bench: benchmark runs on the same machinery as ktstr.
#include "boot.hpp"
#include "ktstr/base/error.hpp"
#include "ktstr/harness/run.hpp"
#include "ktstr/vmm/platform.hpp"
#include "wake_path.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <iostream>
#include <vector>

using namespace ktstr;
using Clock = std::chrono::steady_clock;

namespace {

double ms_between(Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
}

// Time for a whole minimal VM lifetime: create the VM and vCPU, run to the port write and
// the halt, tear down. The floor under every boot.
int bench_vm_lifecycle(unsigned iterations) {
    std::vector<double> micros;
    for (unsigned i = 0; i < iterations; ++i) {
        auto start = Clock::now();
        KvmProbe probe = host_platform().self_check();
        auto end = Clock::now();
        if (!probe.passed)
            throw Error("the guest misbehaved: " + probe.detail);
        micros.push_back(ms_between(start, end) * 1000);
    }
    std::sort(micros.begin(), micros.end());
    auto at = [&](double q) {
        return micros[std::size_t(q * double(micros.size() - 1))];
    };
    std::cout << fmt::format("vm-lifecycle: {} runs, min {:.1f} us, p50 {:.1f} us, p99 {:.1f} us, "
                             "max {:.1f} us\n",
                             micros.size(), micros.front(), at(0.5), at(0.99), micros.back());
    return 0;
}

// "10M", "512K", "1G" or a plain count.
std::uint64_t parse_byte_count(const std::string& text) {
    std::size_t used = 0;
    std::uint64_t value = 0;
    try {
        value = std::stoull(text, &used);
    } catch (const std::exception&) {
        throw Error("--output " + text + ": not a byte count like 10M");
    }
    std::string unit = text.substr(used);
    int shift = unit.empty() ? 0 : unit == "K" ? 10 : unit == "M" ? 20 : unit == "G" ? 30 : -1;
    if (shift < 0 || value > (1ull << (40 - shift)))
        throw Error("--output " + text + ": not a byte count like 10M (at most 1T)");
    return value << shift;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"ktstr-bench: benchmarks on ktstr's VMM"};
    app.require_subcommand(1);
    unsigned iterations = 200;
    auto* lifecycle = app.add_subcommand(
        "vm-lifecycle", "Create, run and destroy a minimal one-vCPU VM, repeatedly");
    lifecycle->add_option("-n,--iterations", iterations, "How many VMs")
        ->capture_default_str()
        ->check(CLI::Range(1u, 1000000u));

    unsigned events = 200'000, rounds = 10;
    auto* wake = app.add_subcommand(
        "wake-path", "The event loop's wake path (eventfd -> loop -> eventfd) against a thread "
                     "blocked in read, on one CPU and on two; no VM");
    wake->add_option("-n,--events", events, "Round trips per variant and placement")
        ->capture_default_str()
        ->check(CLI::Range(1000u, 100'000'000u));
    wake->add_option("--rounds", rounds, "Interleaved rounds")
        ->capture_default_str()
        ->check(CLI::Range(1u, 1000u));

    RunOptions options;
    options.topology = "1n1l2c1t";
    options.memory = "512M";
    std::string output = "0";
    unsigned runs = 3;
    bool with_qemu = false;
    auto add_boot_options = [&](CLI::App* command) {
        command->add_option("--kernel", options.kernel, "Kernel image path or cached version");
        command->add_option("--topology", options.topology, "NnNlNcNt")->capture_default_str();
        command->add_option("--memory", options.memory, "Guest memory")->capture_default_str();
        command
            ->add_option("--output", output,
                         "Bytes the command writes over virtio-console, timed (e.g. 10M)")
            ->capture_default_str();
    };
    auto* boot = app.add_subcommand(
        "boot", "Time boots stage by stage (the VMM's: kernel read, initramfs, VM; the guest's: "
                "to its clock, initcalls, /init, the init's set-up) and count VM exits; --qemu "
                "boots the same kernel and initramfs in QEMU microvm too");
    add_boot_options(boot);
    boot->add_option("-n,--runs", runs, "How many boots")->capture_default_str();
    boot->add_flag("--qemu", with_qemu, "Compare with qemu-system-x86_64 -M microvm,rtc=on");
    auto* once = app.add_subcommand("boot-once", "One timed boot (used by 'boot')");
    add_boot_options(once);
    once->group(""); // internal

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        if (lifecycle->parsed())
            return bench_vm_lifecycle(iterations);
        if (wake->parsed())
            return bench_wake_path(events, rounds);
        std::uint64_t output_bytes = parse_byte_count(output);
        options.command = boot_probe_command(output_bytes);
        if (once->parsed())
            return boot_once(options);
        if (boot->parsed()) {
            validate_run_options(options);
            std::vector<std::string> child_args = {"--topology",   options.topology, "--memory",
                                                   options.memory, "--output",       output};
            if (options.kernel)
                child_args.insert(child_args.end(), {"--kernel", *options.kernel});
            return bench_boot(options, child_args, runs, with_qemu, output_bytes);
        }
    } catch (const std::exception& e) {
        std::cerr << "ktstr-bench: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
