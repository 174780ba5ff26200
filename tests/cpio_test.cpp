#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/initramfs/cpio.hpp"
#include "test_support.hpp"

#include <catch2/catch_test_macros.hpp>

using namespace ktstr;

TEST_CASE("cpio newc archives list and unpack with GNU cpio", "[cpio]") {
    CpioArchive cpio;
    cpio.add_file("bin/tool", std::string_view("#!/bin/sh\necho hi\n"), 0755);
    cpio.add_file("etc/odd-size", std::string_view("12345"));
    cpio.add_symlink("bin/sh", "tool");
    cpio.add_directory("empty/dir");
    cpio.add_char_device("dev/console", 5, 1);
    cpio.add_file("lib/nested/deep/file", std::string_view(""));
    auto bytes = cpio.finish();
    REQUIRE(bytes.size() % 4 == 0);

    TempDir dir("cpio-test");
    write_file_atomic(dir.path() / "a.cpio", std::span<const std::uint8_t>(bytes));

    auto listing = test::run_shell("cpio -t --quiet < " + (dir.path() / "a.cpio").string());
    REQUIRE(listing.exit_code == 0);
    CHECK(listing.err.empty());
    CHECK(listing.out == "bin\nbin/tool\netc\netc/odd-size\nbin/sh\nempty\nempty/dir\ndev\n"
                         "dev/console\nlib\nlib/nested\nlib/nested/deep\nlib/nested/deep/file\n");

    auto verbose = test::run_shell("bsdtar -tvf " + (dir.path() / "a.cpio").string());
    REQUIRE(verbose.exit_code == 0);
    CHECK(verbose.out.find("crw-------") != std::string::npos);
    CHECK(verbose.out.find("bin/sh -> tool") != std::string::npos);

    auto unpacked = dir.path() / "root";
    std::filesystem::create_directories(unpacked);
    auto extract = test::run_shell("cd " + unpacked.string() +
                                   " && cpio -idm --quiet --no-absolute-filenames "
                                   "--nonmatching 'dev/*' < ../a.cpio");
    REQUIRE(extract.exit_code == 0);
    CHECK(read_file(unpacked / "bin/tool") == "#!/bin/sh\necho hi\n");
    CHECK(read_file(unpacked / "etc/odd-size") == "12345");
    CHECK(std::filesystem::read_symlink(unpacked / "bin/sh") == "tool");
    CHECK(std::filesystem::is_directory(unpacked / "empty/dir"));
    auto perms = std::filesystem::status(unpacked / "bin/tool").permissions();
    CHECK((perms & std::filesystem::perms::owner_exec) != std::filesystem::perms::none);
}

TEST_CASE("cpio rejects an empty path", "[cpio]") {
    CpioArchive cpio;
    CHECK_THROWS_AS(cpio.add_file("/", std::string_view("x")), Error);
}
