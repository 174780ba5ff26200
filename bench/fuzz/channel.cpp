// GuestChannel, the host's end of the guest init's result channel: what a hostile guest (or a
// workload writing to the console devices) can put on virtio-console and COM2.
//
// Input: four bytes pick the mode and the sinks, then the body.
//   Byte 0: bit 0 raw (0) or frames (1); bits 1-2, 3-4 and 5-6: the stdout, stderr and
//   scheduler sinks, each unbounded (0), a window that applies backpressure (1) or none
//   (2, 3). Bytes 1-3: their windows, 1-64 bytes.
//   raw: chunks, each a control byte (bit 0: the source; bits 1-7: the length, 127 meaning
//     "a 16-bit length follows", 126 "drain the sinks") and that many bytes.
//   frames: frames the harness builds and tags with the channel's key and the sequence the
//     host expects, so that the fuzzer gets past the authentication. Per frame: a control
//     byte (bit 0 the source; 0x02 corrupt the tag, 0x04 the sequence, 0x08 the length field;
//     0x10 a raw kind byte; 0x20 a well-formed payload: an exit status in 0-255 or a JSON
//     report with a "type"; 0x40 a raw hello; 0xc0 together: bytes that are no frame), then
//     the kind, the payload (length and bytes) and the size of the pieces it travels in.
// Offers that the channel only partly takes (a sink is full) are finished by awaiting the
// source's room() in a coroutine on an io_context while the harness drains the sinks.
// Invariants: exit_status() is in 0-255 whenever set; once finished() nothing more is
// accepted (no sink bytes, reports or callbacks; status, error and not-run unchanged);
// on_finished and on_broken run at most once, never both; room() completes once the sinks
// drain; with unbounded sinks every offer takes everything. In frame mode a model of the
// protocol (as guest_channel.hpp describes it) predicts the outcome: which device binds, the
// exact bytes of each sink, the reports, console_ready count, exit status, init error or
// not-run, and whether it broke. It stops predicting once a bad length field desynchronises
// the stream, or at a frame kind it does not know (a newer protocol than this harness).
#include "../../tests/test_sinks.hpp"
#include "fuzz_target.hpp"
#include "ktstr/base/error.hpp"
#include "ktstr/harness/guest_channel.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <cstring>
#include <memory>
#include <optional>

namespace ktstr_fuzz_channel {

using namespace ktstr;
using guest_protocol::FrameKind;
using ktstr::fuzz::Input;

constexpr std::size_t kMaxOperations = 512;
constexpr std::uint8_t kKinds = std::uint8_t(guest_protocol::kLastKind);

guest_protocol::Key fixed_key() {
    guest_protocol::Key key;
    for (std::size_t i = 0; i < key.size(); ++i)
        key[i] = std::uint8_t(0x5a ^ (i * 37));
    return key;
}

// One of the channel's output sinks: everything, a window, or nothing (a null sink).
struct OutputSink {
    OutputSink(asio::io_context& executor, int kind, std::size_t window)
        : kind(kind), windowed(executor, window) {}
    int kind; // 0: unbounded, 1: windowed, 2: none
    test::StringSink unbounded;
    test::WindowSink windowed;
    ByteSink* sink() {
        return kind == 0   ? static_cast<ByteSink*>(&unbounded)
               : kind == 1 ? static_cast<ByteSink*>(&windowed)
                           : nullptr;
    }
    std::string text() const {
        return kind == 0 ? unbounded.text : kind == 1 ? windowed.taken + windowed.held : "";
    }
    void drain() {
        if (kind == 1)
            windowed.drain();
    }
};

int sink_kind(unsigned bits) { return bits % 4 < 2 ? int(bits % 4) : 2; }

asio::awaitable<void> await_room(ByteSink& source, bool& done) {
    co_await source.room();
    done = true;
}

// What the protocol says should happen, frame by frame.
struct Model {
    bool lost = false; // the stream desynchronised, or a kind the model does not know
    int bound = -1;
    bool rejected[2] = {false, false};
    std::uint64_t sequence[2] = {0, 0}; // what the host expects next on each source
    bool broken = false;
    std::optional<int> exit_status;
    std::optional<std::string> init_error;
    bool not_run = false;
    std::string out, err, scheduler;
    std::vector<nlohmann::json> reports;
    int ready = 0;

