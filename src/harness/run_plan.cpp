#include "ktstr/harness/run_plan.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/process.hpp"
#include "ktstr/kernel/debian_kernel.hpp"
#include "ktstr/vmm/platform.hpp"

#include <charconv>
#include <fmt/format.h>
#include <iostream>

namespace fs = std::filesystem;

namespace ktstr {
namespace {

constexpr std::uint64_t kMinMemory = 128ull << 20;
// Far beyond any test, and far from overflowing the clocks.
constexpr std::uint64_t kMaxDurationMs = 365ull * 24 * 3'600'000;

std::pair<std::uint64_t, std::string_view> split_number(std::string_view text, bool& overflow) {
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    overflow = ec == std::errc::result_out_of_range;
    if (ec != std::errc() || end == text.data())
        return {0, {}};
    return {value, text.substr(std::size_t(end - text.data()))};
}

} // namespace

std::uint64_t parse_memory_size(std::string_view text) {
    bool overflow = false;
    auto [value, unit] = split_number(text, overflow);
    if (overflow)
        throw UsageError("memory size '" + std::string(text) + "' is too large");
    std::uint64_t shift = unit == "K" || unit == "k"   ? 10
                          : unit == "M" || unit == "m" ? 20
                          : unit == "G" || unit == "g" ? 30
                                                       : 64;
    if (unit.empty() || shift == 64 || value == 0)
        throw UsageError("memory size '" + std::string(text) + "' is not like 512M or 2G");
    if (value > (1ull << (63 - shift)))
        throw UsageError("memory size '" + std::string(text) + "' is too large");
    std::uint64_t bytes = value << shift;
    if (bytes < kMinMemory)
        throw UsageError(fmt::format("memory size {} is too small: a guest needs at least {} MiB",
                                     text, kMinMemory >> 20));
    if (bytes % (2ull << 20) != 0)
        throw UsageError(fmt::format("memory size {} is not a multiple of 2 MiB", text));
    return bytes;
}

std::chrono::milliseconds parse_duration(std::string_view text) {
    bool overflow = false;
    auto [value, unit] = split_number(text, overflow);
    std::uint64_t ms_per_unit = unit == "ms"                  ? 1
                                : unit == "s" || unit.empty() ? 1000
                                : unit == "m"                 ? 60'000
                                : unit == "h"                 ? 3'600'000
                                                              : 0;
    if (!overflow && (ms_per_unit == 0 || value == 0 || text.empty()))
        throw UsageError("duration '" + std::string(text) + "' is not like 20s, 2m or 500ms");
    if (overflow || value > kMaxDurationMs / std::max<std::uint64_t>(ms_per_unit, 1))
        throw UsageError("duration '" + std::string(text) + "' is too long (at most 365 days)");
    return std::chrono::milliseconds(value * ms_per_unit);
}

RunPlan make_run_plan(const RunOptions& options) {
    if (options.command.empty())
        throw UsageError("no command given (usage: ktstr run [options] -- CMD [ARGS...])");
    const std::string& program = options.command.front();
    if (!options.command_in_guest &&
        (program.find('/') == std::string::npos ? !find_program(program) : !fs::exists(program)))
        throw UsageError("command '" + program + "' is not on this host");
    RunPlan plan;
    plan.options = options;
    plan.topology = Topology::parse(options.topology, host_platform().max_cpus());
    plan.memory_bytes = parse_memory_size(options.memory);
    if (!options.timeout.empty())
        plan.timeout = parse_duration(options.timeout);
    KernelCache cache;
    const Arch arch = host_platform().arch();
    if (!options.kernel && !cache.newest(arch))
        fetch_debian_kernel(cache, arch, true, std::cerr);
    plan.kernel = choose_kernel(options.kernel, arch, cache);
    // A cached kernel with PVH boots its vmlinux: no decompression in the guest. Where the
    // cache is read-only (the sandbox's L1) and it was never unpacked, the bzImage boots.
    if (plan.kernel.cached) {
        try {
            if (auto vmlinux = unpack_pvh_image(*plan.kernel.cached))
                plan.kernel.image = *vmlinux;
        } catch (const Error&) {
        }
    }
    check_kernel_image(plan.kernel.image, arch);
    if (options.scheduler)
        plan.scheduler = choose_scheduler(*options.scheduler, options.scheduler_args, plan.kernel,
                                          SchedulerCache());
    else if (!options.scheduler_args.empty())
        throw UsageError("--sched-arg without --scheduler");
    plan.attach_timeout = parse_duration(options.attach_timeout);
    if (options.json_path) {
        fs::path parent = fs::absolute(*options.json_path).parent_path();
        if (!fs::is_directory(parent))
            throw UsageError("--json " + *options.json_path + ": there is no directory " +
                             parent.string());
    }
    return plan;
}

void validate_run_options(const RunOptions& options) { make_run_plan(options); }

} // namespace ktstr
