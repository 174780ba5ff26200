#include "ktstr/initramfs/cpio.hpp"

#include "ktstr/base/error.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <utility>

namespace ktstr {
namespace {

std::string normalise(std::string_view path) {
    while (path.starts_with('/'))
        path.remove_prefix(1);
    while (path.ends_with('/'))
        path.remove_suffix(1);
    if (path.empty())
        throw Error("cpio: empty path");
    // The kernel reads names as C strings: it would unpack the entry under a shorter name.
    if (path.find('\0') != std::string_view::npos)
        throw Error("cpio: a path with a NUL byte");
    // The end marker: cpio readers stop at the first entry of that name, the kernel skips it.
    if (path == "TRAILER!!!" || path.starts_with("TRAILER!!!/"))
        throw Error("cpio: TRAILER!!! is the archive's end marker, not a path");
    return std::string(path);
}

void pad_to_4(std::vector<std::uint8_t>& bytes) {
    while (bytes.size() % 4 != 0)
        bytes.push_back(0);
}

} // namespace

void CpioArchive::add_parents(std::string_view path) {
    for (auto slash = path.find('/'); slash != std::string_view::npos;
         slash = path.find('/', slash + 1)) {
        std::string_view parent = path.substr(0, slash);
        if (!directories_.contains(parent)) {
            directories_.emplace(parent);
            append(parent, {S_IFDIR | 0755}, {});
        }
    }
}

void CpioArchive::add_directory(std::string_view path, std::uint32_t permissions) {
    std::string name = normalise(path);
    if (directories_.contains(name))
        return;
    add_parents(name);
    directories_.insert(name);
    append(name, {S_IFDIR | permissions}, {});
}

void CpioArchive::add_file(std::string_view path, std::span<const std::uint8_t> data,
                           std::uint32_t permissions) {
    std::string name = normalise(path);
    add_parents(name);
    append(name, {S_IFREG | permissions}, data);
}

void CpioArchive::add_file(std::string_view path, std::string_view text,
                           std::uint32_t permissions) {
    add_file(path, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()),
             permissions);
}

void CpioArchive::add_symlink(std::string_view path, std::string_view target) {
    std::string name = normalise(path);
    if (target.find('\0') != std::string_view::npos) // read as a C string, like names
        throw Error("cpio: a symlink target with a NUL byte");
    add_parents(name);
    append(name, {S_IFLNK | 0777},
           std::span(reinterpret_cast<const std::uint8_t*>(target.data()), target.size()));
}

void CpioArchive::add_char_device(std::string_view path, std::uint32_t major, std::uint32_t minor,
                                  std::uint32_t permissions) {
    std::string name = normalise(path);
    add_parents(name);
    append(name, {S_IFCHR | permissions, major, minor}, {});
}

void CpioArchive::append(std::string_view path, const Entry& entry,
                         std::span<const std::uint8_t> data) {
    if (data.size() > 0xffffffffu)
        throw Error(fmt::format("cpio: {} is larger than newc's 4 GiB limit", path));
    bool is_dir = (entry.mode & S_IFMT) == S_IFDIR;
    // newc: magic, then 13 eight-digit hex fields; the name and the data are each padded to 4.
    std::string header = fmt::format(
        "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
        next_inode_++, entry.mode, 0, 0, is_dir ? 2 : 1, 0, data.size(), 0, 0, entry.rdev_major,
        entry.rdev_minor, path.size() + 1, 0);
    bytes_.insert(bytes_.end(), header.begin(), header.end());
    bytes_.insert(bytes_.end(), path.begin(), path.end());
    bytes_.push_back(0);
    pad_to_4(bytes_);
    bytes_.insert(bytes_.end(), data.begin(), data.end());
    pad_to_4(bytes_);
}

std::vector<std::uint8_t> CpioArchive::finish() {
    append("TRAILER!!!", {0}, {});
    directories_.clear();
    next_inode_ = 1;
    return std::exchange(bytes_, {});
}

} // namespace ktstr
