#pragma once

#include "ktstr/harness/guest_protocol.hpp"
#include "ktstr/io/byte_sink.hpp"

#include <array>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ktstr {

// The host's end of the guest init's result channel (guest_protocol.hpp). The init may
// speak on either of two devices; the first whose first frame is a hello with a valid tag
// becomes the channel, and the other is ignored from then on. Once bound, a frame that
// fails its tag, a bad length or kind, or an exit status outside 0-255 breaks the channel
// for good (on_broken, so that the run stops at once with that verdict); nothing after the
// exit status or an init error is taken. Frames are parsed in place, and only a frame that
// arrives in pieces is buffered (at most one frame). Executor thread only.
class GuestChannel {
  public:
    struct Handlers {
        ByteSink* stdout_sink = nullptr; // null: the bytes are dropped
        ByteSink* stderr_sink = nullptr;
        ByteSink* scheduler_sink = nullptr; // the scheduler's output
        std::function<void()> on_console_ready = {};
        std::function<void()> on_finished = {}; // the exit status or an init error arrived
        // The init's hang report (guest_protocol::kHangReportFile) is due this far from now.
        std::function<void(std::chrono::milliseconds)> on_hang_report_due = {};
        std::function<void(const std::string&)> on_broken = {};
        // Where a payload that a full sink could take only part of is handed on later, by
        // a coroutine of its own: the producer counts it taken and may have nothing more
        // to offer. Without an executor the rest waits for the next offer.
        asio::io_context* executor = nullptr;
    };
    static constexpr std::size_t kSources = 2;
    // A fresh random key for one boot.
    static guest_protocol::Key make_key();

    GuestChannel(const guest_protocol::Key& key, Handlers handlers,
                 std::array<std::string, kSources> source_names = {"virtio-console", "COM2"});
    ~GuestChannel();

    // Where the bytes of device `index` go.
    ByteSink& source(std::size_t index);
    // Completes once every payload taken has reached its sink.
    asio::awaitable<void> flushed();

    std::optional<int> exit_status() const { return exit_status_; }
    const std::string& init_error() const { return init_error_; }
    // The init did not start the command (the scheduler did not attach).
    bool command_not_run() const { return not_run_; }
    // The JSON reports the init sent, in order.
    const std::vector<nlohmann::json>& reports() const { return reports_; }
    // Why the channel broke, or empty while it is fine.
    const std::string& broken() const { return broken_; }
    bool finished() const { return exit_status_ || !init_error_.empty() || not_run_; }
    // More reports than any run makes: a guest sending more is misbehaving.
    static constexpr std::size_t kMaxReports = 100'000;

  private:
    class Source;
    friend class Source;
    void fail(const std::string& why);

    guest_protocol::Key key_;
    Handlers handlers_;
    std::vector<std::unique_ptr<Source>> sources_;
    int bound_ = -1; // the source that greeted first
    std::optional<int> exit_status_;
    std::string init_error_;
    bool not_run_ = false;
    std::vector<nlohmann::json> reports_;
    std::string broken_;
};

} // namespace ktstr
