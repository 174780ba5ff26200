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

Arch host_arch() {
#if defined(__x86_64__)
    return Arch::x86_64;
#elif defined(__aarch64__)
    return Arch::arm64;
#else
#error "ktstr runs on x86-64 and arm64 hosts"
#endif
}

std::string_view arch_name(Arch arch) { return arch == Arch::x86_64 ? "x86_64" : "arm64"; }

std::string_view debian_arch(Arch arch) { return arch == Arch::x86_64 ? "amd64" : "arm64"; }

} // namespace ktstr
