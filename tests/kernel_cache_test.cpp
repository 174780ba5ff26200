#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/kernel/kernel_cache.hpp"
#include "ktstr/kernel/vmlinux.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <cstring>
#include <vector>
#include <zstd.h>

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
    CHECK(config_enables("CONFIG_A=y\nCONFIG_SCHED_CLASS_EXT=y\nCONFIG_B=m\n",
                         "CONFIG_SCHED_CLASS_EXT"));
    CHECK_FALSE(config_enables("CONFIG_A=y\n# CONFIG_SCHED_CLASS_EXT is not set\n",
                               "CONFIG_SCHED_CLASS_EXT"));
    CHECK_FALSE(config_enables("CONFIG_SCHED_CLASS_EXT_X=y\n", "CONFIG_SCHED_CLASS_EXT"));
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

namespace {

// A bzImage whose payload is `payload` (one setup sector after the boot sector).
std::vector<std::uint8_t> bzimage_with_payload(std::span<const std::uint8_t> payload) {
    std::vector<std::uint8_t> image(0x410 + payload.size(), 0);
    image[0x1f1] = 1;
    image[0x1fe] = 0x55;
    image[0x1ff] = 0xaa;
    std::memcpy(&image[0x202], "HdrS", 4);
    std::uint32_t offset = 0x10, length = std::uint32_t(payload.size());
    std::memcpy(&image[0x248], &offset, 4);
    std::memcpy(&image[0x24c], &length, 4);
    std::copy(payload.begin(), payload.end(), image.begin() + 0x410);
    return image;
}

// What the kernel's build makes: a zstd frame, then the uncompressed size (le32).
std::vector<std::uint8_t> kernel_zstd(std::span<const std::uint8_t> data) {
    std::vector<std::uint8_t> out(ZSTD_compressBound(data.size()) + 4);
    std::size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
    REQUIRE_FALSE(ZSTD_isError(n));
    std::uint32_t size = std::uint32_t(data.size());
    std::memcpy(out.data() + n, &size, 4);
    out.resize(n + 4);
    return out;
}

} // namespace

TEST_CASE("the vmlinux is unpacked from a bzImage's zstd payload", "[kernel]") {
    std::vector<std::uint8_t> vmlinux(3 << 20);
    for (std::size_t i = 0; i < vmlinux.size(); ++i)
        vmlinux[i] = std::uint8_t((i * 2654435761u) >> 13);
    std::memcpy(vmlinux.data(),
                "\x7f"
                "ELF",
                4);
    CHECK(extract_vmlinux(bzimage_with_payload(kernel_zstd(vmlinux))) == vmlinux);

    auto packed = kernel_zstd(vmlinux);
    const std::uint8_t gzip[] = {0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0};
    CHECK_THROWS_WITH(extract_vmlinux(bzimage_with_payload(gzip)),
                      Catch::Matchers::ContainsSubstring("not zstd-compressed"));
    CHECK_THROWS_AS(
        extract_vmlinux(bzimage_with_payload(std::span(packed).first(packed.size() / 2))), Error);
    auto damaged = packed;
    damaged[damaged.size() / 2] ^= 0xff;
    CHECK_THROWS_AS(extract_vmlinux(bzimage_with_payload(damaged)), Error);
    auto lying = bzimage_with_payload(packed);
    std::uint32_t too_long = std::uint32_t(packed.size() + 1);
    std::memcpy(&lying[0x24c], &too_long, 4);
    CHECK_THROWS_WITH(extract_vmlinux(lying), Catch::Matchers::ContainsSubstring("outside"));
    CHECK_THROWS_AS(extract_vmlinux(std::vector<std::uint8_t>(0x1000, 0)), Error);
}

TEST_CASE("a cached kernel with CONFIG_PVH gets its vmlinux unpacked once", "[kernel]") {
    TempDir dir("kernel-test");
    fake_cache_entry(dir.path(), "7.1.0", "x86_64");
    fake_cache_entry(dir.path(), "7.2.0", "x86_64");
    std::vector<std::uint8_t> vmlinux(0x10000, 0x5a);
    std::memcpy(vmlinux.data(),
                "\x7f"
                "ELF",
                4);
    vmlinux[4] = 2;     // ELFCLASS64
    vmlinux[0x12] = 62; // EM_X86_64
    vmlinux[0x13] = 0;
    fs::path pvh = dir.path() / "7.2.0-x86_64";
    write_file_atomic(pvh / "vmlinuz",
                      std::span<const std::uint8_t>(bzimage_with_payload(kernel_zstd(vmlinux))));
    write_file_atomic(pvh / "config", "CONFIG_A=y\nCONFIG_PVH=y\n");
    write_file_atomic(dir.path() / "7.1.0-x86_64" / "config",
                      "CONFIG_A=y\n# CONFIG_PVH is not set\n");
    KernelCache cache(dir.path());
    auto newest = cache.newest(Arch::x86_64);
    REQUIRE(newest);
    REQUIRE(unpack_pvh_image(*newest) == pvh / "vmlinux");
    CHECK(read_binary_file(pvh / "vmlinux") == vmlinux);
    CHECK(check_kernel_image(pvh / "vmlinux", Arch::x86_64) == KernelImageFormat::x86_64_elf);
    // Unpacked once: a second call keeps the file as it is.
    write_file_atomic(pvh / "vmlinux", std::span<const std::uint8_t>(vmlinux).first(0x100));
    CHECK(unpack_pvh_image(*newest) == pvh / "vmlinux");
    CHECK(fs::file_size(pvh / "vmlinux") == 0x100);
    CHECK_FALSE(unpack_pvh_image(*cache.find("7.1.0", Arch::x86_64)));
    CHECK_FALSE(fs::exists(dir.path() / "7.1.0-x86_64" / "vmlinux"));
    // The default stays the bzImage; a vmlinux is booted when named by path.
    CHECK(choose_kernel(std::nullopt, Arch::x86_64, cache).image == pvh / "vmlinuz");
}
