#include "ktstr/initramfs/shared_libraries.hpp"

#include "ktstr/base/arch.hpp"
#include "ktstr/base/error.hpp"
#include "ktstr/base/fd.hpp"
#include "ktstr/base/process.hpp"

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

// How this host's ld.so names its own libraries: its cache's tag for them, and the
// multiarch triplet of its default directories.
struct HostLibraryNames {
    const char* cache_tag;
    const char* triplet;
};
HostLibraryNames host_library_names() {
    return host_arch() == Arch::x86_64 ? HostLibraryNames{"x86-64", "x86_64-linux-gnu"}
                                       : HostLibraryNames{"AArch64", "aarch64-linux-gnu"};
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

LibraryResolver::LibraryResolver() {
    // "\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1"
    // In the arm64 sandbox the shared root is x86-64's: its ldconfig cannot run there, and
    // the default directories below are what is left.
    std::string listing;
    try {
        listing = capture_output({"ldconfig", "-p"});
    } catch (const Error&) {
    }
    std::istringstream lines(listing);
    for (std::string line; std::getline(lines, line);) {
        auto arrow = line.find(" => ");
        auto paren = line.find(" (");
        if (arrow == std::string::npos || paren == std::string::npos ||
            line.find(host_library_names().cache_tag, paren) > arrow)
            continue;
        std::string name = line.substr(0, paren);
        name.erase(0, name.find_first_not_of(" \t"));
        cache_.emplace(name, line.substr(arrow + 4)); // the first entry wins, as in ld.so
    }
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
