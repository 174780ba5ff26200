// The ktstr binary answers bad input with one line on stderr and exit status 2.
#include "ktstr/base/files.hpp"
#include "test_support.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

using namespace ktstr;
namespace fs = std::filesystem;

TEST_CASE("bad input gets one line and exit status 2", "[cli]") {
    auto [args, mentions] = GENERATE(table<std::string, std::string>({
        {"sandbox", "no command"},
        {"sandbox --emulate", "no command"},
        {"kernel fetch --arch sparc", "sparc"},
        {"sandbox --kernel /etc/passwd -- true", "/etc/passwd"},
        {"sandbox --kernel /no/such/vmlinuz -- true", "/no/such/vmlinuz"},
        {"sandbox --emulate --kernel 0.0.1-nope -- true", "0.0.1-nope"},
        {"kernel list --bogus", "--bogus"},
        {"", "subcommand"},
        {"run --kernel /no/such/vmlinuz -- true", "/no/such/vmlinuz"},
        {"run --kernel /etc/passwd -- true", "bzImage"},
        {"run --topology 0n1l1c1t -- true", "0n1l1c1t"},
        {"run --topology 2n3l2c1t -- true", "spread evenly"},
        {"run --memory 1M -- true", "1M"},
        {"run --topology 1n16l8c2t -- true", "252"},
        {"run --timeout soon -- true", "soon"},
        {"run", "no command"},
        {"run -- /no/such/program", "/no/such/program"},
        {"run --scheduler /etc/passwd -- true", "not an ELF executable"},
        {"run --scheduler /no/such/scheduler -- true", "/no/such/scheduler"},
        {"run --scheduler scx_nonesuch -- true", "scx_nonesuch"},
        {"run --sched-arg=-v -- true", "--sched-arg without --scheduler"},
        {"run --json /no/such/dir/result.json -- true", "/no/such/dir"},
        {"run --attach-timeout never -- true", "never"},
        {"run --timeout 99999999999999999h -- true", "too long"},
        {"run --topology 4294967296n1l1c1t -- true", "too large"},
        {"run --topology 2147483648n1l1c1t -- true", "spread evenly"},
    }));
    CAPTURE(args);
    auto result = test::run_shell(std::string(KTSTR_BINARY) + " " + args);
    CHECK(result.exit_code == 2);
    CHECK(result.out.empty());
    REQUIRE_FALSE(result.err.empty());
    CHECK(result.err.find('\n') == result.err.size() - 1);
    CHECK(result.err.starts_with("ktstr: "));
    CHECK(result.err.find(mentions) != std::string::npos);
}

TEST_CASE("every command has --help", "[cli]") {
    auto command = GENERATE(as<std::string>{}, "", "kernel", "kernel fetch", "kernel list",
                            "sandbox", "selfcheck", "run");
    CAPTURE(command);
    auto result = test::run_shell(std::string(KTSTR_BINARY) + " " + command + " --help");
    CHECK(result.exit_code == 0);
    CHECK(result.out.find("Usage") != std::string::npos);
}

TEST_CASE("a scheduler built for another kernel is refused by name", "[cli]") {
    // A cache whose only scheduler belongs to a kernel release that is not the one booted.
    TempDir cache("ktstr-cli-cache");
    fs::path real_kernels = ktstr_cache_dir() / "kernels";
    fs::create_directories(cache.path() / "ktstr");
    fs::create_directory_symlink(real_kernels, cache.path() / "ktstr" / "kernels");
    fs::path other = cache.path() / "ktstr" / "schedulers" / "0.0.1-other" / "bin";
    fs::create_directories(other);
    fs::copy_file("/bin/true", other / "scx_elsewhere");
    write_file_atomic(other.parent_path() / "schedulers.json",
                      std::string(R"({"recipe": "x", "schedulers": [{"name": "scx_elsewhere",
                                      "source": "test"}]})"));
    auto result = test::run_shell("XDG_CACHE_HOME=" + cache.path().string() + " " + KTSTR_BINARY +
                                  " run --scheduler scx_elsewhere -- true");
    INFO(result.err);
    CHECK(result.exit_code == 2);
    CHECK(result.err.find("built for kernel 0.0.1-other") != std::string::npos);
    CHECK(result.err.find('\n') == result.err.size() - 1);
    // By path, too: a binary from another kernel's build directory.
    auto by_path =
        test::run_shell("XDG_CACHE_HOME=" + cache.path().string() + " " + KTSTR_BINARY +
                        " run --scheduler " + (other / "scx_elsewhere").string() + " -- true");
    CHECK(by_path.exit_code == 2);
    CHECK(by_path.err.find("was built for kernel 0.0.1-other") != std::string::npos);
}

TEST_CASE("bad scenarios are refused with one line and status 2, before any boot", "[cli]") {
    TempDir dir("ktstr-cli-scenario");
    auto write = [&](const std::string& name, const std::string& text) {
        write_file_atomic(dir.path() / name, text);
        return (dir.path() / name).string();
    };
    auto [file, mentions] = GENERATE_REF(table<std::string, std::string>({
        {R"({"name": "x", "workers": [{"name": "w", "work": "spin"}], "colour": 1})",
         "unknown field 'colour'"},
        {R"({"name": "x", "workers": [{"name": "w", "work": "spinn"}]})",
         "there is no work type 'spinn'"},
        {R"({"name": "x", "cgroups": [{"name": "a", "cpuset": {"llcs": [9]}}],
             "workers": [{"name": "w", "work": "spin", "cgroup": "a"}]})",
         "LLC 9 does not exist on 1n2l2c1t"},
        {R"({"name": "x", "workers": [{"name": "w", "work": "spin", "count": 0}]})",
         "workers[0].count: 0 is outside 1-1024"},
        {"not json", "is not valid JSON"},
    }));
    std::string path = write("s.json", file);
    auto result =
        test::run_shell(std::string(KTSTR_BINARY) + " test --topology 1n2l2c1t --scenario " + path);
    CAPTURE(file);
    CHECK(result.exit_code == 2);
    CHECK(result.err.find(mentions) != std::string::npos);
    CHECK(result.err.find('\n') == result.err.size() - 1);
    CHECK(result.err.find("sandbox") == std::string::npos); // nothing booted
    auto unknown = test::run_shell(std::string(KTSTR_BINARY) + " test --scenario nonesuch");
    CHECK(unknown.exit_code == 2);
    CHECK(unknown.err.find("there is no scenario 'nonesuch'") != std::string::npos);
    auto setting =
        test::run_shell(std::string(KTSTR_BINARY) + " test --scenario basic-spin --set max_gap=1");
    CHECK(setting.exit_code == 2);
    CHECK(setting.err.find("no check setting 'max_gap'") != std::string::npos);
}
