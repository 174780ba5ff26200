#include "ktstr/base/arch.hpp"

#include "ktstr/base/error.hpp"

namespace ktstr {

Arch parse_arch(std::string_view name) {
    if (name == "x86_64" || name == "amd64")
        return Arch::x86_64;
    if (name == "arm64" || name == "aarch64")
        return Arch::arm64;
    throw UsageError("unknown architecture '" + std::string(name) + "' (expected x86_64 or arm64)");
}

// The build names the host architecture once (KTSTR_HOST_ARCH, from CMake).
Arch host_arch() {
    static const Arch arch = parse_arch(KTSTR_HOST_ARCH);
    return arch;
}

std::string_view arch_name(Arch arch) { return arch == Arch::x86_64 ? "x86_64" : "arm64"; }

std::string_view debian_arch(Arch arch) { return arch == Arch::x86_64 ? "amd64" : "arm64"; }

} // namespace ktstr
