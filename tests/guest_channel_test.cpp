// The result channel, host side: authenticated frames, one source, nothing after the end.
#include "ktstr/harness/guest_channel.hpp"
#include "test_sinks.hpp"

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <catch2/catch_test_macros.hpp>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>

using namespace ktstr;
using guest_protocol::FrameKind;

namespace {

// The guest init's side, as the test's stand-in: frames tagged with a key and a sequence.
struct Sender {
    guest_protocol::Key key;
    std::uint64_t sequence = 0;

    std::vector<std::uint8_t> frame(FrameKind kind, std::string_view payload) {
        std::uint32_t n = std::uint32_t(payload.size());
        std::vector<std::uint8_t> bytes(5 + payload.size());
        bytes[0] = std::uint8_t(kind);
        for (int i = 0; i < 4; ++i)
            bytes[1 + std::size_t(i)] = std::uint8_t(n >> (8 * i));
        std::copy(payload.begin(), payload.end(), bytes.begin() + 5);
        auto tag = guest_protocol::frame_tag(key, sequence++, std::span(bytes).first<5>(),
                                             std::span(bytes).subspan(5));
        bytes.insert(bytes.end(), tag.begin(), tag.end());
        return bytes;
    }
    std::vector<std::uint8_t> hello() {
        std::uint32_t version = guest_protocol::kVersion;
        return frame(FrameKind::hello, {reinterpret_cast<const char*>(&version), 4});
    }
    std::vector<std::uint8_t> status(std::int32_t value) {
        return frame(FrameKind::exit_status, {reinterpret_cast<const char*>(&value), 4});
    }
};

struct Fixture {
    guest_protocol::Key key = GuestChannel::make_key();
    Sender init{key};
    test::StringSink out, err;
    std::string broken;
    int finished = 0, ready = 0;
    GuestChannel channel{key,
                         {.stdout_sink = &out,
                          .stderr_sink = &err,
                          .on_console_ready = [this] { ++ready; },
                          .on_finished = [this] { ++finished; },
                          .on_broken =
                              [this](const std::string& why) {
                                  broken = why;
                              }}};

    void feed(std::size_t source, const std::vector<std::uint8_t>& bytes) {
        CHECK(channel.source(source).offer(bytes) == bytes.size());
    }
};

} // namespace

TEST_CASE("guest frames decode in any split", "[channel]") {
    Fixture f;
    std::vector<std::uint8_t> stream;
    for (auto part :
         {f.init.hello(), f.init.frame(FrameKind::stdout_data, "hello "),
          f.init.frame(FrameKind::stderr_data, "warn"), f.init.frame(FrameKind::console_ready, ""),
          f.init.frame(FrameKind::stdout_data, "world"), f.init.status(7)})
        stream.insert(stream.end(), part.begin(), part.end());
    for (std::uint8_t byte : stream) // byte by byte: frames cut anywhere still decode
        CHECK(f.channel.source(0).offer(std::span(&byte, 1)) == 1);
    CHECK(f.out.text == "hello world");
    CHECK(f.err.text == "warn");
    CHECK(f.ready == 1);
    REQUIRE(f.channel.exit_status());
    CHECK(*f.channel.exit_status() == 7);
    CHECK(f.finished == 1);
    CHECK(f.channel.broken().empty());
}

TEST_CASE("whole frames in one buffer are taken in place", "[channel]") {
    Fixture f;
    std::vector<std::uint8_t> stream = f.init.hello();
    auto data = f.init.frame(FrameKind::stdout_data, std::string(60000, 'x'));
    auto status = f.init.status(0);
    stream.insert(stream.end(), data.begin(), data.end());
    stream.insert(stream.end(), status.begin(), status.end());
    f.feed(0, stream);
    CHECK(f.out.text.size() == 60000);
    CHECK(f.channel.exit_status() == 0);
}

