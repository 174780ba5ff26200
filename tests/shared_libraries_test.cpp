#include "ktstr/base/error.hpp"
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
