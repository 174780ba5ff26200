#pragma once

#include "ktstr/kernel/kernel_cache.hpp"

#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

namespace ktstr {

// A scheduler binary built for one guest kernel, in <cache>/schedulers/<release>/bin/.
struct CachedScheduler {
    std::string name;           // "scx_simple"
    std::string kernel_release; // "7.3.4+deb13-amd64"
    std::string source;         // where it was built from
    std::filesystem::path path;
};

class SchedulerCache {
  public:
    // Defaults to ktstr_cache_dir()/schedulers.
    explicit SchedulerCache(std::filesystem::path root = {});
    const std::filesystem::path& root() const { return root_; }
    std::filesystem::path dir_for(const std::string& release) const { return root_ / release; }
    // Every scheduler of every kernel, by kernel then name.
    std::vector<CachedScheduler> list() const;
    std::vector<CachedScheduler> for_kernel(const std::string& release) const;

  private:
    std::filesystem::path root_;
};

// The scheduler a run starts: by name from the cache, built for the kernel being booted, or
// a binary given by path (built anywhere, dynamically linked or not).
struct SchedulerChoice {
    std::string name; // "scx_simple", or the file's name for a path
    std::filesystem::path path;
    std::vector<std::string> args;
    std::string source; // where it came from
    std::string sha256;
};

// Resolves --scheduler NAME|PATH for `kernel`; throws UsageError naming what is wrong: a
// file that is not an executable for this architecture, a name that is not built (listing
// the names that are), or a scheduler built for another kernel.
SchedulerChoice choose_scheduler(const std::string& spec, std::vector<std::string> args,
                                 const KernelChoice& kernel, const SchedulerCache& cache);

// The SHA-256 of a file, in hex.
std::string sha256_of_file(const std::filesystem::path& file);

// Builds the example schedulers of the kernel's tools/sched_ext and ktstr's own (scx_ktstr)
// for `kernel`, from its Debian source package and its own BTF, into the cache (published
// in one rename). A build from the same recipe is reused unless `force`.
void build_schedulers(const CachedKernel& kernel, const SchedulerCache& cache, bool force,
                      std::ostream& log);

} // namespace ktstr
