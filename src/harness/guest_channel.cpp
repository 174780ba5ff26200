#include "ktstr/harness/guest_channel.hpp"

#include "ktstr/base/error.hpp"

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <cstring>
#include <fmt/format.h>

namespace ktstr {

using guest_protocol::FrameKind;
using guest_protocol::kHeaderSize;
using guest_protocol::kTagSize;

// One device's byte stream: frames in, payloads out to the run's sinks.
class GuestChannel::Source : public ByteSink {
  public:
    Source(GuestChannel& channel, int index, std::string name)
        : channel_(channel), index_(index), name_(std::move(name)) {}

    std::size_t offer(std::span<const std::uint8_t> bytes) override;
    asio::awaitable<void> room() override;
    bool holding() const { return held_from_ < held_.size(); }

  private:
    bool ignored() const {
        return rejected_ || channel_.finished() || !channel_.broken_.empty() ||
               (channel_.bound_ >= 0 && channel_.bound_ != index_);
    }
    // Hands the held payload on; returns whether it is all gone.
    bool deliver_held();
    // A whole frame: checks it and acts on it.
    void take_frame(std::span<const std::uint8_t> frame);
    // Before this source is the channel, a bad frame only means it is not the init's.
    void refuse(const std::string& why);

    GuestChannel& channel_;
    const int index_;
    const std::string name_;
    std::uint64_t sequence_ = 0;
    bool rejected_ = false;
    std::vector<std::uint8_t> partial_;
    std::vector<std::uint8_t> held_; // a checked payload its sink has not taken yet
    std::size_t held_from_ = 0;
    ByteSink* held_sink_ = nullptr;
    bool flushing_ = false;

