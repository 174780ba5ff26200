#include "ktstr/kernel/kernel_cache.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/kernel/vmlinux.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace ktstr {

std::string CachedKernel::name() const { return version + "-" + std::string(arch_name(arch)); }

KernelCache::KernelCache(fs::path root)
    : root_(root.empty() ? ktstr_cache_dir() / "kernels" : std::move(root)) {}

std::vector<CachedKernel> KernelCache::list() const {
    std::vector<CachedKernel> kernels;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root_, ec)) {
        fs::path meta = entry.path() / "kernel.json";
        if (!entry.is_directory() || entry.path().filename().string().starts_with(".") ||
            !fs::exists(meta))
            continue;
        try {
            auto json = nlohmann::json::parse(read_file(meta));
            CachedKernel kernel{json.at("version"), json.at("release"),
                                parse_arch(json.at("arch").get<std::string>()),
                                json.at("package_version"), entry.path()};
            kernels.push_back(std::move(kernel));
        } catch (const std::exception&) {
            continue; // a damaged entry is not a kernel; `kernel fetch` replaces it
        }
    }
    std::sort(kernels.begin(), kernels.end(), [](const auto& a, const auto& b) {
        return ::strverscmp(a.version.c_str(), b.version.c_str()) > 0;
    });
    return kernels;
}

std::optional<CachedKernel> KernelCache::newest(Arch arch) const {
    for (auto& kernel : list())
        if (kernel.arch == arch)
            return kernel;
    return std::nullopt;
}

std::optional<CachedKernel> KernelCache::find(const std::string& spec, Arch arch) const {
    for (auto& kernel : list())
        if (kernel.arch == arch &&
            (spec == kernel.version || spec == kernel.release || spec == kernel.name()))
            return kernel;
    return std::nullopt;
}

KernelImageFormat check_kernel_image(const fs::path& image, Arch arch) {
    std::ifstream in(image, std::ios::binary);
    if (!in || fs::is_directory(image))
        throw UsageError("kernel image " + image.string() + " cannot be read");
    std::array<char, 0x210> header{};
    in.read(header.data(), header.size());
    auto got = static_cast<std::size_t>(in.gcount());
    if (arch == Arch::x86_64) {
        // Boot protocol: "HdrS" at 0x202 and the 0xAA55 boot flag at 0x1FE.
        if (got >= 0x206 && std::memcmp(&header[0x202], "HdrS", 4) == 0 &&
            static_cast<unsigned char>(header[0x1fe]) == 0x55 &&
            static_cast<unsigned char>(header[0x1ff]) == 0xaa)
            return KernelImageFormat::bzimage;
        // An uncompressed vmlinux: ELF, 64-bit, e_machine EM_X86_64 (62) at 0x12.
        if (got >= 0x14 &&
            std::memcmp(header.data(),
                        "\x7f"
                        "ELF",
                        4) == 0 &&
            header[4] == 2 && header[0x12] == 62 && header[0x13] == 0)
            return KernelImageFormat::x86_64_elf;
        throw UsageError(image.string() +
                         " is not an x86-64 bzImage (no 'HdrS' boot header) nor an x86-64 "
                         "vmlinux (ELF)");
    }
    // arm64 Image header: magic "ARM\x64" at offset 0x38.
    if (got >= 0x3c && std::memcmp(&header[0x38], "ARM\x64", 4) == 0)
        return KernelImageFormat::arm64_image;
    throw UsageError(image.string() + " is not an arm64 Image (no 'ARM\\x64' magic)");
}

bool config_enables(const std::string& config_text, std::string_view option) {
    std::string line = std::string(option) + "=y\n";
    return config_text.starts_with(line) || config_text.find("\n" + line) != std::string::npos;
}

std::optional<fs::path> unpack_pvh_image(const CachedKernel& kernel) {
    // Every run asks: once unpacked (only ever for a PVH kernel), nothing is read again.
    if (kernel.arch != Arch::x86_64)
        return std::nullopt;
    if (fs::exists(kernel.pvh_image()))
        return kernel.pvh_image();
    if (!fs::exists(kernel.config()) || !config_enables(read_file(kernel.config()), "CONFIG_PVH"))
        return std::nullopt;
    write_file_atomic(kernel.pvh_image(), extract_vmlinux(read_binary_file(kernel.image())));
    return kernel.pvh_image();
}

KernelChoice choose_kernel(const std::optional<std::string>& spec, Arch arch,
                           const KernelCache& cache) {
    if (!spec) {
        auto newest = cache.newest(arch);
        if (!newest)
            throw UsageError("no " + std::string(arch_name(arch)) +
                             " kernel in the cache (run 'ktstr kernel fetch')");
        return {newest->image(), newest};
    }
    if (auto cached = cache.find(*spec, arch))
        return {cached->image(), cached};
    bool looks_like_path = spec->find('/') != std::string::npos || fs::exists(*spec);
    if (!looks_like_path)
        throw UsageError("no cached " + std::string(arch_name(arch)) + " kernel '" + *spec +
                         "' (see 'ktstr kernel list')");
    if (!fs::exists(*spec))
        throw UsageError("kernel image " + *spec + " does not exist");
    check_kernel_image(*spec, arch);
    return {fs::path(*spec), std::nullopt};
}

} // namespace ktstr
