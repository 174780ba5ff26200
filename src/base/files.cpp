#include "ktstr/base/files.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/fd.hpp"

#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <optional>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace ktstr {

namespace {

// The whole file, read straight into one buffer: sized once for a regular file (its
// size, and one byte more to see the end), grown for files that tell no size (/proc).
template <typename Bytes>
Bytes read_whole(const fs::path& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        throw_errno("cannot read " + path.string());
    struct stat status {};
    bool sized = ::fstat(fd.get(), &status) == 0 && S_ISREG(status.st_mode);
    Bytes bytes(sized ? std::size_t(status.st_size) + 1 : 4096, 0);
    std::size_t used = 0;
    for (;;) {
        if (used == bytes.size())
            bytes.resize(bytes.size() * 2);
        ssize_t n = ::read(fd.get(), bytes.data() + used, bytes.size() - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw_errno("cannot read " + path.string());
        if (n == 0)
            break;
        used += std::size_t(n);
    }
    bytes.resize(used);
    return bytes;
}

} // namespace

std::string read_file(const fs::path& path) { return read_whole<std::string>(path); }

std::vector<std::uint8_t> read_binary_file(const fs::path& path) {
    return read_whole<std::vector<std::uint8_t>>(path);
}

namespace {

// Who made a temporary file or directory: this kernel boot and this process.
std::string owner_tag() {
    static const std::string tag = [] {
        std::string boot;
        try {
            boot = read_file("/proc/sys/kernel/random/boot_id").substr(0, 8);
        } catch (const Error&) {
            boot = "noboot00";
        }
        return boot + "-" + std::to_string(::getpid());
    }();
    return tag;
}

// "<boot>-<pid>" out of a name "<anything>.<boot>-<pid>.<suffix>", if it has that shape.
std::optional<std::pair<std::string, pid_t>> parse_owner(const std::string& name) {
    auto last = name.rfind('.');
    if (last == std::string::npos || last == 0)
        return std::nullopt;
    auto first = name.rfind('.', last - 1);
    if (first == std::string::npos)
        return std::nullopt;
    std::string owner = name.substr(first + 1, last - first - 1);
    auto dash = owner.find('-');
    if (dash != 8 || owner.size() < 10)
        return std::nullopt;
    std::string pid_text = owner.substr(dash + 1);
    if (pid_text.find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
    return std::pair{owner.substr(0, dash), pid_t(std::stol(pid_text))};
}

} // namespace

void write_file_atomic(const fs::path& path, std::span<const std::uint8_t> data) {
    fs::path tmp = path;
    tmp += ".tmp." + owner_tag() + ".part";
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd)
        throw_errno("cannot create " + tmp.string());
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
        if (n < 0) {
            int err = errno;
            ::unlink(tmp.c_str());
            throw_errno("cannot write " + tmp.string(), err);
        }
        done += static_cast<std::size_t>(n);
    }
    fd.reset();
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        throw_errno("cannot rename " + tmp.string() + " to " + path.string(), err);
    }
}

void write_file_atomic(const fs::path& path, const std::string& text) {
    write_file_atomic(path,
                      std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

std::string file_stamp(const fs::path& path) {
    return path.string() + ":" + std::to_string(fs::file_size(path)) + ":" +
           std::to_string(fs::last_write_time(path).time_since_epoch().count());
}

void prune_stale_files(const fs::path& dir, const std::string& prefix, std::chrono::hours max_age,
                       const fs::path& keep) {
    auto cutoff = fs::file_time_type::clock::now() - max_age;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const fs::directory_entry& entry = *it;
        std::error_code entry_ec;
        bool stale = entry.path() != keep && entry.path().filename().string().starts_with(prefix) &&
                     entry.is_regular_file(entry_ec) && entry.last_write_time(entry_ec) < cutoff;
        if (stale && !entry_ec)
            fs::remove(entry.path(), entry_ec);
    }
}

void prune_orphaned_temp_dirs(const fs::path& dir) {
    std::string my_boot = owner_tag().substr(0, 8);
    auto day_ago = fs::file_time_type::clock::now() - std::chrono::hours(24);
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::string name = it->path().filename().string();
        auto owner = parse_owner(name);
        if (!owner)
            continue;
        auto [boot, pid] = *owner;
        std::error_code entry_ec;
        bool orphaned = boot == my_boot ? ::kill(pid, 0) != 0 && errno == ESRCH
                                        : it->last_write_time(entry_ec) < day_ago && !entry_ec;
        if (orphaned)
            fs::remove_all(it->path(), entry_ec);
    }
}

fs::path temp_dir() {
    const char* tmpdir = std::getenv("TMPDIR");
    return tmpdir && *tmpdir ? tmpdir : "/tmp";
}

fs::path ktstr_cache_dir() {
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
        return fs::path(xdg) / "ktstr";
    const char* home = std::getenv("HOME");
    if (!home || !*home)
        throw Error("neither XDG_CACHE_HOME nor HOME is set: no place for the ktstr cache");
    return fs::path(home) / ".cache" / "ktstr";
}

TempDir::TempDir(const std::string& prefix, const fs::path& parent) {
    fs::path base = parent.empty() ? temp_dir() : parent;
    fs::create_directories(base);
    std::string pattern = (base / (prefix + "." + owner_tag() + ".XXXXXX")).string();
    if (!::mkdtemp(pattern.data()))
        throw_errno("cannot create a temporary directory in " + base.string());
    path_ = pattern;
}

TempDir::~TempDir() {
    if (!path_.empty()) {
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }
}

} // namespace ktstr
