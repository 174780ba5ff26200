// ktstr: boots kernels with synthetic CPU topologies in KVM to test Linux schedulers.
#include "ktstr/base/arch.hpp"
#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/harness/run.hpp"
#include "ktstr/harness/scenario_test.hpp"
#include "ktstr/kernel/debian_kernel.hpp"
#include "ktstr/kernel/kernel_cache.hpp"
#include "ktstr/sandbox/sandbox.hpp"
#include "ktstr/scenario/catalogue.hpp"
#include "ktstr/scheduler/scheduler_cache.hpp"
#include "ktstr/vmm/platform.hpp"

#include <CLI/CLI.hpp>
#include <csignal>
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

int list_schedulers() {
    SchedulerCache cache;
    auto schedulers = cache.list();
    if (schedulers.empty()) {
        std::cout << "no schedulers built in " << cache.root().string()
                  << " (run 'ktstr scheduler build')\n";
        return 0;
    }
    std::cout << fmt::format("{:<14} {:<20} {:<52} {}\n", "NAME", "KERNEL", "SOURCE", "PATH");
    for (const auto& scheduler : schedulers)
        std::cout << fmt::format("{:<14} {:<20} {:<52} {}\n", scheduler.name,
                                 scheduler.kernel_release, scheduler.source,
                                 scheduler.path.string());
    return 0;
}

int build_schedulers_for(const std::optional<std::string>& kernel_spec, bool force) {
    KernelCache kernels;
    std::optional<CachedKernel> kernel =
        kernel_spec ? kernels.find(*kernel_spec, host_arch()) : kernels.newest(host_arch());
    if (!kernel)
        throw UsageError(kernel_spec ? "no cached kernel '" + *kernel_spec +
                                           "' (ktstr kernel list shows what there is)"
                                     : "no kernel cached (run 'ktstr kernel fetch')");
    build_schedulers(*kernel, SchedulerCache(), force, std::cout);
    return 0;
}

int self_check() {
    KvmProbe probe = host_platform().self_check();
    if (!probe.passed) {
        std::cerr << "ktstr: KVM self-check failed: " << probe.detail << "\n";
        return 1;
    }
    std::cout << fmt::format("KVM self-check: guest exits: {}\n", probe.detail);
    std::cout << "KVM self-check: ok\n";
    return 0;
}

// Where this host's KVM cannot run guests, the same command with the same arguments runs
// again inside the sandbox, where it can.
int rerun_in_sandbox(int argc, char** argv) {
    if (std::getenv(kInSandboxVariable))
        throw Error("KVM does not work even inside the sandbox");
    SandboxOptions nested;
    nested.command = {fs::read_symlink("/proc/self/exe").string()};
    nested.command.insert(nested.command.end(), argv + 1, argv + argc);
    return run_in_sandbox(nested);
}

} // namespace