    // Hands what is held on as the sink makes room, whether or not the producer asks.
    void flush_later();
};

namespace {

std::uint32_t payload_length(std::span<const std::uint8_t> header) {
    return std::uint32_t(header[1]) | std::uint32_t(header[2]) << 8 |
           std::uint32_t(header[3]) << 16 | std::uint32_t(header[4]) << 24;
}

bool known_kind(std::uint8_t kind) {
    return kind >= std::uint8_t(FrameKind::stdout_data) &&
           kind <= std::uint8_t(guest_protocol::kLastKind);
}

} // namespace

void GuestChannel::Source::refuse(const std::string& why) {
    if (channel_.bound_ == index_)
        channel_.fail(fmt::format("{} (frame {} on {})", why, sequence_, name_));
    else
        rejected_ = true; // someone other than the init wrote here first: not the channel
}

std::size_t GuestChannel::Source::offer(std::span<const std::uint8_t> bytes) {
    std::size_t consumed = 0;
    while (consumed < bytes.size()) {
        if (ignored())
            return bytes.size();
        if (!deliver_held())
            return consumed;
        std::span<const std::uint8_t> rest = bytes.subspan(consumed);
        // The header first, to know how long the frame is.
        if (partial_.size() < kHeaderSize) {
            if (partial_.empty() && rest.size() >= kHeaderSize) {
                // In place: no copy unless the frame is cut.
            } else {
                std::size_t n = std::min(rest.size(), kHeaderSize - partial_.size());
                partial_.insert(partial_.end(), rest.begin(), rest.begin() + std::ptrdiff_t(n));
                consumed += n;
                continue;
            }
        }
        std::span<const std::uint8_t> header =
            partial_.empty() ? rest.first(kHeaderSize) : std::span(partial_).first(kHeaderSize);
        if (!known_kind(header[0])) {
            refuse(fmt::format("the guest sent a frame of unknown kind {}", int(header[0])));
            continue;
        }
        std::uint32_t length = payload_length(header);
        if (length > guest_protocol::kMaxPayload) {
            refuse(fmt::format("the guest sent a {}-byte frame (at most {})", length,
                               guest_protocol::kMaxPayload));
            continue;
        }
        std::size_t frame_size = kHeaderSize + length + kTagSize;
        if (partial_.empty() && rest.size() >= frame_size) {
            take_frame(rest.first(frame_size));
            consumed += frame_size;
            continue;
        }
        if (partial_.empty()) { // the header is in `rest` but the frame is cut: buffer it
            partial_.reserve(frame_size);
        }
        std::size_t n = std::min(rest.size(), frame_size - partial_.size());
        partial_.insert(partial_.end(), rest.begin(), rest.begin() + std::ptrdiff_t(n));
        consumed += n;
        if (partial_.size() == frame_size) {
            std::vector<std::uint8_t> frame = std::move(partial_);
            partial_.clear();
            take_frame(frame);
        }
    }
    flush_later();
    return consumed;
}

void GuestChannel::Source::take_frame(std::span<const std::uint8_t> frame) {
    auto header = frame.first<kHeaderSize>();
    auto kind = FrameKind(header[0]);
    auto payload = frame.subspan(kHeaderSize, frame.size() - kHeaderSize - kTagSize);
    auto tag = frame.last<kTagSize>();
    guest_protocol::Tag expected =
        guest_protocol::frame_tag(channel_.key_, sequence_, header, payload);
    if (sodium_memcmp(expected.data(), tag.data(), kTagSize) != 0) {
        refuse("a frame failed its check: something other than the guest init wrote to the "
               "result channel");
        return;
    }
    if (channel_.bound_ != index_) {
        std::uint32_t version = 0;
        if (kind != FrameKind::hello || payload.size() != sizeof version) {
            rejected_ = true;
            return;
        }
        std::memcpy(&version, payload.data(), sizeof version);
        if (version != guest_protocol::kVersion) {
            channel_.fail(fmt::format("the guest init speaks protocol {}, not {} (a stale "
                                      "ktstr-guest-init?)",
                                      version, guest_protocol::kVersion));
            return;
        }
        channel_.bound_ = index_;
        ++sequence_;
        return;
    }
    ++sequence_;
    const Handlers& handlers = channel_.handlers_;
    switch (kind) {
    case FrameKind::stdout_data:
    case FrameKind::stderr_data:
    case FrameKind::scheduler_output:
        held_sink_ = kind == FrameKind::stdout_data   ? handlers.stdout_sink
                     : kind == FrameKind::stderr_data ? handlers.stderr_sink
                                                      : handlers.scheduler_sink;
        held_.assign(payload.begin(), payload.end());
        held_from_ = 0;
        deliver_held();
        break;
    case FrameKind::report: {
        nlohmann::json report = nlohmann::json::parse(payload.begin(), payload.end(), nullptr,
                                                      /*allow_exceptions=*/false);
        if (!report.is_object() || !report.contains("type") || !report["type"].is_string()) {
            channel_.fail("the guest init sent a report that is not a JSON object with a type");
            return;
        }
        if (channel_.reports_.size() >= kMaxReports) {
            channel_.fail(fmt::format("the guest sent more than {} reports", kMaxReports));
            return;
        }
        channel_.reports_.push_back(std::move(report));
        break;
    }
    case FrameKind::not_run:
        channel_.not_run_ = true;
        if (handlers.on_finished)
            handlers.on_finished();
        break;
    case FrameKind::exit_status: {
        std::int32_t status = 0;
        if (payload.size() != sizeof status) {
            channel_.fail("the guest init sent a malformed exit status");
            return;
        }
        std::memcpy(&status, payload.data(), sizeof status);
        if (status < 0 || status > 255) {
            channel_.fail(fmt::format("the guest init sent exit status {}, outside 0-255", status));
            return;
        }
        channel_.exit_status_ = status;
        if (handlers.on_finished)
            handlers.on_finished();
        break;
    }
    case FrameKind::init_error:
        channel_.init_error_.assign(payload.begin(), payload.end());
        if (channel_.init_error_.empty())
            channel_.init_error_ = "(no reason given)";
        if (handlers.on_finished)
            handlers.on_finished();
        break;
    case FrameKind::hang_report_due: {
        std::uint32_t due_in = 0;
        if (payload.size() != sizeof due_in) {
            channel_.fail("the guest init sent a malformed hang report time");
            return;
        }
        std::memcpy(&due_in, payload.data(), sizeof due_in);
        if (handlers.on_hang_report_due)
            handlers.on_hang_report_due(std::chrono::milliseconds(due_in));
        break;
    }
    case FrameKind::console_ready:
        if (handlers.on_console_ready)
            handlers.on_console_ready();
        break;
    case FrameKind::hello: channel_.fail("the guest init greeted twice"); break;
    }
}

bool GuestChannel::Source::deliver_held() {
    if (held_from_ < held_.size() && held_sink_)
        held_from_ += held_sink_->offer(std::span(held_).subspan(held_from_));
    if (held_from_ < held_.size() && held_sink_ && !ignored())
        return false;
    held_.clear();
    held_from_ = 0;
    return true;
}

asio::awaitable<void> GuestChannel::Source::room() {
    while (!deliver_held())
        co_await held_sink_->room();
}

void GuestChannel::Source::flush_later() {
    if (flushing_ || !holding() || !channel_.handlers_.executor)
        return;
    flushing_ = true;
    asio::co_spawn(
        *channel_.handlers_.executor,
        [this]() -> asio::awaitable<void> {
            co_await room();
            flushing_ = false;
        },
        asio::detached);
}

guest_protocol::Key GuestChannel::make_key() {
    if (::sodium_init() < 0)
        throw Error("libsodium cannot initialise (no source of randomness?)");
    guest_protocol::Key key;
    randombytes_buf(key.data(), key.size());
    return key;
}

GuestChannel::GuestChannel(const guest_protocol::Key& key, Handlers handlers,
                           std::array<std::string, kSources> source_names)
    : key_(key), handlers_(std::move(handlers)) {
    for (std::size_t i = 0; i < kSources; ++i)
        sources_.push_back(std::make_unique<Source>(*this, int(i), std::move(source_names[i])));
}

GuestChannel::~GuestChannel() = default;

ByteSink& GuestChannel::source(std::size_t index) { return *sources_.at(index); }

asio::awaitable<void> GuestChannel::flushed() {
    for (auto& source : sources_)
        while (source->holding())
            co_await source->room();
}

void GuestChannel::fail(const std::string& why) {
    if (!broken_.empty())
        return;
    broken_ = "the result channel broke: " + why;
    if (handlers_.on_broken)
        handlers_.on_broken(broken_);
}

} // namespace ktstr
