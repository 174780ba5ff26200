#include "ktstr/base/xz.hpp"

#include "ktstr/base/error.hpp"

#include <lzma.h>

namespace ktstr {

std::vector<std::uint8_t> xz_decompress(std::span<const std::uint8_t> compressed) {
    lzma_stream stream = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&stream, UINT64_MAX, 0) != LZMA_OK)
        throw Error("xz: cannot initialise the decoder");

    std::vector<std::uint8_t> out(compressed.size() * 4 + 4096);
    stream.next_in = compressed.data();
    stream.avail_in = compressed.size();
    lzma_ret ret = LZMA_OK;
    while (ret == LZMA_OK) {
        if (stream.total_out == out.size())
            out.resize(out.size() * 2);
        stream.next_out = out.data() + stream.total_out;
        stream.avail_out = out.size() - stream.total_out;
        ret = lzma_code(&stream, LZMA_FINISH);
    }
    std::size_t produced = stream.total_out;
    lzma_end(&stream);
    if (ret != LZMA_STREAM_END)
        throw Error("xz: corrupt or truncated data (liblzma error " + std::to_string(ret) + ")");
    out.resize(produced);
    return out;
}

} // namespace ktstr