TEST_CASE("frames the init did not make are refused", "[channel]") {
    SECTION("a forged status after the hello breaks the channel") {
        Fixture f;
        f.feed(0, f.init.hello());
        Sender forger{GuestChannel::make_key(), f.init.sequence};
        f.feed(0, forger.status(0));
        CHECK_FALSE(f.channel.exit_status());
        CHECK(f.broken.find("failed its check") != std::string::npos);
        f.feed(0, f.init.status(3)); // once broken, even the init's own frames are gone
        CHECK_FALSE(f.channel.exit_status());
    }
    SECTION("a replayed frame (right key, wrong place) breaks the channel") {
        Fixture f;
        f.feed(0, f.init.hello());
        Sender replay{f.key, 5};
        f.feed(0, replay.status(0));
        CHECK_FALSE(f.channel.exit_status());
        CHECK_FALSE(f.broken.empty());
    }
    SECTION("garbage on the other device first does not stop the init binding this one") {
        Fixture f;
        Sender forger{GuestChannel::make_key()};
        f.feed(1, forger.hello());
        f.feed(1, forger.status(0));
        f.feed(0, f.init.hello());
        f.feed(0, f.init.status(3));
        CHECK(f.channel.exit_status() == 3);
        CHECK(f.broken.empty());
    }
    SECTION("once bound, the other device is ignored, even with valid-looking frames") {
        Fixture f;
        f.feed(0, f.init.hello());
        Sender copy{f.key, f.init.sequence};
        f.feed(1, copy.status(0));
        CHECK_FALSE(f.channel.exit_status());
        f.feed(0, f.init.status(3));
        CHECK(f.channel.exit_status() == 3);
    }
    SECTION("nothing is taken after the exit status") {
        Fixture f;
        f.feed(0, f.init.hello());
        f.feed(0, f.init.status(3));
        f.feed(0, f.init.frame(FrameKind::stdout_data, "late"));
        f.feed(0, f.init.status(0));
        CHECK(f.channel.exit_status() == 3);
        CHECK(f.out.text.empty());
        CHECK(f.broken.empty());
    }
    SECTION("data before the hello is not the channel") {
        Fixture f;
        f.feed(0, f.init.frame(FrameKind::stdout_data, "early"));
        f.feed(0, f.init.hello());
        CHECK(f.out.text.empty());
        CHECK_FALSE(f.channel.exit_status());
    }
}

TEST_CASE("an exit status outside 0-255 is a named error, never a wrapped pass", "[channel]") {
    for (std::int32_t status : {256, -1, 512, 0x7fffffff}) {
        CAPTURE(status);
        Fixture f;
        f.feed(0, f.init.hello());
        f.feed(0, f.init.status(status));
        CHECK_FALSE(f.channel.exit_status());
        CHECK(f.broken.find("outside 0-255") != std::string::npos);
    }
}

TEST_CASE("malformed frames from the init break the channel at once", "[channel]") {
    auto broken_by = [](auto make) {
        Fixture f;
        f.feed(0, f.init.hello());
        f.feed(0, make(f.init));
        return f.broken;
    };
    CHECK_FALSE(broken_by([](Sender&) {
                    return std::vector<std::uint8_t>{1, 0xff, 0xff, 0xff, 0xff};
                }).empty()); // a 4 GiB frame is refused before any of it is buffered
    CHECK_FALSE(broken_by([](Sender& s) { return s.frame(FrameKind(0x42), "x"); }).empty());
    CHECK_FALSE(broken_by([](Sender& s) { return s.frame(FrameKind::exit_status, "ab"); }).empty());
    CHECK_FALSE(
        broken_by([](Sender& s) { return s.frame(FrameKind::hang_report_due, "abc"); }).empty());
    CHECK_FALSE(broken_by([](Sender& s) { return s.hello(); }).empty());
    CHECK_FALSE(
        broken_by([](Sender& s) { return s.frame(FrameKind::report, "not json"); }).empty());
    CHECK_FALSE(broken_by([](Sender& s) {
                    return s.frame(FrameKind::report, R"({"no": "type"})");
                }).empty());
}

