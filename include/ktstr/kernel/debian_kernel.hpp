#pragma once

#include "ktstr/kernel/kernel_cache.hpp"

#include <filesystem>
#include <iosfwd>
#include <string>

namespace ktstr {

// The Debian mirror this machine's apt already uses for its own release, read from
// `apt-get indextargets`; throws Error when apt names none.
std::string debian_mirror();

// Downloads Debian's current linux-image-<arch> from trixie-backports through a private apt
// configuration (the machine's own apt state is left alone), unpacks it into the cache
// atomically, and returns it. With `if_missing`, any cached kernel of that arch is enough.
// Throws Error when the kernel lacks sched_ext.
CachedKernel fetch_debian_kernel(const KernelCache& cache, Arch arch, bool if_missing,
                                 std::ostream& log);

// A static busybox for `arch` (Debian's busybox-static from the release), downloaded once
// into the ktstr cache: the userland of an emulated sandbox for another architecture.
std::filesystem::path fetch_static_busybox(Arch arch, std::ostream& log);

// Downloads the Debian source package of a cached kernel (linux-source-<major.minor> at the
// kernel's own package version, from the same suite) into `dir` and returns its path.
std::filesystem::path download_kernel_source(const CachedKernel& kernel,
                                             const std::filesystem::path& dir, std::ostream& log);

} // namespace ktstr
