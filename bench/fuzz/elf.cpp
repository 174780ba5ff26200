// read_elf_dependencies on an untrusted file: `--include` brings programs (and, transitively,
// whatever their PT_INTERP and DT_NEEDED name) into the guest, reading each one's headers
// with libelf. The function takes a path, so the input is written to one file in a tmpfs
// directory (/dev/shm, else $TMPDIR or /tmp) per process and rewritten for each input.
// Invariants: a file that is not ELF is an Error, nothing else escapes; what comes back is
// made of the file's bytes (the interpreter, each DT_NEEDED name and each path list entry is
// no longer than the file, and no string holds a NUL byte); a non-dynamic file names no
// libraries.
#include "fuzz_target.hpp"
#include "ktstr/base/error.hpp"
#include "ktstr/initramfs/shared_libraries.hpp"

#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace ktstr_fuzz_elf {

using namespace ktstr;
namespace fs = std::filesystem;

struct Scratch {
    fs::path dir, file;
    Scratch() {
        fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm")
                        : std::getenv("TMPDIR")      ? fs::path(std::getenv("TMPDIR"))
                                                     : fs::path("/tmp");
        dir = base / ("ktstr-fuzz-elf-" + std::to_string(::getpid()));
        fs::create_directories(dir);
        file = dir / "input";
    }
    ~Scratch() {
        std::error_code ignored;
        fs::remove_all(dir, ignored);
    }
    void write(const std::uint8_t* data, std::size_t size) const {
        int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            std::abort();
        for (std::size_t done = 0; done < size;) {
            ssize_t n = ::write(fd, data + done, size - done);
            if (n <= 0)
                std::abort();
            done += std::size_t(n);
        }
        ::close(fd);
    }
};

void check_string(const std::string& s, std::size_t file_size) {
    KTSTR_FUZZ_CHECK(s.size() <= file_size);
    KTSTR_FUZZ_CHECK(s.find('\0') == std::string::npos);
}

void check(const ElfDependencies& deps, std::size_t size) {
    if (deps.interpreter) {
        KTSTR_FUZZ_CHECK(deps.interpreter->size() <= size);
        // PT_INTERP is taken up to its first NUL.
        KTSTR_FUZZ_CHECK(deps.interpreter->find('\0') == std::string::npos);
    }
    if (!deps.dynamic)
        KTSTR_FUZZ_CHECK(deps.needed.empty() && deps.rpath.empty() && deps.runpath.empty());
    for (const auto& name : deps.needed)
        check_string(name, size);
    for (const auto& list : {deps.rpath, deps.runpath})
        for (const auto& dir : list) {
            check_string(dir, size);
            KTSTR_FUZZ_CHECK(!dir.empty() && dir.find(':') == std::string::npos);
        }
}

} // namespace ktstr_fuzz_elf

KTSTR_FUZZ_TARGET(elf) {
    using namespace ktstr_fuzz_elf;
    static const Scratch scratch;
    scratch.write(data, size);
    try {
        check(ktstr::read_elf_dependencies(scratch.file), size);
    } catch (const ktstr::Error&) {
        // Not an ELF file (or one libelf cannot read): what a bad --include gets.
    }
    return 0;
}
