// CpioArchive round trip: ktstr only writes newc archives (the initramfs), from paths that come
// from the host (--include files, library paths an ELF file names, module paths). The input
// picks entries: directories, files (sizes up to 64 KiB), symlinks and character devices, at
// paths that are odd on purpose (leading, trailing and doubled slashes, dots, empty ones, any
// byte); an archive may be finished and the builder reused. Each archive is read back by the
// small, independent newc reader below and compared with a model of what the builder was
// asked for (missing parents first, each directory once).
// Checked: the magic, that every field is eight hex digits, 4-byte alignment of headers,
// names and data, zero padding, names NUL-terminated with namesize counting the NUL, no NUL
// inside a name or a symlink target (the kernel reads both as C strings, so it would unpack
// something else than the caller named), type and permission bits, nlink, device numbers,
// sizes and data, inode numbers 1, 2, 3..., TRAILER!!! last and nothing after it, and that no
// entry before it is named TRAILER!!! (the kernel would stop there). Paths that normalise to
// nothing, paths or symlink targets with a NUL byte, and paths whose first component is
// TRAILER!!! must be refused with an Error.
#include "ktstr/initramfs/cpio.hpp"

#include "fuzz_target.hpp"
#include "ktstr/base/error.hpp"

#include <algorithm>
#include <iterator>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <vector>

namespace ktstr_fuzz_cpio {

using namespace ktstr;
using ktstr::fuzz::Input;

constexpr std::size_t kMaxOperations = 256;

struct Entry {
    std::string name;
    std::uint32_t mode = 0;
    std::uint32_t nlink = 1;
    std::uint32_t major = 0, minor = 0;
    std::vector<std::uint8_t> data;
    bool operator==(const Entry&) const = default;
};

// An independent newc reader: everything it finds, or a violated check.
class Reader {
  public:
    explicit Reader(const std::vector<std::uint8_t>& bytes) : bytes_(bytes) {}

    std::vector<Entry> read_all() {
        std::vector<Entry> entries;
        std::uint32_t expected_inode = 1;
        for (;;) {
            KTSTR_FUZZ_CHECK(at_ % 4 == 0);
            KTSTR_FUZZ_CHECK(bytes_.size() - at_ >= 110);
            KTSTR_FUZZ_CHECK(std::string_view(chars(at_), 6) == "070701");
            std::uint32_t fields[13];
            for (int i = 0; i < 13; ++i)
                fields[i] = hex(at_ + 6 + 8 * std::size_t(i));
            at_ += 110;
            Entry e;
            std::uint32_t inode = fields[0];
            e.mode = fields[1];
            KTSTR_FUZZ_CHECK(fields[2] == 0 && fields[3] == 0); // uid, gid
            e.nlink = fields[4];
            KTSTR_FUZZ_CHECK(fields[5] == 0); // mtime
            std::uint32_t file_size = fields[6];
            KTSTR_FUZZ_CHECK(fields[7] == 0 && fields[8] == 0); // devmajor, devminor
            e.major = fields[9];
            e.minor = fields[10];
            std::uint32_t name_size = fields[11];
            KTSTR_FUZZ_CHECK(fields[12] == 0); // check
            KTSTR_FUZZ_CHECK(name_size >= 2);  // at least one character and the NUL
            KTSTR_FUZZ_CHECK(bytes_.size() - at_ >= name_size);
            e.name.assign(chars(at_), name_size - 1);
            KTSTR_FUZZ_CHECK(bytes_[at_ + name_size - 1] == 0);
            KTSTR_FUZZ_CHECK(e.name.find('\0') == std::string::npos);
            at_ += name_size;
            padding();
            KTSTR_FUZZ_CHECK(bytes_.size() - at_ >= file_size);
            e.data.assign(bytes_.begin() + std::ptrdiff_t(at_),
                          bytes_.begin() + std::ptrdiff_t(at_ + file_size));
            at_ += file_size;
            padding();
            if (e.name == "TRAILER!!!") {
                KTSTR_FUZZ_CHECK(e.mode == 0 && file_size == 0);
                KTSTR_FUZZ_CHECK(at_ == bytes_.size()); // nothing after the trailer
                return entries;
            }
            KTSTR_FUZZ_CHECK(inode == expected_inode++);
            entries.push_back(std::move(e));
        }
    }

  private:
    const char* chars(std::size_t at) const {
        return reinterpret_cast<const char*>(bytes_.data() + at);
    }
    std::uint32_t hex(std::size_t at) const {
        std::uint32_t value = 0;
        for (std::size_t i = 0; i < 8; ++i) {
            char c = chars(at)[i];
            int digit = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                               : -1;
            KTSTR_FUZZ_CHECK(digit >= 0);
            value = value << 4 | std::uint32_t(digit);
        }
        return value;
    }
    void padding() {
        while (at_ % 4 != 0) {
            KTSTR_FUZZ_CHECK(at_ < bytes_.size());
            KTSTR_FUZZ_CHECK(bytes_[at_] == 0);
            ++at_;
        }
    }

    const std::vector<std::uint8_t>& bytes_;
    std::size_t at_ = 0;
};

// What the archive should hold: the model of CpioArchive's contract.
struct Model {
    std::vector<Entry> entries;
    std::set<std::string> directories;

