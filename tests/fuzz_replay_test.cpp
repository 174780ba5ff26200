// Replays tests/fuzz_corpus/<target>/* through each fuzz target's body (bench/fuzz/*.cpp,
// built here without libFuzzer), so that the inputs that once found bugs, and those that
// reach deep into the code, keep passing in the ordinary build. Fuzzing itself: bench/fuzz/run.
//
// The targets keep their helpers in namespaces of their own, so they share this translation
// unit; KTSTR_FUZZ_TARGET registers each under its name.
#include "../bench/fuzz/bzimage.cpp"
#include "../bench/fuzz/channel.cpp"
#include "../bench/fuzz/cpio.cpp"
#include "../bench/fuzz/elf.cpp"
#include "../bench/fuzz/ioapic.cpp"
#include "../bench/fuzz/legacy.cpp"
#include "../bench/fuzz/serial.cpp"
#include "../bench/fuzz/virtio.cpp"

#include <algorithm>
#include <catch2/catch_test_macros.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

namespace {

std::filesystem::path corpus_root() {
#ifdef KTSTR_SOURCE_DIR
    return std::filesystem::path(KTSTR_SOURCE_DIR) / "tests" / "fuzz_corpus";
#else
    // CMake compiles sources by absolute path.
    return std::filesystem::path(__FILE__).parent_path() / "fuzz_corpus";
#endif
}

std::vector<std::uint8_t> read_input(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

TEST_CASE("every fuzz corpus input replays without a finding", "[fuzz-replay]") {
    const auto& targets = ktstr::fuzz::registry();
    REQUIRE(targets.size() == 8);
    REQUIRE(std::filesystem::is_directory(corpus_root()));
    for (const auto& [name, entry] : targets) {
        std::filesystem::path dir = corpus_root() / name;
        INFO("target " << name << ", corpus " << dir.string());
        REQUIRE(std::filesystem::is_directory(dir));
        std::vector<std::filesystem::path> inputs;
        for (const auto& file : std::filesystem::directory_iterator(dir))
            if (file.is_regular_file())
                inputs.push_back(file.path());
        std::sort(inputs.begin(), inputs.end());
        CHECK_FALSE(inputs.empty()); // every target has seeds
        for (const auto& path : inputs) {
            INFO("input " << path.filename().string());
            std::vector<std::uint8_t> bytes = read_input(path);
            CHECK_NOTHROW(entry(bytes.data(), bytes.size()));
            // Every prefix of an input is an input too; a few of them cover the paths that
            // end early.
            for (std::size_t cut : {std::size_t(0), std::size_t(1), bytes.size() / 2})
                if (cut < bytes.size())
                    CHECK_NOTHROW(entry(bytes.data(), cut));
        }
    }
}
