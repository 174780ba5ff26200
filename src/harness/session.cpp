#include "ktstr/harness/session.hpp"

#include "ktstr/base/fd.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/base/hang_watchdog.hpp"
#include "ktstr/base/kernel_log.hpp"
#include "ktstr/harness/boot_images.hpp"
#include "ktstr/harness/guest_channel.hpp"
#include "ktstr/harness/verdict.hpp"
#include "ktstr/io/fd_writer.hpp"
#include "ktstr/io/thread_feed.hpp"
#include "ktstr/vmm/machine.hpp"

#include <algorithm>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <csignal>
#include <mutex>
#include <optional>
#include <string_view>
#include <termios.h>
#include <unistd.h>

namespace ktstr {
namespace {

using Clock = BootTimeline::Clock;
constexpr std::size_t kConsoleTail = 64 * 1024;
constexpr std::uint8_t kEscapeKey = 0x1d; // Ctrl-]
// After a stop that the guest did not ask for (timeout, signal, error), what is still
// buffered gets this long to reach a reader that may be the reason for the stop.
constexpr auto kFlushAfterAbort = std::chrono::seconds(1);
// How long past the timeout a run may take to stop and tear down before it counts as hung.
constexpr auto kHangMargin = std::chrono::seconds(60);

// Puts the terminal on stdin in raw mode (keys go to the guest as typed) and restores it.
class RawTerminal {
  public:
    RawTerminal() {
        if (::tcgetattr(STDIN_FILENO, &saved_) != 0)
            return;
        termios raw = saved_;
        ::cfmakeraw(&raw);
        active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    RawTerminal(const RawTerminal&) = delete;
    RawTerminal& operator=(const RawTerminal&) = delete;
    ~RawTerminal() {
        if (active_)
            ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    }

  private:
    termios saved_{};
    bool active_ = false;
};

// The kernel console's tail, kept for the verdict, and the moment init announced itself.
class ConsoleCapture {
  public:
    explicit ConsoleCapture(BootTimeline* timeline) : timeline_(timeline) {}
    void add(std::span<const std::uint8_t> bytes) {
        std::lock_guard lock(mutex_);
        // Where a marker could start that the bytes before these did not hold whole.
        std::size_t from = text_.size() - std::min(text_.size(), kLongestMarker);
        text_.append(bytes.begin(), bytes.end());
        if (timeline_) {
            timeline_->console_last_output = Clock::now();
            if (!timeline_->init_started &&
                text_.find(guest_protocol::kInitStartedMarker, from) != std::string::npos)
                timeline_->init_started = Clock::now();
            if (!timeline_->hang_report_seen &&
                text_.find(guest_protocol::kHangReportMarker, from) != std::string::npos)
                timeline_->hang_report_seen = Clock::now();
        }
        if (text_.size() > 2 * kConsoleTail)
            text_.erase(0, text_.size() - kConsoleTail);
    }
    std::string text() const {
        std::lock_guard lock(mutex_);
        return text_;
    }

  private:
    static constexpr std::size_t kLongestMarker =
        std::max(std::string_view(guest_protocol::kInitStartedMarker).size(),
                 std::string_view(guest_protocol::kHangReportMarker).size());
    BootTimeline* timeline_;
    mutable std::mutex mutex_;
    std::string text_;
};

// Keeps the last kTail bytes of what it is offered (the scheduler's output, for the
// verdict), and passes everything on to `echo` when there is one (-v).
class TailSink : public ByteSink {
  public:
    static constexpr std::size_t kTail = 64 * 1024;
    explicit TailSink(ByteSink* echo) : echo_(echo) {}
    std::size_t offer(std::span<const std::uint8_t> bytes) override {
        std::size_t n = echo_ ? echo_->offer(bytes) : bytes.size();
        text_.append(bytes.begin(), bytes.begin() + std::ptrdiff_t(n));
        if (text_.size() > 2 * kTail)
            text_.erase(0, text_.size() - kTail);
        return n;
    }
    asio::awaitable<void> room() override {
        if (echo_)
            co_await echo_->room();
    }
    std::string text() const {
        return text_.size() > kTail ? text_.substr(text_.size() - kTail) : text_;
    }

