#include "channel.hpp"

#include <cerrno>
#include <fcntl.h>
#include <fstream>
#include <termios.h>
#include <unistd.h>
#include <vector>

namespace proto = ktstr::guest_protocol;

namespace ktstr::guest {
namespace {

int channel_fd = -1;
proto::Key key{};
std::uint64_t sequence = 0;

bool read_key() {
    std::ifstream in(proto::kChannelKeyFile, std::ios::binary);
    in.read(reinterpret_cast<char*>(key.data()), key.size());
    bool complete = in.gcount() == std::streamsize(key.size());
    ::unlink(proto::kChannelKeyFile);
    return complete;
}

} // namespace

void write_all(int fd, const void* data, std::size_t size) {
    auto* bytes = static_cast<const char*>(data);
    while (size > 0) {
        ssize_t n = ::write(fd, bytes, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        bytes += n;
        size -= std::size_t(n);
    }
}

bool open_channel() {
    if (!read_key())
        return false;
    const char* path = "/dev/hvc0";
    int fd = -1;
    for (int tries = 0; tries < 200 && fd < 0; ++tries) {
        fd = ::open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
            ::usleep(10'000);
    }
    if (fd < 0) {
        path = "/dev/ttyS1"; // every byte written to a UART costs a VM exit
        fd = ::open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    }
    if (fd < 0)
        return false;
    termios raw{};
    if (::tcgetattr(fd, &raw) == 0) {
        ::cfmakeraw(&raw);
        ::tcsetattr(fd, TCSANOW, &raw);
    }
    ::unlink(path);
    channel_fd = fd;
    std::uint32_t version = proto::kVersion;
    send_frame(proto::FrameKind::hello, &version, sizeof version);
    return true;
}

bool channel_open() { return channel_fd >= 0; }

void send_frame(proto::FrameKind kind, const void* data, std::uint32_t size) {
    // One write per frame: the host sees it whole whenever the device can carry it so.
    static std::vector<std::uint8_t> frame;
    frame.assign({std::uint8_t(kind), std::uint8_t(size), std::uint8_t(size >> 8),
                  std::uint8_t(size >> 16), std::uint8_t(size >> 24)});
    auto* payload = static_cast<const std::uint8_t*>(data);
    frame.insert(frame.end(), payload, payload + size);
    proto::Tag tag = proto::frame_tag(key, sequence++, std::span(frame).first<proto::kHeaderSize>(),
                                      std::span(frame).subspan(proto::kHeaderSize));
    frame.insert(frame.end(), tag.begin(), tag.end());
    write_all(channel_fd, frame.data(), frame.size());
}

void send_text(proto::FrameKind kind, const std::string& text) {
    send_frame(kind, text.data(), std::uint32_t(text.size()));
}

} // namespace ktstr::guest
