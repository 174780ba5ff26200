#include "ktstr/scheduler/scheduler_cache.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/base/process.hpp"
#include "ktstr/kernel/debian_kernel.hpp"
#include "ktstr/scheduler/scheduler_recipe.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sodium.h>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;

namespace ktstr {
namespace {

constexpr const char* kManifest = "schedulers.json";

// Names the recipe (build.sh and the sources of ktstr's schedulers): a change in any of
// them makes a new build.
std::string recipe_hash() {
    crypto_generichash_state state;
    crypto_generichash_init(&state, nullptr, 0, 16);
    for (const auto& file : scheduler_recipe_files()) {
        crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(file.path.data()),
                                  file.path.size());
        crypto_generichash_update(&state, file.data.data(), file.data.size());
    }
    unsigned char hash[16];
    crypto_generichash_final(&state, hash, sizeof hash);
    std::string hex;
    for (unsigned char byte : hash)
        hex += fmt::format("{:02x}", byte);
    return hex;
}

} // namespace

SchedulerCache::SchedulerCache(fs::path root)
    : root_(root.empty() ? ktstr_cache_dir() / "schedulers" : std::move(root)) {}

std::vector<CachedScheduler> SchedulerCache::for_kernel(const std::string& release) const {
    std::vector<CachedScheduler> schedulers;
    fs::path dir = dir_for(release);
    try {
        auto manifest = nlohmann::json::parse(read_file(dir / kManifest));
        for (const auto& entry : manifest.at("schedulers")) {
            CachedScheduler scheduler{entry.at("name"), release, entry.at("source"),
                                      dir / "bin" / entry.at("name").get<std::string>()};
            if (fs::exists(scheduler.path))
                schedulers.push_back(std::move(scheduler));
        }
    } catch (const std::exception&) {
        return {}; // no build, or a damaged one: `scheduler build` replaces it
    }
    std::sort(schedulers.begin(), schedulers.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    return schedulers;
}

std::vector<CachedScheduler> SchedulerCache::list() const {
    std::vector<std::string> releases;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root_, ec))
        if (entry.is_directory() && !entry.path().filename().string().starts_with("."))
            releases.push_back(entry.path().filename().string());
    std::sort(releases.begin(), releases.end());
    std::vector<CachedScheduler> all;
    for (const auto& release : releases)
        for (auto& scheduler : for_kernel(release))
            all.push_back(std::move(scheduler));
    return all;
}

std::string sha256_of_file(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in)
        throw_errno("cannot read " + file.string());
    crypto_hash_sha256_state state;
    crypto_hash_sha256_init(&state);
    std::vector<char> buffer(1 << 16);
    while (in.read(buffer.data(), std::streamsize(buffer.size())) || in.gcount() > 0)
        crypto_hash_sha256_update(&state, reinterpret_cast<const unsigned char*>(buffer.data()),
                                  std::size_t(in.gcount()));
    unsigned char hash[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&state, hash);
    std::string hex;
    for (unsigned char byte : hash)
        hex += fmt::format("{:02x}", byte);
    return hex;
}

namespace {

// Throws UsageError unless `file` is an ELF executable for this host's architecture.
void check_executable(const fs::path& file) {
    std::string what = "--scheduler " + file.string();
    std::error_code ec;
    if (!fs::is_regular_file(file, ec))
        throw UsageError(what + " is not a file");
    std::ifstream in(file, std::ios::binary);
    unsigned char header[20] = {};
    in.read(reinterpret_cast<char*>(header), sizeof header);
    bool elf = in.gcount() == sizeof header && header[0] == 0x7f && header[1] == 'E' &&
               header[2] == 'L' && header[3] == 'F';
    std::uint16_t type = std::uint16_t(header[16] | header[17] << 8);
    std::uint16_t machine = std::uint16_t(header[18] | header[19] << 8);
    if (!elf || (type != 2 && type != 3)) // ET_EXEC or ET_DYN
        throw UsageError(what + " is not an ELF executable");
    std::uint16_t wanted = host_arch() == Arch::x86_64 ? 62 : 183; // EM_X86_64, EM_AARCH64
    if (machine != wanted)
        throw UsageError(fmt::format("{} is built for another architecture (ELF machine {})",
                                     what, machine));
    if (::access(file.c_str(), X_OK) != 0)
        throw UsageError(what + " is not executable");
}

} // namespace

