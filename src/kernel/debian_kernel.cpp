#include "ktstr/kernel/debian_kernel.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/base/process.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <ostream>
#include <pwd.h>
#include <regex>
#include <sstream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace ktstr {
namespace {

constexpr const char* kSuite = "trixie-backports";
// The release itself, for packages backports does not carry.
constexpr const char* kRelease = "trixie";
constexpr const char* kKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg";

std::string os_codename() {
    std::istringstream lines(read_file("/etc/os-release"));
    for (std::string line; std::getline(lines, line);)
        if (line.starts_with("VERSION_CODENAME="))
            return line.substr(std::string("VERSION_CODENAME=").size());
    return {};
}

// apt-get/apt-cache options that keep every file apt touches under `dir`.
class PrivateApt {
  public:
    PrivateApt(const fs::path& dir, Arch arch, const char* suite = kSuite) : dir_(dir) {
        fs::create_directories(dir_ / "lists" / "partial");
        fs::create_directories(dir_ / "cache" / "archives" / "partial");
        std::string sources = fmt::format("deb [arch={} signed-by={}] {} {} main\n",
                                          debian_arch(arch), kKeyring, debian_mirror(), suite);
        if (!fs::exists(dir_ / "sources.list") || read_file(dir_ / "sources.list") != sources)
            write_file_atomic(dir_ / "sources.list", sources);
        // An empty dpkg status: what this machine has installed is of no concern here.
        if (!fs::exists(dir_ / "status"))
            write_file_atomic(dir_ / "status", std::string());
        const passwd* user = ::getpwuid(::geteuid());
        options_ = {
            "-o",
            "Dir::Etc::SourceList=" + (dir_ / "sources.list").string(),
            "-o",
            "Dir::Etc::SourceParts=-",
            "-o",
            "Dir::State::Lists=" + (dir_ / "lists").string(),
            "-o",
            "Dir::Cache=" + (dir_ / "cache").string(),
            "-o",
            "Dir::State::status=" + (dir_ / "status").string(),
            "-o",
            "APT::Architecture=" + std::string(debian_arch(arch)),
            "-o",
            "APT::Architectures::=" + std::string(debian_arch(arch)),
            // The private directories belong to us; apt's _apt sandbox user could not write them.
            "-o",
            std::string("APT::Sandbox::User=") + (user ? user->pw_name : "root"),
            "-o",
            "Debug::NoLocking=1",
            "-q",
        };
    }

    std::vector<std::string> command(std::initializer_list<std::string> head,
                                     std::initializer_list<std::string> tail = {}) const {
        std::vector<std::string> argv(head);
        argv.insert(argv.end(), options_.begin(), options_.end());
        argv.insert(argv.end(), tail);
        return argv;
    }

  private:
    fs::path dir_;
    std::vector<std::string> options_;
};

// "Depends: ..., linux-image-7.3.4+deb13-amd64 (= ...), ..." -> "7.3.4+deb13-amd64".
std::string kernel_release_from(const std::string& control, Arch arch) {
    std::regex pattern("linux-image-([0-9][^ ,()]*-" + std::string(debian_arch(arch)) + ")\\b");
    std::smatch match;
    if (!std::regex_search(control, match, pattern))
        throw Error("cannot tell the kernel release from linux-image-" +
                    std::string(debian_arch(arch)) + "'s dependencies");
    return match[1];
}

std::string field(const std::string& control, const std::string& name) {
    std::regex pattern("(^|\\n)" + name + ": ([^\\n]*)");
    std::smatch match;
    return std::regex_search(control, match, pattern) ? std::string(match[2]) : std::string();
}

SpawnOptions quiet_in(std::optional<fs::path> cwd) {
    SpawnOptions options;
    options.cwd = std::move(cwd);
    options.quiet = true;
    return options;
}

} // namespace

std::string debian_mirror() {
    std::string targets =
        capture_output({"apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE)"});
    std::string codename = os_codename();
    std::istringstream lines(targets);
    std::string fallback;
    for (std::string line; std::getline(lines, line);) {
        std::istringstream words(line);
        std::string uri, release;
        words >> uri >> release;
        if (release == codename)
            return uri;
        if (fallback.empty() && release.find("security") == std::string::npos &&
            uri.find("debian") != std::string::npos)
            fallback = uri;
    }
    if (fallback.empty())
        throw Error("apt names no Debian mirror on this machine (apt-get indextargets is empty)");
    return fallback;
}

std::filesystem::path download_kernel_source(const CachedKernel& kernel, const fs::path& dir,
                                             std::ostream& log) {
    // Debian names the source package by major.minor and builds it from the same upload
    // as the kernel: the same package version is exactly this kernel's source.
    std::string upstream = kernel.package_version.substr(0, kernel.package_version.find('-'));
    auto second_dot = upstream.find('.', upstream.find('.') + 1);
    std::string package = "linux-source-" + upstream.substr(0, second_dot);
    PrivateApt apt(KernelCache().root().parent_path() / "apt" / std::string(arch_name(kernel.arch)),
                   kernel.arch);
    log << fmt::format("updating the package list of {} for {}\n", kSuite, package);
    check_run(apt.command({"apt-get"}, {"update"}), quiet_in({}));
    std::string wanted = package + "=" + kernel.package_version;
    log << fmt::format("downloading {} (the source of {})\n", wanted, kernel.release);
    fs::create_directories(dir);
    try {
        check_run(apt.command({"apt-get"}, {"download", wanted}), quiet_in(dir));
    } catch (const Error&) {
        throw Error(fmt::format("{} does not offer {}, the source of kernel {}", kSuite, wanted,
                                kernel.release));
    }
    for (const auto& entry : fs::directory_iterator(dir))
        if (entry.path().filename().string().starts_with(package + "_"))
            return entry.path();
    throw Error("apt-get download of " + wanted + " left no package in " + dir.string());
}