TEST_CASE("reports, scheduler output and a command that did not run", "[channel]") {
    Fixture f;
    test::StringSink scheduler;
    GuestChannel channel(f.key, {.scheduler_sink = &scheduler});
    for (auto frame :
         {f.init.hello(), f.init.frame(FrameKind::scheduler_output, "local=1\n"),
          f.init.frame(FrameKind::report, R"({"type": "scheduler", "attached": false})"),
          f.init.frame(FrameKind::not_run, "")})
        CHECK(channel.source(0).offer(frame) == frame.size());
    CHECK(scheduler.text == "local=1\n");
    REQUIRE(channel.reports().size() == 1);
    CHECK(channel.reports()[0]["type"] == "scheduler");
    CHECK(channel.command_not_run());
    CHECK(channel.finished());
    CHECK_FALSE(channel.exit_status());
    CHECK(channel.broken().empty());
}

TEST_CASE("the init's promise of a hang report reaches its handler", "[channel]") {
    Fixture f;
    std::optional<std::chrono::milliseconds> due;
    GuestChannel channel(f.key, {.on_hang_report_due = [&](auto due_in) {
                             due = due_in;
                         }});
    std::uint32_t due_in = 88'500;
    for (auto frame : {f.init.hello(), f.init.frame(FrameKind::hang_report_due,
                                                    {reinterpret_cast<const char*>(&due_in), 4})})
        CHECK(channel.source(0).offer(frame) == frame.size());
    REQUIRE(due);
    CHECK(due->count() == 88'500);
    CHECK(channel.broken().empty());
}

TEST_CASE("a slow reader holds the channel's input back", "[channel]") {
    asio::io_context executor;
    guest_protocol::Key key = GuestChannel::make_key();
    Sender init{key};
    test::WindowSink out(executor, 10);
    GuestChannel channel(key, {.stdout_sink = &out});
    ByteSink& source = channel.source(0);
    auto hello = init.hello();
    CHECK(source.offer(hello) == hello.size());
    auto data = init.frame(FrameKind::stdout_data, "0123456789abcdefghij");
    auto status = init.status(0);
    std::vector<std::uint8_t> stream = data;
    stream.insert(stream.end(), status.begin(), status.end());
    // The whole first frame is taken (10 bytes of it reach the sink, the rest is held);
    // the status frame waits behind it.
    CHECK(source.offer(stream) == data.size());
    CHECK(out.held == "0123456789");
    CHECK(source.offer(std::span(stream).subspan(data.size())) == 0);
    bool room = false;
    asio::co_spawn(
        executor,
        [&]() -> asio::awaitable<void> {
            co_await source.room();
            room = true;
        },
        asio::detached);
    executor.poll();
    CHECK_FALSE(room);
    out.drain();
    executor.poll();
    CHECK(room);
    CHECK(out.held == "abcdefghij");
    CHECK(source.offer(std::span(stream).subspan(data.size())) == status.size());
    CHECK(channel.exit_status() == 0);
}

TEST_CASE("a payload its sink took only part of reaches it without another offer", "[channel]") {
    asio::io_context executor;
    guest_protocol::Key key = GuestChannel::make_key();
    Sender init{key};
    test::WindowSink out(executor, 4);
    GuestChannel channel(key, {.stdout_sink = &out, .executor = &executor});
    auto hello = init.hello();
    auto data = init.frame(FrameKind::stdout_data, "0123456789");
    CHECK(channel.source(0).offer(hello) == hello.size());
    CHECK(channel.source(0).offer(data) == data.size()); // all taken; 6 bytes still held
    CHECK(out.held == "0123");
    for (int i = 0; i < 3; ++i) { // the producer has nothing more: the channel goes on alone
        out.drain();
        executor.poll();
    }
    CHECK(out.taken + out.held == "0123456789");
}
