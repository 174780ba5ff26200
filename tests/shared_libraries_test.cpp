#include "ktstr/base/arch.hpp"
#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/base/process.hpp"
#include "ktstr/initramfs/shared_libraries.hpp"
#include "test_support.hpp"

#include <algorithm>
#include <catch2/catch_test_macros.hpp>
#include <sstream>

using namespace ktstr;
namespace fs = std::filesystem;

TEST_CASE("ELF dependencies are read like ld.so reads them", "[libs]") {
    auto sh = find_program("sh");
    REQUIRE(sh);
    ElfDependencies deps = read_elf_dependencies(fs::canonical(*sh));
    CHECK(deps.dynamic);
    REQUIRE(deps.interpreter);
    CHECK(deps.interpreter->find("ld-linux") != std::string::npos);
    CHECK(std::find(deps.needed.begin(), deps.needed.end(), "libc.so.6") != deps.needed.end());
    CHECK_THROWS_AS(read_elf_dependencies("/etc/passwd"), Error);
    CHECK_FALSE(read_elf_dependencies("/bin/busybox").dynamic); // busybox-static
}

TEST_CASE("a program's library closure matches ldd's", "[libs]") {
    LibraryResolver resolver;
    for (const char* name : {"ls", "cpio"}) {
        auto program = find_program(name);
        REQUIRE(program);
        auto files = resolver.closure(*program);
        CHECK(files.front() == *program);
        // Every library ldd names must be in the closure, by the name ld.so opened.
        auto ldd = test::run_shell("ldd " + program->string());
        REQUIRE(ldd.exit_code == 0);
        std::istringstream lines(ldd.out);
        int libraries = 0;
        for (std::string line; std::getline(lines, line);) {
            auto arrow = line.find(" => ");
            if (arrow == std::string::npos)
                continue;
            std::string path = line.substr(arrow + 4, line.find(" (") - arrow - 4);
            CAPTURE(name, path);
            CHECK(std::find(files.begin(), files.end(), fs::path(path)) != files.end());
            ++libraries;
        }
        CHECK(libraries > 0);
        CHECK(files.size() == std::size_t(libraries) + 2); // plus the program and ld.so
    }
}

TEST_CASE("the ld.so cache read from its file lists what ldconfig -p lists", "[libs]") {
    std::vector<std::uint8_t> file = read_binary_file("/etc/ld.so.cache");
    bool x86 = host_arch() == Arch::x86_64;
    auto cache = read_ld_so_cache(file, x86 ? 0x0303 : 0x0a03);
    // "\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1", first entry first
    std::map<std::string, std::filesystem::path> listed;
    std::istringstream lines(capture_output({"ldconfig", "-p"}));
    for (std::string line; std::getline(lines, line);) {
        auto arrow = line.find(" => "), paren = line.find(" (");
        if (arrow == std::string::npos || paren == std::string::npos ||
            line.substr(paren, arrow - paren) != (x86 ? " (libc6,x86-64)" : " (libc6,AArch64)"))
            continue;
        std::string name = line.substr(0, paren);
        listed.emplace(name.substr(name.find_first_not_of(" \t")), line.substr(arrow + 4));
    }
    REQUIRE(listed.size() > 10);
    CHECK(cache == listed);
    // Another architecture's flags select none of them.
    CHECK(read_ld_so_cache(file, x86 ? 0x0a03 : 0x0303).empty());
}

TEST_CASE("a damaged ld.so cache yields what it holds whole and nothing outside it", "[libs]") {
    std::vector<std::uint8_t> file = read_binary_file("/etc/ld.so.cache");
    std::int32_t flags = host_arch() == Arch::x86_64 ? 0x0303 : 0x0a03;
    std::size_t whole = read_ld_so_cache(file, flags).size();
    CHECK(read_ld_so_cache({}, flags).empty());
    std::vector<std::uint8_t> not_a_cache(4096, 'x');
    CHECK(read_ld_so_cache(not_a_cache, flags).empty());
    // Cut anywhere, the entries left whole still read (ASan checks no byte past the end).
    for (std::size_t size :
         {std::size_t(20), std::size_t(48), std::size_t(100), file.size() / 2, file.size() - 1})
        CHECK(read_ld_so_cache(std::span(file).first(size), flags).size() <= whole);
}
