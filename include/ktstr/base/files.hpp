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

// Removes what ktstr processes that no longer run left in `dir`: temporary directories
// (TempDir) whose process of this boot has ended, or that another kernel's process left
// more than a day ago (the sandbox's guest shares the host's /tmp), and files that
// write_file_atomic did not finish. Best effort, like prune_stale_files.
void prune_orphaned_temp_dirs(const std::filesystem::path& dir);

// $XDG_CACHE_HOME/ktstr, or ~/.cache/ktstr.
std::filesystem::path ktstr_cache_dir();

// $TMPDIR, or /tmp.
std::filesystem::path temp_dir();

// A fresh directory under `parent` (default: temp_dir()), removed with its contents. Its
// name carries this process's boot and PID ("<prefix>.<boot>-<pid>.XXXXXX"), so that one
// left by a killed ktstr is recognised and pruned by the next (prune_orphaned_temp_dirs).
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