    // The path the builder stores, or none when it must refuse it: empty once the slashes
    // at either end are gone, or holding a NUL byte.
    static std::optional<std::string> normalised(std::string_view path) {
        if (path.find('\0') != std::string_view::npos)
            return std::nullopt;
        std::size_t first = path.find_first_not_of('/');
        if (first == std::string_view::npos)
            return std::nullopt;
        std::size_t last = path.find_last_not_of('/');
        std::string name(path.substr(first, last - first + 1));
        // Nor may an entry or a parent be the end marker.
        if (name.substr(0, name.find('/')) == "TRAILER!!!")
            return std::nullopt;
        return name;
    }
    void parents(const std::string& path) {
        for (std::size_t i = 0; i < path.size(); ++i)
            if (path[i] == '/' && directories.insert(path.substr(0, i)).second)
                entries.push_back({path.substr(0, i), S_IFDIR | 0755, 2, 0, 0, {}});
    }
};

// Path characters: mostly ones that make paths odd, sometimes any byte.
std::string path(Input& in) {
    static constexpr char kAlphabet[] = {'a', 'b', '/', '/', '.', '.', 'x', '-', ' ', '\n'};
    // Names that mean something to cpio readers or to the init.
    static constexpr const char* kSpecial[] = {
        "TRAILER!!!", ".",    "..",   "/",           "//",
        "./a",        "a/..", "init", "dev/console", "ktstr/channel-key"};
    std::size_t length = in.u8();
    if (length >= 0xf0)
        return kSpecial[(length - 0xf0) % std::size(kSpecial)];
    length %= 24;
    bool any_byte = in.u8() % 8 == 0;
    std::string p;
    for (std::size_t i = 0; i < length; ++i) {
        std::uint8_t c = in.u8();
        p.push_back(any_byte ? char(c) : kAlphabet[c % sizeof kAlphabet]);
    }
    return p;
}

void finish_and_check(CpioArchive& cpio, Model& model) {
    std::vector<std::uint8_t> bytes = cpio.finish();
    KTSTR_FUZZ_CHECK(bytes.size() % 4 == 0);
    std::vector<Entry> found = Reader(bytes).read_all();
    KTSTR_FUZZ_CHECK(found.size() == model.entries.size());
    for (std::size_t i = 0; i < found.size(); ++i)
        KTSTR_FUZZ_CHECK(found[i] == model.entries[i]);
    for (const auto& e : found) // what the kernel would read as the symlink's target
        if ((e.mode & S_IFMT) == S_IFLNK)
            KTSTR_FUZZ_CHECK(std::find(e.data.begin(), e.data.end(), 0) == e.data.end());
    model = Model();
}

void run(Input& in) {
    CpioArchive cpio;
    Model model;
    for (std::size_t op = 0; op < kMaxOperations && !in.empty(); ++op) {
        std::uint8_t code = in.u8();
        std::string p = path(in);
        auto name = Model::normalised(p);
        // Permissions as callers pass them: the bits below the file type.
        std::uint32_t permissions = in.u16() & 07777;
        std::size_t entries_before = model.entries.size();
        try {
            switch (code % 6) {
            case 0: // directory
                cpio.add_directory(p, permissions);
                if (name && !model.directories.contains(*name)) {
                    model.parents(*name);
                    model.directories.insert(*name);
                    model.entries.push_back({*name, S_IFDIR | permissions, 2, 0, 0, {}});
                }
                break;
            case 1:
            case 2: { // file
                std::size_t size = in.u8();
                std::vector<std::uint8_t> data;
                if (code & 0x80) // big: repetition of a byte up to 64 KiB
                    data.assign(size * 256 + in.u8(), in.u8());
                else {
                    auto bytes = in.bytes(size);
                    data.assign(bytes.begin(), bytes.end());
                }
                cpio.add_file(p, data, permissions);
                if (name) {
                    model.parents(*name);
                    model.entries.push_back({*name, S_IFREG | permissions, 1, 0, 0, data});
                }
                break;
            }
            case 3: { // symlink
                std::string target = path(in);
                if (target.find('\0') != std::string::npos)
                    name.reset(); // refused like a bad path
                cpio.add_symlink(p, target);
                if (name) {
                    model.parents(*name);
                    model.entries.push_back(
                        {*name, S_IFLNK | 0777, 1, 0, 0,
                         std::vector<std::uint8_t>(target.begin(), target.end())});
                }
                break;
            }
            case 4: { // character device
                std::uint32_t major = in.u32(), minor = in.u32();
                cpio.add_char_device(p, major, minor, permissions);
                if (name) {
                    model.parents(*name);
                    model.entries.push_back({*name, S_IFCHR | permissions, 1, major, minor, {}});
                }
                break;
            }
            case 5: finish_and_check(cpio, model); continue;
            }
            // Accepted: the path must have been one.
            KTSTR_FUZZ_CHECK(name.has_value());
        } catch (const Error&) {
            // Refused: only a path that is empty once normalised, holds a NUL or starts with
            // TRAILER!!! (or a symlink target with a NUL), and before anything of it went into
            // the archive.
            KTSTR_FUZZ_CHECK(!name.has_value());
            KTSTR_FUZZ_CHECK(model.entries.size() == entries_before);
        }
    }
    finish_and_check(cpio, model);
}

} // namespace ktstr_fuzz_cpio

KTSTR_FUZZ_TARGET(cpio) {
    ktstr::fuzz::Input in(data, size);
    ktstr_fuzz_cpio::run(in);
    return 0;
}
