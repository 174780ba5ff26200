#include "ktstr/harness/guest_channel.hpp"

#include <algorithm>
#include <catch2/catch_test_macros.hpp>
#include <string>

using namespace ktstr;

namespace {

std::vector<std::uint8_t> frame(std::uint8_t kind, const std::string& payload) {
    std::uint32_t n = std::uint32_t(payload.size());
    std::vector<std::uint8_t> bytes(5 + payload.size());
    bytes[0] = kind;
    for (int i = 0; i < 4; ++i)
        bytes[1 + i] = std::uint8_t(n >> (8 * i));
    std::copy(payload.begin(), payload.end(), bytes.begin() + 5);
    return bytes;
}

} // namespace

TEST_CASE("guest frames decode in any split", "[channel]") {
    std::string out, err;
    GuestChannelDecoder decoder({[&](auto b) { out.append(b.begin(), b.end()); },
                                 [&](auto b) {
                                     err.append(b.begin(), b.end());
                                 }});
    std::vector<std::uint8_t> stream;
    for (auto part : {frame(1, "hello "), frame(2, "warn"), frame(1, "world"),
                      frame(3, std::string("\x07\x00\x00\x00", 4))})
        stream.insert(stream.end(), part.begin(), part.end());
    // Byte by byte: frames split anywhere still decode.
    for (std::uint8_t byte : stream)
        decoder.feed(std::span(&byte, 1));
    CHECK(out == "hello world");
    CHECK(err == "warn");
    REQUIRE(decoder.exit_status());
    CHECK(*decoder.exit_status() == 7);
    CHECK(decoder.broken().empty());
}

TEST_CASE("the guest's console-ready frame reaches its handler", "[channel]") {
    int ready = 0;
    GuestChannelDecoder decoder({nullptr, nullptr, [&] {
                                     ++ready;
                                 }});
    auto bytes = frame(5, "");
    decoder.feed(bytes);
    CHECK(ready == 1);
    CHECK(decoder.broken().empty());
    auto unknown = frame(6, "");
    decoder.feed(unknown);
    CHECK_FALSE(decoder.broken().empty());
}

TEST_CASE("a hostile guest breaks only its own channel", "[channel]") {
    std::string out;
    GuestChannelDecoder decoder({[&](auto b) { out.append(b.begin(), b.end()); }, nullptr});
    decoder.feed(frame(1, "ok"));
    std::vector<std::uint8_t> huge = {1, 0xff, 0xff, 0xff, 0xff};
    decoder.feed(huge);
    CHECK_FALSE(decoder.broken().empty());
    decoder.feed(frame(1, "ignored"));
    CHECK(out == "ok");

    GuestChannelDecoder unknown({nullptr, nullptr});
    unknown.feed(frame(9, "x"));
    CHECK_FALSE(unknown.broken().empty());

    GuestChannelDecoder short_status({nullptr, nullptr});
    short_status.feed(frame(3, "ab"));
    CHECK_FALSE(short_status.broken().empty());
    CHECK_FALSE(short_status.exit_status());
}