SchedulerChoice choose_scheduler(const std::string& spec, std::vector<std::string> args,
                                 const KernelChoice& kernel, const SchedulerCache& cache) {
    std::string release = kernel.cached ? kernel.cached->release : std::string();
    if (spec.find('/') != std::string::npos) {
        fs::path path = fs::absolute(spec);
        check_executable(path);
        // One from the cache of another kernel would meet BTF it was not built for.
        fs::path canonical = fs::canonical(path);
        auto relative = canonical.lexically_relative(fs::weakly_canonical(cache.root()));
        if (!relative.empty() && !relative.string().starts_with("..") && !release.empty() &&
            relative.begin()->string() != release)
            throw UsageError(fmt::format("--scheduler {} was built for kernel {}, not for {}",
                                         spec, relative.begin()->string(), release));
        return {path.filename().string(), path, std::move(args), "given by path",
                sha256_of_file(path)};
    }
    if (release.empty())
        throw UsageError("--scheduler " + spec +
                         " names a built scheduler, but the kernel is given by path: give the "
                         "scheduler's path instead");
    auto built = cache.for_kernel(release);
    for (const auto& scheduler : built)
        if (scheduler.name == spec)
            return {scheduler.name, scheduler.path, std::move(args),
                    scheduler.source + ", built for " + release, sha256_of_file(scheduler.path)};
    std::vector<std::string> elsewhere;
    for (const auto& scheduler : cache.list())
        if (scheduler.name == spec)
            elsewhere.push_back(scheduler.kernel_release);
    if (!elsewhere.empty())
        throw UsageError(fmt::format("scheduler {} is built for kernel {}, not for {} (run 'ktstr "
                                     "scheduler build --kernel {}')",
                                     spec, fmt::join(elsewhere, ", "), release, release));
    std::vector<std::string> names;
    for (const auto& scheduler : built)
        names.push_back(scheduler.name);
    if (names.empty())
        throw UsageError(fmt::format("no scheduler '{}': none is built for kernel {} (run 'ktstr "
                                     "scheduler build')",
                                     spec, release));
    throw UsageError(fmt::format("no scheduler '{}' for kernel {}; built: {}", spec, release,
                                 fmt::join(names, ", ")));
}

void build_schedulers(const CachedKernel& kernel, const SchedulerCache& cache, bool force,
                      std::ostream& log) {
    if (kernel.arch != host_arch())
        throw UsageError(fmt::format("kernel {} is for {}; schedulers are built for {} only here",
                                     kernel.name(), arch_name(kernel.arch),
                                     arch_name(host_arch())));
    fs::path dir = cache.dir_for(kernel.release);
    std::string recipe = recipe_hash();
    if (!force) {
        try {
            auto manifest = nlohmann::json::parse(read_file(dir / kManifest));
            if (manifest.at("recipe") == recipe && !cache.for_kernel(kernel.release).empty()) {
                log << fmt::format("schedulers for {} already built in {}\n", kernel.release,
                                   dir.string());
                return;
            }
        } catch (const std::exception&) {
        }
    }

    fs::create_directories(cache.root());
    TempDir staging(".build", cache.root());
    fs::path deb = download_kernel_source(kernel, staging.path() / "deb", log);
    fs::path recipe_dir = staging.path() / "recipe";
    for (const auto& file : scheduler_recipe_files()) {
        fs::path path = recipe_dir / file.path;
        fs::create_directories(path.parent_path());
        write_file_atomic(path, file.data);
    }
    fs::permissions(recipe_dir / "build.sh", fs::perms::owner_exec, fs::perm_options::add);
    fs::path out = staging.path() / "out";
    fs::create_directories(out);
    std::string upstream = kernel.package_version.substr(0, kernel.package_version.find('-'));
    SpawnOptions spawn;
    spawn.environment = {{"SOURCE_DEB", deb.string()},
                         {"VMLINUZ", kernel.image().string()},
                         {"RELEASE", kernel.release},
                         {"UPSTREAM", upstream},
                         {"RECIPE_DIR", recipe_dir.string()},
                         {"OUT", out.string()},
                         {"JOBS", std::to_string(std::max(1u, std::thread::hardware_concurrency()))}};
    spawn.redirects = {{STDERR_FILENO, STDOUT_FILENO}};
    log << "building schedulers for " << kernel.release << "\n";
    log.flush();
    ExitStatus status = run_process({"bash", (recipe_dir / "build.sh").string()}, spawn);
    if (!status.ok())
        throw Error(fmt::format("the scheduler build for {} failed (status {})", kernel.release,
                                status.code));

    std::string tools_source = fmt::format("tools/sched_ext of {} {}", deb.filename().string().substr(0, deb.filename().string().find('_')), kernel.package_version);
    nlohmann::json schedulers = nlohmann::json::array();
    for (const auto& entry : fs::directory_iterator(out / "bin")) {
        std::string name = entry.path().filename().string();
        schedulers.push_back({{"name", name},
                              {"source", name == "scx_ktstr" ? "ktstr (schedulers/scx_ktstr)"
                                                             : tools_source}});
    }
    nlohmann::json manifest = {{"kernel_release", kernel.release},
                               {"kernel_package_version", kernel.package_version},
                               {"source_package", deb.filename().string()},
                               {"recipe", recipe},
                               {"schedulers", schedulers}};
    write_file_atomic(out / kManifest, manifest.dump(2) + "\n");
    std::error_code ignored;
    fs::remove_all(dir, ignored);
    fs::rename(out, dir);
    log << fmt::format("built {} schedulers for {} in {}\n", schedulers.size(), kernel.release,
                       dir.string());
}

} // namespace ktstr
