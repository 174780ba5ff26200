// End to end: `ktstr test` boots a VM per scenario, runs it and judges it; results as JSON
// (against the schema) and JUnit (against the usual XSD); `ktstr check` judges them again.
#include "ktstr/base/files.hpp"
#include "test_support.hpp"

#include <catch2/catch_test_macros.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

using namespace ktstr;
namespace fs = std::filesystem;

namespace {

std::string source(const std::string& path) { return std::string(KTSTR_SOURCE_DIR) + "/" + path; }

} // namespace

TEST_CASE("sound runs pass, and their results are data", "[e2e][scenarios]") {
    TempDir dir("ktstr-e2e-scenarios");
    fs::path junit = dir.path() / "junit.xml";
    auto result = test::run_ktstr("test --topology 1n2l2c1t --scenario basic-spin --scenario "
                                  "cpuset-halves --json " +
                                  dir.path().string() + " --junit " + junit.string());
    INFO(result.out << result.err);
    CHECK(result.exit_code == 0);
    CHECK(result.out.find("2 of 2 scenarios passed") != std::string::npos);
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(dir.path()))
        if (entry.path().extension() == ".json")
            files.push_back(entry.path().string());
    REQUIRE(files.size() == 2);
    auto valid = test::run_shell(source("tests/validate_json.sh") + " " +
                                 source("schemas/test-result.schema.json") + " " + files[0] + " " +
                                 files[1]);
    INFO(valid.out);
    CHECK(valid.exit_code == 0);
    auto xml = test::run_shell("xmllint --noout --schema " + source("tests/junit.xsd") + " " +
                               junit.string());
    INFO(xml.err);
    CHECK(xml.exit_code == 0);
    std::string halves;
    for (const auto& file : files)
        if (file.find("cpuset-halves") != std::string::npos)
            halves = file;
    nlohmann::json stored = nlohmann::json::parse(read_file(halves));
    bool isolation_applied = false;
    for (const auto& check : stored["checks"])
        if (check["name"] == "cpuset_isolation")
            isolation_applied = check["applied"];
    CHECK(isolation_applied);
    // Judged again: as it was, then with a limit no run meets.
    CHECK(test::run_ktstr("check " + halves).exit_code == 0);
    auto strict = test::run_ktstr("check " + halves + " --set max_gap_ms=0.001");
    CHECK(strict.exit_code == 1);
    CHECK(strict.out.find("FAILED longest_gap: a#") != std::string::npos);
}

TEST_CASE("a scheduler that ignores weights fails the weights check, and passes without the "
          "fault",
          "[e2e][scenario-faults]") {
    auto sound = test::run_ktstr("test --topology 1n2l2c1t --scenario weights-nice --scheduler "
                                 "scx_ktstr");
    INFO(sound.out << sound.err);
    CHECK(sound.exit_code == 0);
    auto fifo = test::run_ktstr("test --topology 1n2l2c1t --scenario weights-nice --scheduler "
                                "scx_ktstr --sched-arg=--fifo");
    INFO(fifo.out << fifo.err);
    CHECK(fifo.exit_code == 1);
    CHECK(fifo.out.find("FAILED nice_weights: in cgroup /, nice 0 workers got") !=
          std::string::npos);
}