int main(int argc, char** argv) {
    // A reader that closes our stdout is noticed as a failed write (and stops the run), not
    // a silent death that would leave the guest's verdict unsaid.
    ::signal(SIGPIPE, SIG_IGN);
    CLI::App app{"ktstr: test Linux schedulers in KVM virtual machines with synthetic CPU "
                 "topologies"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "ktstr " KTSTR_VERSION);

    auto* kernel = app.add_subcommand("kernel", "Manage the cache of guest kernels");
    kernel->require_subcommand(1);
    std::string arch_text = std::string(arch_name(host_arch()));
    bool if_missing = false;
    auto* fetch = kernel->add_subcommand(
        "fetch", "Download Debian's current sched_ext kernel (trixie-backports) into the cache");
    fetch->add_option("--arch", arch_text, "x86_64 or arm64")->capture_default_str();
    fetch->add_flag("--if-missing", if_missing, "Do nothing when a kernel of this arch is cached");
    auto* list = kernel->add_subcommand("list", "Show the cached kernels");

    auto* scheduler = app.add_subcommand("scheduler", "Build and list sched_ext schedulers");
    scheduler->require_subcommand(1);
    std::optional<std::string> build_kernel;
    bool force_build = false;
    auto* scheduler_build = scheduler->add_subcommand(
        "build", "Build the kernel's example schedulers (tools/sched_ext) and scx_ktstr for a "
                 "cached kernel, from its own Debian source package; reused when built");
    scheduler_build->add_option("--kernel", build_kernel,
                                "A cached kernel version (default: the newest)");
    scheduler_build->add_flag("--force", force_build, "Build again even if built");
    auto* scheduler_list =
        scheduler->add_subcommand("list", "Show the built schedulers (name, kernel, source)");

    SandboxOptions sandbox_options;
    std::optional<std::string> kernel_spec;
    auto* sandbox = app.add_subcommand(
        "sandbox", "Run a command where /dev/kvm exists: here if the host has it, otherwise "
                   "inside an emulated (QEMU TCG) guest with nested KVM");
    sandbox->add_option("--arch", arch_text, "x86_64 or arm64 (emulated on another host)")
        ->capture_default_str();
    sandbox->add_option("--kernel", kernel_spec,
                        "The L1 guest's kernel: an image path or a cached version");
    sandbox->add_flag("--emulate", sandbox_options.force_emulation,
                      "Use the emulated guest even when this host has /dev/kvm");
    sandbox->footer("Usage: ktstr sandbox [OPTIONS] -- CMD [ARGS...]");

    RunOptions run_options;
    auto add_vm_options = [&](CLI::App* command, const std::string& json_help) {
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
        command->add_option("--scheduler", run_options.scheduler,
                            "A sched_ext scheduler to run under: a built one's name (ktstr "
                            "scheduler list) or a path (default: the kernel's own, EEVDF)");
        command
            ->add_option("--sched-arg", run_options.scheduler_args,
                         "An argument for the scheduler (repeat for more; --sched-arg=-v for "
                         "one that starts with a dash)")
            ->allow_extra_args(false);
        command
            ->add_option("--attach-timeout", run_options.attach_timeout,
                         "How long the scheduler may take to attach")
            ->capture_default_str();
        command->add_option("--json", run_options.json_path, json_help);
    };
    const std::string run_json_help = "Write the run's result (verdict, scheduler, timings) to "
                                      "FILE as JSON (schemas/run-result.schema.json)";
    auto* run = app.add_subcommand(
        "run", "Boot a kernel with a synthetic CPU topology and run a command inside; exits "
               "with the command's status");
    add_vm_options(run, run_json_help);
    run->add_option("--timeout", run_options.timeout, "Stop the guest after this long, e.g. 60s")
        ->capture_default_str();
    run->add_flag("-v,--verbose", run_options.verbose, "Show the guest kernel's console");
    run->footer("Usage: ktstr run [OPTIONS] -- CMD [ARGS...]");

    auto* shell = app.add_subcommand(
        "shell", "Boot a kernel with a synthetic CPU topology and give an interactive shell in "
                 "it (busybox sh, or CMD after --). Leave with 'exit', Ctrl-D, or Ctrl-] to "
                 "stop the VM at once");
    add_vm_options(shell, run_json_help);
    shell->add_option("--timeout", run_options.timeout, "Stop the guest after this long");
    shell->footer("Usage: ktstr shell [OPTIONS] [-- CMD [ARGS...]]");

    TestOptions test_options;
    auto* test = app.add_subcommand(
        "test", "Run scenarios (cgroups, cpusets, workers doing given kinds of work, changes over "
                "time) in a VM each, under a scheduler, and judge them with checks; exits 0 when "
                "all passed, 1 when a check failed, or the verdict's status");
    add_vm_options(test, "Write each scenario's result (reports, checks, verdict) as JSON "
                         "(schemas/test-result.schema.json): to FILE for one scenario, into a "
                         "directory for several");
    test->add_option("--scenario", test_options.scenarios,
                     "A canned scenario's name (ktstr scenario list) or a scenario file; repeat "
                     "for more")
        ->required();
    test->add_option("--duration", test_options.duration, "Instead of each scenario's own");
    test->add_option("--timeout", run_options.timeout,
                     "Stop a guest after this long (default: its duration and 180 s)");
    test->add_option("--junit", test_options.junit, "Write a JUnit XML file of all scenarios");
    test->add_option("--set", test_options.settings,
                     "A check setting, NAME=VALUE (null turns a check off); repeat for more");
    test->add_option("--seed", test_options.seed, "For random affinities")->capture_default_str();
    test->add_flag("--baseline", test_options.baseline,
                   "With --scheduler: run each scenario under the kernel's own scheduler first "
                   "and judge wake-up latencies against that run");
    test->add_flag("-v,--verbose", run_options.verbose, "Show the guest kernel's console");

    auto* check =
        app.add_subcommand("check", "Judge a stored test result again, with other check settings");
    std::string check_path;
    std::vector<std::string> check_settings;
    check->add_option("RESULT", check_path, "A JSON file from ktstr test --json")->required();
    check->add_option("--set", check_settings, "NAME=VALUE; repeat for more");
    std::optional<std::string> check_json;
    check->add_option("--json", check_json, "Write the result, judged anew, to this file");

    auto* scenario = app.add_subcommand("scenario", "Show the canned scenarios");
    scenario->require_subcommand(1);
    auto* scenario_list = scenario->add_subcommand("list", "Name, group and what each is about");
    std::string scenario_name;
    auto* scenario_show = scenario->add_subcommand("show", "A scenario as JSON");
    scenario_show->add_option("NAME", scenario_name, "A canned scenario")->required();

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
        // What killed ktstr processes left behind (their children died with them).
        for (const fs::path& dir :
             {temp_dir(), ktstr_cache_dir() / "kernels", ktstr_cache_dir() / "initramfs",
              ktstr_cache_dir() / "sandbox", ktstr_cache_dir() / "schedulers"})
            prune_orphaned_temp_dirs(dir);
        if (!command.empty() && !sandbox->parsed() && !run->parsed() && !shell->parsed())
            throw UsageError("'--' and a command are for 'ktstr run' and 'ktstr sandbox' only");
        if (fetch->parsed()) {
            // The PVH vmlinux too, here on the host rather than on a sandbox's first boot.
            unpack_pvh_image(
                fetch_debian_kernel(KernelCache(), parse_arch(arch_text), if_missing, std::cout));
            return 0;
        }
        if (list->parsed())
            return list_kernels();
        if (scheduler_build->parsed())
            return build_schedulers_for(build_kernel, force_build);
        if (scheduler_list->parsed())
            return list_schedulers();
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
            if (!host_kvm_runs_guests())
                return rerun_in_sandbox(argc, argv);
            return run_in_vm(run_options);
        }
        if (scenario_list->parsed()) {
            for (const auto& entry : catalogue())
                std::cout << fmt::format("{:<28} {:<12} {}\n", entry.name, entry.group,
                                         entry.description);
            return 0;
        }
        if (scenario_show->parsed()) {
            std::cout << scenario_to_json(find_scenario(scenario_name)).dump(2) << "\n";
            return 0;
        }
        if (check->parsed())
            return check_result(check_path, check_settings, check_json);
        if (test->parsed()) {
            test_options.run = run_options;
            test_options.json = run_options.json_path;
            if (test->count("--timeout") == 0)
                test_options.run.timeout = RunOptions().timeout;
            // Everything is checked here, before the sandbox or a boot.
            run_tests_dry(test_options);
            if (!host_kvm_runs_guests())
                return rerun_in_sandbox(argc, argv);
            return run_tests(test_options);
        }
        if (selfcheck->parsed())
            return self_check();
    } catch (const UsageError& e) {
        std::cerr << "ktstr: " << e.what() << "\n";
        return 2;
    } catch (const SandboxFailure& e) {
        std::cerr << "ktstr: " << e.what() << " (a failure of the emulated sandbox, status "
                  << kSandboxFailureStatus << ")\n";
        return kSandboxFailureStatus;
    } catch (const std::exception& e) {
        std::cerr << "ktstr: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