    bool finished() const { return exit_status || init_error || not_run; }

    void frame(int source, std::uint8_t kind, std::span<const std::uint8_t> payload, bool valid,
               bool length_ok) {
        if (lost || broken || finished() || rejected[source] || (bound >= 0 && bound != source))
            return;
        auto refuse = [&] {
            if (bound == source)
                broken = true;
            else
                rejected[source] = true;
        };
        if (kind < 1 || kind > kKinds) {
            refuse();
            return;
        }
        if (!length_ok) {
            lost = true;
            return;
        }
        if (!valid) {
            refuse();
            return;
        }
        if (bound != source) {
            if (kind != std::uint8_t(FrameKind::hello) || payload.size() != 4) {
                rejected[source] = true;
                return;
            }
            std::uint32_t version;
            std::memcpy(&version, payload.data(), 4);
            if (version != guest_protocol::kVersion) {
                broken = true;
                return;
            }
            bound = source;
            ++sequence[source];
            return;
        }
        ++sequence[source];
        switch (FrameKind(kind)) {
        case FrameKind::stdout_data: out.append(payload.begin(), payload.end()); break;
        case FrameKind::stderr_data: err.append(payload.begin(), payload.end()); break;
        case FrameKind::scheduler_output: scheduler.append(payload.begin(), payload.end()); break;
        case FrameKind::exit_status: {
            std::int32_t status = 0;
            if (payload.size() != 4) {
                broken = true;
                break;
            }
            std::memcpy(&status, payload.data(), 4);
            if (status < 0 || status > 255)
                broken = true;
            else
                exit_status = status;
            break;
        }
        case FrameKind::init_error:
            init_error = payload.empty() ? std::string("(no reason given)")
                                         : std::string(payload.begin(), payload.end());
            break;
        case FrameKind::not_run: not_run = true; break;
        case FrameKind::report: {
            auto report = nlohmann::json::parse(payload.begin(), payload.end(), nullptr, false);
            if (!report.is_object() || !report.contains("type") || !report["type"].is_string() ||
                reports.size() >= GuestChannel::kMaxReports)
                broken = true;
            else
                reports.push_back(std::move(report));
            break;
        }
        case FrameKind::console_ready: ++ready; break;
        case FrameKind::hello: broken = true; break;
        default: lost = true; break; // a kind newer than this model
        }
    }
};

struct Harness {
    Harness(std::uint8_t mode, std::uint8_t out_window, std::uint8_t err_window,
            std::uint8_t scheduler_window)
        : out(executor, sink_kind(mode >> 1), 1 + out_window % 64),
          err(executor, sink_kind(mode >> 3), 1 + err_window % 64),
          scheduler(executor, sink_kind(mode >> 5), 1 + scheduler_window % 64),
          channel(key, {.stdout_sink = out.sink(),
                        .stderr_sink = err.sink(),
                        .scheduler_sink = scheduler.sink(),
                        .on_console_ready = [this] { on_event(ready); },
                        .on_finished = [this] { on_event(finished); },
                        .on_broken =
                            [this](const std::string&) {
                                on_event(broken);
                            }}) {}

    asio::io_context executor;
    guest_protocol::Key key = fixed_key();
    OutputSink out, err, scheduler;
    int ready = 0, finished = 0, broken = 0;
    GuestChannel channel;

    // What the channel had taken when it finished.
    struct Snapshot {
        std::string out, err, scheduler;
        std::size_t reports;
        int ready, finished, broken;
        std::optional<int> exit_status;
        std::string init_error;
        bool not_run;
        bool operator==(const Snapshot&) const = default;
    };
    std::optional<Snapshot> at_finish;

    Snapshot snapshot() const {
        return {out.text(),
                err.text(),
                scheduler.text(),
                channel.reports().size(),
                ready,
                finished,
                broken,
                channel.exit_status(),
                channel.init_error(),
                channel.command_not_run()};
    }

    void on_event(int& counter) {
        // Nothing after the end: no callback runs once the channel finished.
        KTSTR_FUZZ_CHECK(!channel.finished() || &counter == &finished);
        ++counter;
    }

