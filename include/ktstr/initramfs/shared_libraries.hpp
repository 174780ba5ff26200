#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ktstr {

// What the dynamic loader reads from an ELF file before running it.
struct ElfDependencies {
    bool dynamic = false;
    std::optional<std::string> interpreter; // PT_INTERP
    std::vector<std::string> needed;        // DT_NEEDED, in order
    std::vector<std::string> rpath;         // DT_RPATH, split at ':'
    std::vector<std::string> runpath;       // DT_RUNPATH, split at ':'
};

// Throws Error when `file` is not an ELF file.
ElfDependencies read_elf_dependencies(const std::filesystem::path& file);

// The ld.so cache's entries with these flags (glibc's type and architecture bits), soname
// to path, the first of each name winning as in ld.so; nothing from a file that is not a
// cache. Every offset is checked against the file.
std::map<std::string, std::filesystem::path> read_ld_so_cache(std::span<const std::uint8_t> file,
                                                              std::int32_t flags);

// Resolves library names the way ld.so does on this host: DT_RPATH (only without
// DT_RUNPATH), DT_RUNPATH, the ld.so cache (read from the file, as ld.so does, not through
// `ldconfig -p`), then the default directories; $ORIGIN expands to the directory of the
// object that asks.
class LibraryResolver {
  public:
    explicit LibraryResolver(const std::filesystem::path& ld_so_cache = "/etc/ld.so.cache");

    // The program, its interpreter and every library it needs, transitively: each as the
    // path ld.so would open, first use first. Throws Error naming a library not found.
    std::vector<std::filesystem::path> closure(const std::filesystem::path& program) const;

  private:
    std::optional<std::filesystem::path> find(const std::string& name,
                                              const ElfDependencies& requester,
                                              const std::filesystem::path& origin) const;

    std::map<std::string, std::filesystem::path> cache_; // soname -> path
};

} // namespace ktstr
