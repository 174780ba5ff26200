// ktstr: boots kernels with synthetic CPU topologies in KVM to test Linux schedulers.
#include "ktstr/base/arch.hpp"
#include "ktstr/base/error.hpp"
#include "ktstr/harness/run.hpp"
#include "ktstr/kernel/debian_kernel.hpp"
#include "ktstr/kernel/kernel_cache.hpp"
#include "ktstr/sandbox/sandbox.hpp"
#include "ktstr/vmm/self_check.hpp"

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fmt/format.h>
#include <iostream>

namespace fs = std::filesystem;
using namespace ktstr;

namespace {

std::uint64_t directory_size(const fs::path& dir) {
    std::uint64_t total = 0;
    std::error_code ec;
    for (const auto& entry : fs::recursive_directory_iterator(dir, ec))
        if (entry.is_regular_file(ec))
            total += entry.file_size(ec);
    return total;
}

int list_kernels() {
    KernelCache cache;
    auto kernels = cache.list();
    if (kernels.empty()) {
        std::cout << "no kernels cached in " << cache.root().string()
                  << " (run 'ktstr kernel fetch')\n";
        return 0;
    }
    std::cout << fmt::format("{:<20} {:<7} {:<20} {:>8}  {}\n", "VERSION", "ARCH", "PACKAGE",
                             "SIZE", "PATH");
    for (const auto& kernel : kernels)
        std::cout << fmt::format("{:<20} {:<7} {:<20} {:>6}Mi  {}\n", kernel.version,
                                 arch_name(kernel.arch), kernel.package_version,
                                 directory_size(kernel.dir) >> 20, kernel.dir.string());
    return 0;
}

int self_check() {
    SelfCheckReport report = run_kvm_self_check();
    std::cout << fmt::format("KVM self-check: guest exits: {}\n", report.summary());
    if (!report.passed()) {
        std::cerr << fmt::format("ktstr: KVM self-check failed: expected out {:#x} byte {:#04x} "
                                 "then hlt\n",
                                 report.expected_port, report.expected_byte);
        return 1;
    }
    std::cout << "KVM self-check: ok\n";
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"ktstr: test Linux schedulers in KVM virtual machines with synthetic CPU "
                 "topologies"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "ktstr 0.1.0");

    auto* kernel = app.add_subcommand("kernel", "Manage the cache of guest kernels");
    kernel->require_subcommand(1);
    std::string arch_text = std::string(arch_name(host_arch()));
    bool if_missing = false;
    auto* fetch = kernel->add_subcommand(
        "fetch", "Download Debian's current sched_ext kernel (trixie-backports) into the cache");
    fetch->add_option("--arch", arch_text, "x86_64 or arm64")->capture_default_str();
    fetch->add_flag("--if-missing", if_missing, "Do nothing when a kernel of this arch is cached");
    auto* list = kernel->add_subcommand("list", "Show the cached kernels");

    SandboxOptions sandbox_options;
    std::optional<std::string> kernel_spec;
    auto* sandbox = app.add_subcommand(
        "sandbox", "Run a command where /dev/kvm exists: here if the host has it, otherwise "
                   "inside an emulated (QEMU TCG) guest with nested KVM");
    sandbox->add_option("--arch", arch_text, "x86_64")->capture_default_str();
    sandbox->add_option("--kernel", kernel_spec,
                        "The L1 guest's kernel: an image path or a cached version");
    sandbox->add_flag("--emulate", sandbox_options.force_emulation,
                      "Use the emulated guest even when this host has /dev/kvm");
    sandbox->footer("Usage: ktstr sandbox [OPTIONS] -- CMD [ARGS...]");

