// The ktstr binary answers bad input with one line on stderr and exit status 2.
#include "test_support.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

using namespace ktstr;

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
