#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/kernel/kernel_cache.hpp"

#include <catch2/catch_test_macros.hpp>
#include <cstring>
#include <vector>

using namespace ktstr;
namespace fs = std::filesystem;

namespace {

fs::path fake_bzimage(const fs::path& dir) {
    std::vector<std::uint8_t> image(0x1000, 0);
    image[0x1fe] = 0x55;
    image[0x1ff] = 0xaa;
    std::memcpy(&image[0x202], "HdrS", 4);
    write_file_atomic(dir / "vmlinuz", std::span<const std::uint8_t>(image));
    return dir / "vmlinuz";
}

void fake_cache_entry(const fs::path& root, const std::string& version, const std::string& arch) {
    fs::path dir = root / (version + "-" + arch);
    fs::create_directories(dir);
    fake_bzimage(dir);
    write_file_atomic(dir / "kernel.json", "{\"version\":\"" + version + "\",\"release\":\"" +
                                               version + "-amd64\",\"arch\":\"" + arch +
                                               "\",\"package_version\":\"" + version + "-1\"}");
}

} // namespace

TEST_CASE("kernel images are recognised by their boot headers", "[kernel]") {
    TempDir dir("kernel-test");
    CHECK(check_kernel_image(fake_bzimage(dir.path()), Arch::x86_64) == KernelImageFormat::bzimage);
    CHECK_THROWS_AS(check_kernel_image("/etc/passwd", Arch::x86_64), UsageError);
    CHECK_THROWS_AS(check_kernel_image(dir.path() / "missing", Arch::x86_64), UsageError);
    CHECK_THROWS_AS(check_kernel_image(dir.path() / "vmlinuz", Arch::arm64), UsageError);
}

TEST_CASE("sched_ext is read from the kernel config", "[kernel]") {
    CHECK(config_has_sched_ext("CONFIG_A=y\nCONFIG_SCHED_CLASS_EXT=y\nCONFIG_B=m\n"));
    CHECK_FALSE(config_has_sched_ext("CONFIG_A=y\n# CONFIG_SCHED_CLASS_EXT is not set\n"));
    CHECK_FALSE(config_has_sched_ext("CONFIG_SCHED_CLASS_EXT_X=y\n"));
}

TEST_CASE("the kernel cache lists complete entries, newest first", "[kernel]") {
    TempDir dir("kernel-cache-test");
    fake_cache_entry(dir.path(), "7.2.13+deb13", "x86_64");
    fake_cache_entry(dir.path(), "7.10.1+deb13", "x86_64");
    fake_cache_entry(dir.path(), "7.3.4+deb13", "arm64");
    fs::create_directories(dir.path() / "7.9.9-x86_64"); // no kernel.json: incomplete
    KernelCache cache(dir.path());

    auto kernels = cache.list();
    REQUIRE(kernels.size() == 3);
    CHECK(kernels[0].version == "7.10.1+deb13");
    CHECK(cache.newest(Arch::x86_64)->version == "7.10.1+deb13");
    CHECK(cache.newest(Arch::arm64)->version == "7.3.4+deb13");
    CHECK(cache.find("7.2.13+deb13-amd64", Arch::x86_64)->name() == "7.2.13+deb13-x86_64");

    auto chosen = choose_kernel(std::nullopt, Arch::x86_64, cache);
    CHECK(chosen.cached->version == "7.10.1+deb13");
    CHECK(choose_kernel(std::string("7.2.13+deb13"), Arch::x86_64, cache).cached);
    auto by_path =
        choose_kernel((dir.path() / "7.3.4+deb13-arm64" / "vmlinuz").string(), Arch::x86_64, cache);
    CHECK_FALSE(by_path.cached);
    CHECK_THROWS_AS(choose_kernel(std::string("6.1"), Arch::x86_64, cache), UsageError);
    CHECK_THROWS_AS(choose_kernel(std::string("/etc/passwd"), Arch::x86_64, cache), UsageError);
    CHECK_THROWS_AS(choose_kernel(std::nullopt, Arch::arm64, KernelCache(dir.path() / "none")),
                    UsageError);
}