    RunOptions run_options;
    auto add_vm_options = [&](CLI::App* command) {
        command->add_option("--kernel", run_options.kernel,
                            "Kernel image path or cached version (default: newest cached)");
        command
            ->add_option("--topology", run_options.topology,
                         "NnNlNcNt: NUMA nodes, LLCs, cores per LLC, threads per core")
            ->capture_default_str();
        command->add_option("--memory", run_options.memory, "Guest memory, e.g. 512M or 2G")
            ->capture_default_str();
        command->add_option("--include", run_options.includes,
                            "Extra files for the guest, at the same paths (programs with their "
                            "libraries)");
        command->add_option("--cmdline", run_options.extra_cmdline, "Extra kernel command line");
        command->add_flag(
            "--hugepages", run_options.hugepages,
            "Back guest memory with 2 MiB huge pages (see /proc/sys/vm/nr_hugepages)");
        command->add_flag("--x2apic", run_options.x2apic,
                          "Use x2APIC with a split irqchip (the VMM's I/O APIC, no PIC or PIT) "
                          "even when every APIC ID is below 255, where it is automatic");
    };
    auto* run = app.add_subcommand(
        "run", "Boot a kernel with a synthetic CPU topology and run a command inside; exits "
               "with the command's status");
    add_vm_options(run);
    run->add_option("--timeout", run_options.timeout, "Stop the guest after this long, e.g. 60s")
        ->capture_default_str();
    run->add_flag("-v,--verbose", run_options.verbose, "Show the guest kernel's console");
    run->footer("Usage: ktstr run [OPTIONS] -- CMD [ARGS...]");

    auto* shell = app.add_subcommand(
        "shell", "Boot a kernel with a synthetic CPU topology and give an interactive shell in "
                 "it (busybox sh, or CMD after --). Leave with 'exit', Ctrl-D, or Ctrl-] to "
                 "stop the VM at once");
    add_vm_options(shell);
    shell->add_option("--timeout", run_options.timeout, "Stop the guest after this long");
    shell->footer("Usage: ktstr shell [OPTIONS] [-- CMD [ARGS...]]");

    auto* selfcheck = app.add_subcommand(
        "selfcheck", "Boot a few bytes of guest code in KVM and check its port I/O and halt");

    // Everything after "--" is the command to run, passed on verbatim (CLI11 would read
    // "[a,b]" as a list).
    std::vector<std::string> command;
    int cli_argc = argc;
    for (int i = 1; i < argc; ++i) {
        if (std::string_view(argv[i]) == "--") {
            command.assign(argv + i + 1, argv + argc);
            cli_argc = i;
            break;
        }
    }
    try {
        app.parse(cli_argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "ktstr: " << e.what() << " (see --help)\n";
        return 2;
    }

    try {
        if (!command.empty() && !sandbox->parsed() && !run->parsed() && !shell->parsed())
            throw UsageError("'--' and a command are for 'ktstr run' and 'ktstr sandbox' only");
        if (fetch->parsed()) {
            fetch_debian_kernel(KernelCache(), parse_arch(arch_text), if_missing, std::cout);
            return 0;
        }
        if (list->parsed())
            return list_kernels();
        if (sandbox->parsed()) {
            sandbox_options.arch = parse_arch(arch_text);
            sandbox_options.kernel = kernel_spec;
            sandbox_options.command = command;
            return run_in_sandbox(sandbox_options);
        }
        if (shell->parsed()) {
            run_options.interactive = true;
            if (shell->count("--timeout") == 0)
                run_options.timeout.clear();
            if (command.empty())
                command = {"/bin/busybox", "sh"};
        }
        if (run->parsed() || shell->parsed()) {
            run_options.command = command;
            validate_run_options(run_options);
            if (!host_kvm_runs_guests()) {
                if (std::getenv("KTSTR_IN_SANDBOX"))
                    throw Error("KVM does not work even inside the sandbox");
                // Same command, same arguments, where KVM works.
                SandboxOptions nested;
                nested.command = {fs::read_symlink("/proc/self/exe").string()};
                nested.command.insert(nested.command.end(), argv + 1, argv + argc);
                return run_in_sandbox(nested);
            }
            return run_in_vm(run_options);
        }
        if (selfcheck->parsed())
            return self_check();
    } catch (const UsageError& e) {
        std::cerr << "ktstr: " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "ktstr: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