  private:
    ByteSink* echo_;
    std::string text_;
};

bool guest_ended_it(StopReason::Kind kind) {
    return kind == StopReason::Kind::reset || kind == StopReason::Kind::poweroff;
}

} // namespace

SessionResult run_session(const RunPlan& plan, bool count_exits) {
    const RunOptions& options = plan.options;
    // Every stop is bounded (the timeout, then kFlushAfterAbort); past that, ktstr hung.
    std::optional<HangWatchdog> watchdog;
    if (plan.timeout)
        watchdog.emplace(*plan.timeout + kHangMargin, "the run", verdicts::kError);
    KernelLogWatch host_log;
    SessionResult result;
    result.timeline.started = Clock::now();
    BootTimeline* timeline = &result.timeline;
    MachineConfig config;
    config.topology = plan.topology;
    config.memory_bytes = plan.memory_bytes;
    config.hugepages = options.hugepages;
    config.x2apic = options.x2apic;
    config.run.timeout = plan.timeout;
    config.kernel = read_binary_file(plan.kernel.image);
    timeline->kernel_read = Clock::now();
    guest_protocol::Key key = GuestChannel::make_key();
    config.initrd = build_initramfs(plan, key);
    timeline->initramfs_built = Clock::now();
    config.command_line = kernel_command_line(plan);
    if (count_exits)
        config.run.exit_counts = &timeline->exits;
    config.on_started = [timeline] {
        timeline->vmm_ready = Clock::now();
    };

    // The executor first: everything below has coroutines on it.
    asio::io_context executor(1);
    VmStop stop;
    auto output_failed = [&](const char* stream) {
        return [&, stream](const std::string& why) {
            if (result.output_failure.empty())
                result.output_failure = std::string("writing the guest's ") + stream +
                                        " to this process's failed (" + why + ")";
            stop.request({StopReason::Kind::interrupted, result.output_failure, SIGPIPE});
        };
    };
    FdWriter out(executor, STDOUT_FILENO, output_failed("standard output"));
    FdWriter err(executor, STDERR_FILENO, output_failed("standard error"));

    UniqueFd input_gate;
    if (options.interactive)
        input_gate = make_eventfd();
    TailSink scheduler_output(options.verbose ? &err : nullptr);
    GuestChannel channel(key, {.stdout_sink = &out,
                               .stderr_sink = &err,
                               .scheduler_sink = &scheduler_output,
                               .on_console_ready =
                                   [&] {
                                       if (input_gate)
                                           signal_eventfd(input_gate.get());
                                   },
                               .on_finished =
                                   [&] {
                                       if (!timeline->command_exited)
                                           timeline->command_exited = Clock::now();
                                   },
                               .on_hang_report_due =
                                   [&](std::chrono::milliseconds due_in) {
                                       if (!timeline->hang_report_due) // the first promise
                                           timeline->hang_report_due = Clock::now() + due_in;
                                   },
                               .on_broken =
                                   [&](const std::string& why) {
                                       stop.request({StopReason::Kind::channel_broken, why});
                                   },
                               .executor = &executor});
    config.virtio_console_output = &channel.source(0);
    ThreadFeed com2(executor, channel.source(1));
    config.second_uart_output = [&](auto bytes) {
        com2.write(bytes);
    };

    // COM1 is the kernel console: kept for the verdict, shown with -v, and for `ktstr
    // shell` the command's terminal.
    ConsoleCapture console(timeline);
    std::optional<ThreadFeed> console_out;
    if (options.interactive)
        console_out.emplace(executor, out);
    else if (options.verbose)
        console_out.emplace(executor, err);
    config.console_output = [&](auto bytes) {
        console.add(bytes);
        if (console_out)
            console_out->write(bytes);
    };
    stop.on_request([&] {
        com2.close();
        if (console_out)
            console_out->close();
    });

    std::optional<RawTerminal> raw_terminal;
    if (options.interactive) {
        // Input waits for the guest's console (see guest_protocol::console_ready).
        config.console_input_gate_fd = input_gate.get();
        config.console_input_fd = STDIN_FILENO;
        if (::isatty(STDIN_FILENO)) {
            config.input_escape = kEscapeKey;
            raw_terminal.emplace();
        } else { // end of file for the guest's line discipline: one Ctrl-D ends a partial line
            config.console_input_at_end = {0x04, 0x04};
        }
    }

    config.run.after_stop = [&](const StopReason& reason) -> asio::awaitable<void> {
        auto flush_all = [&]() -> asio::awaitable<void> {
            co_await com2.flushed();
            co_await channel.flushed();
            if (console_out)
                co_await console_out->flushed();
            co_await out.flushed();
            co_await err.flushed();
        };
        if (guest_ended_it(reason.kind)) {
            co_await flush_all(); // bounded by the timeout and signals (run_vm)
        } else {
            using namespace asio::experimental::awaitable_operators;
            asio::steady_timer limit(executor, kFlushAfterAbort);
            co_await (flush_all() || limit.async_wait(asio::use_awaitable));
        }
    };

    result.stop = run_machine(host_platform(), config, executor, stop);
    timeline->torn_down = Clock::now();
    raw_terminal.reset();
    result.exit_status = channel.exit_status();
    result.init_error = channel.init_error();
    result.channel_broken = channel.broken();
    result.console = console.text();
    result.command_not_run = channel.command_not_run();
    result.reports = channel.reports();
    result.scheduler_output = scheduler_output.text();
    result.host_trouble = host_log.trouble();
    return result;
}

} // namespace ktstr