    void check() {
        if (auto status = channel.exit_status())
            KTSTR_FUZZ_CHECK(*status >= 0 && *status <= 255);
        KTSTR_FUZZ_CHECK(finished <= 1 && broken <= 1 && finished + broken <= 1);
        KTSTR_FUZZ_CHECK(channel.finished() == (finished == 1));
        KTSTR_FUZZ_CHECK(channel.broken().empty() == (broken == 0));
        KTSTR_FUZZ_CHECK(channel.reports().size() <= GuestChannel::kMaxReports);
        if (channel.finished()) {
            if (!at_finish)
                at_finish = snapshot();
            else
                KTSTR_FUZZ_CHECK(snapshot() == *at_finish);
        }
    }

    void drain() {
        out.drain();
        err.drain();
        scheduler.drain();
        for (int i = 0; i < 64; ++i)
            if (executor.poll_one() == 0)
                break;
    }

    // Offers all of `bytes` to source `index`, waiting for room as a relay would.
    void feed(std::size_t index, std::span<const std::uint8_t> bytes) {
        ByteSink& source = channel.source(index);
        bool unbounded = out.kind != 1 && err.kind != 1 && scheduler.kind != 1;
        while (!bytes.empty()) {
            std::size_t taken = source.offer(bytes);
            KTSTR_FUZZ_CHECK(taken <= bytes.size());
            if (unbounded)
                KTSTR_FUZZ_CHECK(taken == bytes.size());
            bytes = bytes.subspan(taken);
            check();
            if (bytes.empty())
                break;
            wait_for_room(source);
        }
    }

