#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace ktstr {

std::string read_file(const std::filesystem::path& path);
std::vector<std::uint8_t> read_binary_file(const std::filesystem::path& path);
// Writes to a temporary file beside `path` and renames it over `path`.
void write_file_atomic(const std::filesystem::path& path, std::span<const std::uint8_t> data);
void write_file_atomic(const std::filesystem::path& path, const std::string& text);

// "path:size:mtime": changes when the file does, for keys of caches built from it.
std::string file_stamp(const std::filesystem::path& path);

// Removes the files in `dir` whose names start with `prefix` and that were last modified
// more than `max_age` ago, except `keep`. Caches mark a file as used by touching it.
// Errors (a file another process removed first) are ignored: pruning is best effort.
void prune_stale_files(const std::filesystem::path& dir, const std::string& prefix,
                       std::chrono::hours max_age, const std::filesystem::path& keep = {});

// $XDG_CACHE_HOME/ktstr, or ~/.cache/ktstr.
std::filesystem::path ktstr_cache_dir();

// A fresh directory under `parent` (default: $TMPDIR or /tmp), removed with its contents.
class TempDir {
  public:
    explicit TempDir(const std::string& prefix, const std::filesystem::path& parent = {});
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir();

    const std::filesystem::path& path() const { return path_; }
    // Keeps the directory: the caller has renamed or adopted it.
    void release() { path_.clear(); }

  private:
    std::filesystem::path path_;
};

} // namespace ktstr
