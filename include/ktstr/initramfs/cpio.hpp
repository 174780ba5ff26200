#pragma once

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ktstr {

// Builds a cpio archive in the "newc" format the kernel unpacks as an initramfs.
// Missing parent directories are added on the way; paths are relative ("bin/busybox").
// The kernel reads names and link targets as C strings and skips "TRAILER!!!": paths or
// targets with a NUL byte, and that name, are refused (Error).
class CpioArchive {
  public:
    void add_directory(std::string_view path, std::uint32_t permissions = 0755);
    void add_file(std::string_view path, std::span<const std::uint8_t> data,
                  std::uint32_t permissions = 0644);
    void add_file(std::string_view path, std::string_view text, std::uint32_t permissions = 0644);
    void add_symlink(std::string_view path, std::string_view target);
    void add_char_device(std::string_view path, std::uint32_t major, std::uint32_t minor,
                         std::uint32_t permissions = 0600);

    // Appends the trailer and hands over the archive; the builder is left empty.
    std::vector<std::uint8_t> finish();

  private:
    struct Entry {
        std::uint32_t mode;
        std::uint32_t rdev_major = 0;
        std::uint32_t rdev_minor = 0;
    };
    void add_parents(std::string_view path);
    void append(std::string_view path, const Entry& entry, std::span<const std::uint8_t> data);

    std::vector<std::uint8_t> bytes_;
    std::set<std::string, std::less<>> directories_;
    std::uint32_t next_inode_ = 1;
};

} // namespace ktstr