    // Backpressure: waits for room on `source` while the sinks' reader catches up. Each
    // round frees a window's worth, so a 64 KiB payload through a 1-byte window bounds it.
    void wait_for_room(ByteSink& source) {
        bool done = false;
        if (executor.stopped())
            executor.restart();
        asio::co_spawn(executor, await_room(source, done), asio::detached);
        for (int round = 0; round < (1 << 17) + 8 && !done; ++round)
            drain();
        KTSTR_FUZZ_CHECK(done);
        check();
    }
};

void run_raw(Harness& h, Input& in) {
    for (std::size_t op = 0; op < kMaxOperations && !in.empty(); ++op) {
        std::uint8_t control = in.u8();
        std::size_t length = control >> 1;
        if (length == 127)
            length = in.u16();
        else if (length == 126) {
            h.drain();
            continue;
        }
        h.feed(control & 1, in.bytes(length));
    }
}

// A report the init could send: {"type": ..., and a value or two}.
std::vector<std::uint8_t> json_report(Input& in) {
    nlohmann::json report = {{"type", std::string(1, char('a' + in.u8() % 26))}};
    std::uint8_t extra = in.u8();
    if (extra & 1)
        report["value"] = in.u32();
    if (extra & 2)
        report["text"] = std::string(in.u8() % 32, 'x');
    if (extra & 4)
        report["type"] = in.u8(); // not a string: refused
    std::string text = report.dump();
    return {text.begin(), text.end()};
}

void run_frames(Harness& h, Input& in, Model& model) {
    for (std::size_t op = 0; op < kMaxOperations && !in.empty(); ++op) {
        std::uint8_t control = in.u8();
        int source = control & 1;
        bool corrupt_tag = control & 0x02, corrupt_sequence = control & 0x04,
             corrupt_length = control & 0x08, raw_kind = control & 0x10,
             well_formed = control & 0x20, garbage = (control & 0xc0) == 0xc0;
        if (garbage) { // bytes that are not a frame at all
            h.feed(std::size_t(source), in.bytes(in.u8()));
            model.lost = true;
            continue;
        }
        std::uint8_t kind = raw_kind ? in.u8() : std::uint8_t(1 + in.u8() % kKinds);
        std::vector<std::uint8_t> payload;
        if (kind == std::uint8_t(FrameKind::hello) && !(control & 0x40)) {
            std::uint32_t version = guest_protocol::kVersion;
            payload.resize(4);
            std::memcpy(payload.data(), &version, 4);
        } else if (kind == std::uint8_t(FrameKind::exit_status) && well_formed) {
            std::int32_t status = in.u8();
            payload.resize(4);
            std::memcpy(payload.data(), &status, 4);
        } else if (kind == std::uint8_t(FrameKind::report) && well_formed) {
            payload = json_report(in);
        } else {
            std::size_t length = in.u8();
            if (length == 0xff)
                length = in.u16() % (guest_protocol::kMaxPayload + 2);
            auto bytes = in.bytes(length);
            payload.assign(bytes.begin(), bytes.end());
            // Long payloads are mostly repetition: pad what the input did not give.
            payload.resize(length, std::uint8_t(length));
        }
        std::uint32_t declared = std::uint32_t(payload.size());
        if (corrupt_length)
            declared = in.flag() ? in.u32() : declared + 1 + in.u8() % 4;
        std::vector<std::uint8_t> frame(guest_protocol::kHeaderSize);
        frame[0] = kind;
        for (int i = 0; i < 4; ++i)
            frame[1 + std::size_t(i)] = std::uint8_t(declared >> (8 * i));
        frame.insert(frame.end(), payload.begin(), payload.end());
        // Tagged with the sequence the host expects on this source, unless corrupted.
        std::uint64_t sequence =
            corrupt_sequence ? model.sequence[source] + 1 + in.u8() : model.sequence[source];
        auto tag = guest_protocol::frame_tag(h.key, sequence,
                                             std::span(frame).first<guest_protocol::kHeaderSize>(),
                                             std::span(frame).subspan(guest_protocol::kHeaderSize));
        if (corrupt_tag)
            tag[in.u8() % tag.size()] ^= std::uint8_t(1 | in.u8());
        frame.insert(frame.end(), tag.begin(), tag.end());

        bool length_ok = declared == payload.size();
        // A declared length over the limit is refused from the header alone.
        if (declared > guest_protocol::kMaxPayload)
            length_ok = true, corrupt_tag = true;
        model.frame(source, kind, payload, !corrupt_tag && !corrupt_sequence, length_ok);

        // Cut into pieces of a chosen size (0: whole).
        std::size_t piece = in.u8();
        std::span<const std::uint8_t> rest(frame);
        while (!rest.empty()) {
            std::size_t n = piece == 0 ? rest.size() : std::min(rest.size(), piece);
            h.feed(std::size_t(source), rest.first(n));
            rest = rest.subspan(n);
        }
    }
}

void check_model(Harness& h, const Model& model) {
    if (model.lost)
        return;
    // A data frame the channel took whole while its sink was full leaves the rest of its
    // payload held in the channel, and offer() still reports everything taken, so a producer
    // (the console device, the COM2 feed) has no reason to call room(): those bytes move only
    // with the guest's next write. Flush them the way room() would.
    for (std::size_t source = 0; source < GuestChannel::kSources; ++source)
        h.wait_for_room(h.channel.source(source));
    h.drain();
    KTSTR_FUZZ_CHECK(model.broken == !h.channel.broken().empty());
    KTSTR_FUZZ_CHECK(model.exit_status == h.channel.exit_status());
    KTSTR_FUZZ_CHECK(model.init_error.value_or("") == h.channel.init_error());
    KTSTR_FUZZ_CHECK(model.not_run == h.channel.command_not_run());
    KTSTR_FUZZ_CHECK(model.reports == h.channel.reports());
    KTSTR_FUZZ_CHECK(model.ready == h.ready);
    if (h.out.kind != 2)
        KTSTR_FUZZ_CHECK(model.out == h.out.text());
    if (h.err.kind != 2)
        KTSTR_FUZZ_CHECK(model.err == h.err.text());
    if (h.scheduler.kind != 2)
        KTSTR_FUZZ_CHECK(model.scheduler == h.scheduler.text());
}

void run(Input& in) {
    std::uint8_t mode = in.u8();
    std::uint8_t out_window = in.u8(), err_window = in.u8(), scheduler_window = in.u8();
    Harness h(mode, out_window, err_window, scheduler_window);
    if (mode & 1) {
        Model model;
        run_frames(h, in, model);
        check_model(h, model);
    } else {
        run_raw(h, in);
    }
    h.drain();
    h.check();
}

} // namespace ktstr_fuzz_channel

KTSTR_FUZZ_TARGET(channel) {
    ktstr::fuzz::Input in(data, size);
    try {
        ktstr_fuzz_channel::run(in);
    } catch (const ktstr::Error&) {
        // The channel reports a hostile guest through on_broken, not by throwing; nothing
        // here is expected to throw, but an Error is an expected kind of failure.
    }
    return 0;
}
