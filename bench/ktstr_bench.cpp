// ktstr-bench: benchmark runs on the same machinery as ktstr.
#include "ktstr/base/error.hpp"
#include "ktstr/vmm/self_check.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <iostream>
#include <vector>

using namespace ktstr;

namespace {

// Time for a whole minimal VM lifetime: create the VM and vCPU, run to the port write and
// the halt, tear down. The floor under every boot.
int bench_vm_lifecycle(unsigned iterations) {
    std::vector<double> micros;
    for (unsigned i = 0; i < iterations; ++i) {
        auto start = std::chrono::steady_clock::now();
        SelfCheckReport report = run_kvm_self_check();
        auto end = std::chrono::steady_clock::now();
        if (!report.passed())
            throw Error("the guest misbehaved: " + report.summary());
        micros.push_back(std::chrono::duration<double, std::micro>(end - start).count());
    }
    std::sort(micros.begin(), micros.end());
    auto at = [&](double q) { return micros[std::size_t(q * double(micros.size() - 1))]; };
    std::cout << fmt::format("vm-lifecycle: {} runs, min {:.1f} us, p50 {:.1f} us, p99 {:.1f} us, "
                             "max {:.1f} us\n",
                             micros.size(), micros.front(), at(0.5), at(0.99), micros.back());
    return 0;
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
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        if (lifecycle->parsed())
            return bench_vm_lifecycle(iterations);
    } catch (const std::exception& e) {
        std::cerr << "ktstr-bench: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
