#pragma once

#include "ktstr/base/arch.hpp"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ktstr {

// One kernel in the cache: <cache>/kernels/<version>-<arch>/ holding vmlinuz, config,
// System.map, kernel.json and lib/modules/<release>/ (with modules.dep), and on x86-64 with
// CONFIG_PVH the vmlinux unpacked from vmlinuz once (what VMs boot).
struct CachedKernel {
    std::string version; // "7.3.4+deb13"
    std::string release; // uname -r: "7.3.4+deb13-amd64"
    Arch arch = Arch::x86_64;
    std::string package_version; // Debian's: "7.3.4-1~bpo13+1"
    std::filesystem::path dir;

    std::filesystem::path image() const { return dir / "vmlinuz"; }
    std::filesystem::path pvh_image() const { return dir / "vmlinux"; }
    std::filesystem::path config() const { return dir / "config"; }
    std::filesystem::path modules_dir() const { return dir / "lib" / "modules" / release; }
    std::string name() const; // "<version>-<arch>", the directory's name
};

class KernelCache {
  public:
    // Defaults to ktstr_cache_dir()/kernels.
    explicit KernelCache(std::filesystem::path root = {});

    const std::filesystem::path& root() const { return root_; }
    // Every complete entry, newest version first.
    std::vector<CachedKernel> list() const;
    std::optional<CachedKernel> newest(Arch arch) const;
    // By version ("7.3.4+deb13"), release ("7.3.4+deb13-amd64") or name ("7.3.4+deb13-x86_64").
    std::optional<CachedKernel> find(const std::string& spec, Arch arch) const;

  private:
    std::filesystem::path root_;
};

enum class KernelImageFormat { bzimage, x86_64_elf, arm64_image };

// Reads the image's header; throws UsageError naming the file when it is not a kernel
// image for `arch`.
KernelImageFormat check_kernel_image(const std::filesystem::path& image, Arch arch);

// Whether a kernel config file sets `option` (CONFIG_SCHED_CLASS_EXT, say) to y.
bool config_enables(const std::string& config_text, std::string_view option);

// The uncompressed vmlinux of an x86-64 cached kernel built with CONFIG_PVH, unpacked from
// vmlinuz on first use; none for other kernels. `--kernel` given its path boots it through
// PVH (not the default: see README, "PVH entry").
std::optional<std::filesystem::path> unpack_pvh_image(const CachedKernel& kernel);

// The kernel a command runs: --kernel PATH (an image file), --kernel VERSION (cached),
// or the newest cached one. `cached` is set when the kernel came from the cache.
struct KernelChoice {
    std::filesystem::path image;
    std::optional<CachedKernel> cached;
};
KernelChoice choose_kernel(const std::optional<std::string>& spec, Arch arch,
                           const KernelCache& cache);

} // namespace ktstr
