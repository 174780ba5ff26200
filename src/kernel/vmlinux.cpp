#include "ktstr/kernel/vmlinux.hpp"

#include "ktstr/base/error.hpp"

#include <algorithm>
#include <cstring>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <zstd.h>

namespace ktstr {

namespace {

// Setup header fields (Documentation/arch/x86/boot.rst); payload_offset counts from the
// protected-mode code, which starts after the setup sectors.
constexpr std::size_t kSetupSects = 0x1f1;
constexpr std::size_t kPayloadOffset = 0x248;
constexpr std::size_t kPayloadLength = 0x24c;
constexpr std::uint8_t kZstdMagic[] = {0x28, 0xb5, 0x2f, 0xfd};
// More than any kernel, less than a decompression bomb could claim.
constexpr std::uint64_t kMaxVmlinux = 1ull << 30;

std::uint32_t u32_at(std::span<const std::uint8_t> bytes, std::size_t at) {
    std::uint32_t value;
    std::memcpy(&value, bytes.data() + at, 4);
    return value;
}

} // namespace

std::vector<std::uint8_t> extract_vmlinux(std::span<const std::uint8_t> bzimage) {
    if (bzimage.size() < 0x250 || std::memcmp(bzimage.data() + 0x202, "HdrS", 4) != 0)
        throw Error("not a bzImage (no 'HdrS' boot header)");
    std::size_t setup_sects = bzimage[kSetupSects] ? bzimage[kSetupSects] : 4;
    std::uint64_t start = (setup_sects + 1) * 512ull + u32_at(bzimage, kPayloadOffset);
    std::uint64_t length = u32_at(bzimage, kPayloadLength);
    if (start > bzimage.size() || length > bzimage.size() - start || length < 4)
        throw Error("the bzImage's payload lies outside the file");
    auto payload = bzimage.subspan(start, length);
    if (std::memcmp(payload.data(), kZstdMagic, 4) != 0)
        throw Error(fmt::format("the bzImage's payload is not zstd-compressed (it starts with "
                                "{:02x}); only zstd kernels are unpacked for PVH",
                                fmt::join(payload.first(4), " ")));
    // The kernel's build appends the uncompressed size after the frame: decompress the frame.
    std::size_t frame = ZSTD_findFrameCompressedSize(payload.data(), payload.size());
    if (ZSTD_isError(frame))
        throw Error(std::string("the bzImage's zstd payload is damaged: ") +
                    ZSTD_getErrorName(frame));
    ZSTD_DStream* stream = ZSTD_createDStream();
    if (!stream)
        throw Error("zstd: cannot create a decompression stream");
    struct Freer {
        ZSTD_DStream* stream;
        ~Freer() { ZSTD_freeDStream(stream); }
    } freer{stream};
    std::vector<std::uint8_t> out(std::max<std::size_t>(frame * 4, 1 << 20));
    ZSTD_inBuffer in{payload.data(), frame, 0};
    ZSTD_outBuffer to{out.data(), out.size(), 0};
    for (;;) {
        std::size_t rest = ZSTD_decompressStream(stream, &to, &in);
        if (ZSTD_isError(rest))
            throw Error(std::string("the bzImage's zstd payload is damaged: ") +
                        ZSTD_getErrorName(rest));
        if (rest == 0)
            break;
        if (in.pos == in.size && to.pos < to.size)
            throw Error("the bzImage's zstd payload is truncated");
        if (to.pos == to.size) {
            if (out.size() >= kMaxVmlinux)
                throw Error("the bzImage's payload unpacks to more than 1 GiB");
            out.resize(out.size() * 2);
            to = {out.data(), out.size(), to.pos};
        }
    }
    out.resize(to.pos);
    return out;
}

} // namespace ktstr
