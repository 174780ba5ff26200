// Cache housekeeping on real files.
#include "ktstr/base/files.hpp"

#include <catch2/catch_test_macros.hpp>

using namespace ktstr;
namespace fs = std::filesystem;

TEST_CASE("stale cache files with the prefix are pruned, the rest kept", "[files]") {
    TempDir dir("prune");
    auto make = [&](const std::string& name, std::chrono::hours age) {
        fs::path path = dir.path() / name;
        write_file_atomic(path, std::string("x"));
        fs::last_write_time(path, fs::file_time_type::clock::now() - age);
        return path;
    };
    using std::chrono::hours;
    fs::path old_base = make("base-1.cpio", hours(24 * 8));
    fs::path fresh_base = make("base-2.cpio", hours(1));
    fs::path old_kept = make("base-3.cpio", hours(24 * 30));
    fs::path old_other = make("other-1.cpio", hours(24 * 30));
    fs::create_directory(dir.path() / "base-dir");
    fs::last_write_time(dir.path() / "base-dir", fs::file_time_type::clock::now() - hours(24 * 30));

    prune_stale_files(dir.path(), "base-", hours(24 * 7), old_kept);
    CHECK_FALSE(fs::exists(old_base));
    CHECK(fs::exists(fresh_base));
    CHECK(fs::exists(old_kept));
    CHECK(fs::exists(old_other));
    CHECK(fs::exists(dir.path() / "base-dir"));

    prune_stale_files(dir.path() / "missing", "base-", hours(1)); // no error
}