CachedKernel fetch_debian_kernel(const KernelCache& cache, Arch arch, bool if_missing,
                                 std::ostream& log) {
    if (if_missing) {
        if (auto cached = cache.newest(arch)) {
            log << fmt::format("kernel {} already cached in {}\n", cached->name(),
                               cached->dir.string());
            return *cached;
        }
    }
    fs::create_directories(cache.root());
    PrivateApt apt(cache.root().parent_path() / "apt" / std::string(arch_name(arch)), arch);
    log << fmt::format("updating the package list of {} ({})\n", kSuite, debian_arch(arch));
    check_run(apt.command({"apt-get"}, {"update"}), quiet_in({}));

    std::string meta_package = "linux-image-" + std::string(debian_arch(arch));
    std::string control =
        capture_output(apt.command({"apt-cache"}, {"show", "--no-all-versions", meta_package}));
    std::string release = kernel_release_from(field(control, "Depends"), arch);
    std::string package_version = field(control, "Version");
    std::string version = release.substr(0, release.rfind('-'));

    if (auto cached = cache.find(release, arch)) {
        log << fmt::format("kernel {} already cached in {}\n", cached->name(),
                           cached->dir.string());
        return *cached;
    }

    log << fmt::format("downloading {} {} ({})\n", meta_package, package_version, release);
    TempDir staging(".fetch", cache.root());
    fs::path debs = staging.path() / "debs";
    fs::path unpacked = staging.path() / "unpacked";
    fs::create_directories(debs);
    check_run(apt.command({"apt-get"}, {"download", "linux-binary-" + release,
                                        "linux-modules-" + release, "linux-base-" + release}),
              quiet_in(debs));
    for (const auto& deb : fs::directory_iterator(debs))
        check_run({"dpkg-deb", "-x", deb.path().string(), unpacked.string()});

    fs::path tree = unpacked / "usr" / "lib" / "modules" / release;
    if (!fs::exists(tree / "vmlinuz") || !fs::exists(tree / "config"))
        throw Error("the packages of " + release + " hold no vmlinuz or config");
    if (!config_enables(read_file(tree / "config"), "CONFIG_SCHED_CLASS_EXT"))
        throw Error("kernel " + release + " is built without sched_ext (CONFIG_SCHED_CLASS_EXT)");

    CachedKernel kernel{version, release, arch, package_version, cache.root()};
    kernel.dir = cache.root() / kernel.name();
    fs::path entry = staging.path() / "entry";
    fs::create_directories(entry / "lib" / "modules");
    for (const char* file : {"vmlinuz", "config", "System.map"})
        fs::rename(tree / file, entry / file);
    fs::rename(tree, entry / "lib" / "modules" / release);
    check_run({"depmod", "-b", entry.string(), release});

    nlohmann::json meta = {{"version", version},
                           {"release", release},
                           {"arch", arch_name(arch)},
                           {"package", meta_package},
                           {"package_version", package_version},
                           {"suite", kSuite},
                           {"sched_ext", true}};
    write_file_atomic(entry / "kernel.json", meta.dump(2) + "\n");

    // Publish in one rename; a leftover damaged entry (no kernel.json) is replaced.
    std::error_code ignored;
    if (fs::exists(kernel.dir) && !fs::exists(kernel.dir / "kernel.json"))
        fs::remove_all(kernel.dir, ignored);
    fs::rename(entry, kernel.dir);
    log << fmt::format("cached kernel {} in {}\n", kernel.name(), kernel.dir.string());
    return kernel;
}

fs::path fetch_static_busybox(Arch arch, std::ostream& log) {
    fs::path cached = KernelCache().root().parent_path() / "sandbox" /
                      ("busybox-" + std::string(arch_name(arch)));
    if (fs::exists(cached))
        return cached;
    PrivateApt apt(KernelCache().root().parent_path() / "apt" /
                       (std::string(arch_name(arch)) + "-" + kRelease),
                   arch, kRelease);
    log << fmt::format("updating the package list of {} ({})\n", kRelease, debian_arch(arch));
    check_run(apt.command({"apt-get"}, {"update"}), quiet_in({}));
    fs::create_directories(cached.parent_path());
    TempDir staging(".busybox", cached.parent_path());
    check_run(apt.command({"apt-get"}, {"download", "busybox-static"}), quiet_in(staging.path()));
    for (const auto& deb : fs::directory_iterator(staging.path()))
        if (deb.path().extension() == ".deb")
            check_run({"dpkg-deb", "-x", deb.path().string(), (staging.path() / "root").string()});
    fs::path busybox = staging.path() / "root" / "bin" / "busybox";
    if (!fs::exists(busybox))
        busybox = staging.path() / "root" / "usr" / "bin" / "busybox";
    if (!fs::exists(busybox))
        throw Error("the busybox-static package of " + std::string(debian_arch(arch)) +
                    " holds no busybox");
    fs::rename(busybox, cached);
    log << fmt::format("cached busybox for {} in {}\n", arch_name(arch), cached.string());
    return cached;
}

} // namespace ktstr
