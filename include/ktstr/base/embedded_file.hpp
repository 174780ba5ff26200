#pragma once

#include <span>
#include <string_view>

namespace ktstr {

// A file of the source tree compiled into ktstr (see cmake/embed.cmake).
struct EmbeddedFile {
    std::string_view path; // relative to its folder in the source tree
    std::span<const unsigned char> data;
    std::string_view text() const {
        return {reinterpret_cast<const char*>(data.data()), data.size()};
    }
};

} // namespace ktstr
