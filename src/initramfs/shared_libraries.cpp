#include "ktstr/initramfs/shared_libraries.hpp"

#include "ktstr/base/arch.hpp"
#include "ktstr/base/error.hpp"
#include "ktstr/base/fd.hpp"
#include "ktstr/base/files.hpp"

#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace ktstr {
namespace {

std::vector<std::string> split_path_list(const std::string& list) {
    std::vector<std::string> dirs;
    std::istringstream in(list);
    for (std::string dir; std::getline(in, dir, ':');)
        if (!dir.empty())
            dirs.push_back(dir);
    return dirs;
}

std::string expand_origin(std::string dir, const fs::path& origin) {
    for (const char* token : {"${ORIGIN}", "$ORIGIN"})
        for (auto at = dir.find(token); at != std::string::npos; at = dir.find(token))
            dir.replace(at, std::string(token).size(), origin.string());
    return dir;
}

// How this host's ld.so names its own libraries: the flags of their ld.so cache entries
// (glibc's FLAG_ELF_LIBC6 with FLAG_X8664_LIB64 or FLAG_AARCH64_LIB64), and the multiarch
// triplet of its default directories.
struct HostLibraryNames {
    std::int32_t cache_flags;
    const char* triplet;
};
HostLibraryNames host_library_names() {
    return host_arch() == Arch::x86_64 ? HostLibraryNames{0x0303, "x86_64-linux-gnu"}
                                       : HostLibraryNames{0x0a03, "aarch64-linux-gnu"};
}

std::vector<std::string> default_dirs() {
    const std::string triplet = host_library_names().triplet;
    return {"/lib/" + triplet, "/usr/lib/" + triplet, "/lib64", "/usr/lib64", "/lib", "/usr/lib"};
}

} // namespace

ElfDependencies read_elf_dependencies(const fs::path& file) {
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        throw_errno("cannot open " + file.string());
    if (elf_version(EV_CURRENT) == EV_NONE)
        throw Error("libelf is out of date");
    Elf* elf = elf_begin(fd.get(), ELF_C_READ, nullptr);
    if (!elf || elf_kind(elf) != ELF_K_ELF) {
        if (elf)
            elf_end(elf);
        throw Error(file.string() + " is not an ELF file");
    }
    ElfDependencies deps;
    std::size_t headers = 0;
    elf_getphdrnum(elf, &headers);
    for (std::size_t i = 0; i < headers; ++i) {
        GElf_Phdr phdr;
        // A table that does not load fails for every index: stop, rather than try each of
        // the up to 2^32 a hostile header can claim (PN_XNUM takes the count from section 0).
        if (!gelf_getphdr(elf, int(i), &phdr))
            break;
        if (phdr.p_type != PT_INTERP)
            continue;
        std::size_t size = 0;
        const char* image = elf_rawfile(elf, &size);
        if (image && phdr.p_offset < size && phdr.p_filesz <= size - phdr.p_offset)
            deps.interpreter =
                std::string(image + phdr.p_offset, ::strnlen(image + phdr.p_offset, phdr.p_filesz));
    }
    for (Elf_Scn* section = elf_nextscn(elf, nullptr); section;
         section = elf_nextscn(elf, section)) {
        GElf_Shdr shdr;
        if (!gelf_getshdr(section, &shdr) || shdr.sh_type != SHT_DYNAMIC)
            continue;
        deps.dynamic = true;
        Elf_Data* data = elf_getdata(section, nullptr);
        for (std::size_t i = 0; data && shdr.sh_entsize && i < shdr.sh_size / shdr.sh_entsize;
             ++i) {
            GElf_Dyn dyn;
            if (!gelf_getdyn(data, int(i), &dyn))
                break;
            auto text = [&] {
                const char* s = elf_strptr(elf, shdr.sh_link, dyn.d_un.d_val);
                return std::string(s ? s : "");
            };
            if (dyn.d_tag == DT_NEEDED)
                deps.needed.push_back(text());
            else if (dyn.d_tag == DT_RPATH)
                deps.rpath = split_path_list(text());
            else if (dyn.d_tag == DT_RUNPATH)
                deps.runpath = split_path_list(text());
        }
    }
    elf_end(elf);
    return deps;
}

