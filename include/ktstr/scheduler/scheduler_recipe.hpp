#pragma once

#include "ktstr/base/embedded_file.hpp"

#include <span>

namespace ktstr {

// build.sh and the sources of ktstr's own schedulers (scx_ktstr), from schedulers/.
std::span<const EmbeddedFile> scheduler_recipe_files();

} // namespace ktstr
