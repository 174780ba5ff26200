#pragma once

#include <string>
#include <string_view>

namespace ktstr {

enum class Arch { x86_64, arm64 };

// Accepts the kernel's and Debian's names: x86_64/amd64, arm64/aarch64.
Arch parse_arch(std::string_view name);
Arch host_arch();
// "x86_64" or "arm64".
std::string_view arch_name(Arch arch);
// Debian's architecture name: "amd64" or "arm64".
std::string_view debian_arch(Arch arch);

} // namespace ktstr