std::map<std::string, fs::path> read_ld_so_cache(std::span<const std::uint8_t> file,
                                                 std::int32_t flags) {
    // glibc's cache (elf/cache.c, dl-cache.h): the header "glibc-ld.so.cache1.1" with the
    // entry count at 20 and 24-byte entries from 48 (flags, then the name's and the path's
    // offsets from the header, all 32-bit, in the host's byte order); an old-format cache
    // ("ld.so-1.7.0") may come first, with the new one after it, 8-byte aligned.
    constexpr std::string_view kMagic = "glibc-ld.so.cache1.1";
    constexpr std::size_t kHeader = 48, kEntry = 24;
    std::string_view text(reinterpret_cast<const char*>(file.data()), file.size());
    std::size_t base = text.find(kMagic);
    if (base == std::string_view::npos || file.size() - base < kHeader)
        return {};
    auto u32 = [&](std::size_t at) {
        std::uint32_t value = 0;
        std::memcpy(&value, file.data() + at, sizeof value);
        return value;
    };
    // A string at an offset from the header, NUL-terminated inside the file; empty if not.
    auto string_at = [&](std::uint32_t offset) -> std::string_view {
        if (offset >= file.size() - base)
            return {};
        std::string_view rest = text.substr(base + offset);
        auto end = rest.find('\0');
        return end == std::string_view::npos ? std::string_view{} : rest.substr(0, end);
    };
    std::size_t count =
        std::min<std::size_t>(u32(base + 20), (file.size() - base - kHeader) / kEntry);
    std::map<std::string, fs::path> cache;
    for (std::size_t i = 0; i < count; ++i) {
        std::size_t entry = base + kHeader + i * kEntry;
        if (std::int32_t(u32(entry)) != flags)
            continue;
        std::string_view name = string_at(u32(entry + 4)), path = string_at(u32(entry + 8));
        if (!name.empty() && !path.empty())
            cache.emplace(name, path); // the first entry wins, as in ld.so
    }
    return cache;
}

LibraryResolver::LibraryResolver(const fs::path& ld_so_cache) {
    // In the arm64 sandbox the shared root is x86-64's: its cache names no arm64 library, and
    // the default directories below are what is left.
    std::vector<std::uint8_t> file;
    try {
        file = read_binary_file(ld_so_cache);
    } catch (const Error&) { // no cache: ld.so then searches the default directories too
    }
    cache_ = read_ld_so_cache(file, host_library_names().cache_flags);
}

std::optional<fs::path> LibraryResolver::find(const std::string& name,
                                              const ElfDependencies& requester,
                                              const fs::path& origin) const {
    if (name.find('/') != std::string::npos)
        return fs::exists(name) ? std::optional<fs::path>(name) : std::nullopt;
    auto search = [&](const std::vector<std::string>& dirs) -> std::optional<fs::path> {
        for (const auto& dir : dirs) {
            fs::path candidate = fs::path(expand_origin(dir, origin)) / name;
            if (fs::exists(candidate))
                return candidate;
        }
        return std::nullopt;
    };
    if (requester.runpath.empty())
        if (auto found = search(requester.rpath))
            return found;
    if (auto found = search(requester.runpath))
        return found;
    if (auto it = cache_.find(name); it != cache_.end())
        return it->second;
    return search(default_dirs());
}

std::vector<fs::path> LibraryResolver::closure(const fs::path& program) const {
    std::vector<fs::path> files = {program};
    std::set<std::string> seen_names;
    for (std::size_t next = 0; next < files.size(); ++next) {
        fs::path object = files[next];
        ElfDependencies deps = read_elf_dependencies(object);
        if (deps.interpreter &&
            std::find(files.begin(), files.end(), fs::path(*deps.interpreter)) == files.end()) {
            files.emplace_back(*deps.interpreter);
            // libc names ld.so again as DT_NEEDED; the loaded interpreter satisfies it.
            seen_names.insert(fs::path(*deps.interpreter).filename().string());
        }
        for (const auto& name : deps.needed) {
            if (!seen_names.insert(name).second)
                continue;
            auto found = find(name, deps, fs::absolute(object).parent_path());
            if (!found)
                throw Error(object.string() + " needs " + name + ", which is not on this host");
            if (std::find(files.begin(), files.end(), *found) == files.end())
                files.push_back(*found);
        }
    }
    return files;
}

} // namespace ktstr
