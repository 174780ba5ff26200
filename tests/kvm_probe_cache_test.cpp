#include "ktstr/base/arch.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/sandbox/sandbox.hpp"
#include "ktstr/vmm/kvm.hpp"

#include <catch2/catch_test_macros.hpp>
#include <cstdlib>
#include <string>

using namespace ktstr;

TEST_CASE("whether KVM runs guests is probed once per host boot, then read from the cache",
          "[sandbox]") {
    if (!Kvm::usable())
        SKIP("no usable /dev/kvm");
    if (std::getenv(kInSandboxVariable))
        SKIP("inside the emulated sandbox nothing is cached");
    TempDir cache("ktstr-probe-cache");
    const char* saved = std::getenv("XDG_CACHE_HOME");
    std::string restore = saved ? saved : "";
    ::setenv("XDG_CACHE_HOME", cache.path().c_str(), 1);
    bool runs = host_kvm_runs_guests();
    auto file = cache.path() / "ktstr" / "kvm-runs-guests";
    std::string boot_id = read_file("/proc/sys/kernel/random/boot_id");
    boot_id.resize(boot_id.find('\n'));
    std::string key = boot_id + " " + std::string(arch_name(host_arch())) + " ";
    CHECK(read_file(file) == key + (runs ? "yes\n" : "no\n"));
    // The cached answer is what the next call gives (here the opposite, to tell it apart).
    write_file_atomic(file, key + (runs ? "no\n" : "yes\n"));
    CHECK(host_kvm_runs_guests() == !runs);
    // Another boot's answer is not this boot's: probed again.
    write_file_atomic(file, "another-boot " + std::string(arch_name(host_arch())) + " " +
                                (runs ? "no\n" : "yes\n"));
    CHECK(host_kvm_runs_guests() == runs);
    CHECK(read_file(file) == key + (runs ? "yes\n" : "no\n"));
    if (saved)
        ::setenv("XDG_CACHE_HOME", restore.c_str(), 1);
    else
        ::unsetenv("XDG_CACHE_HOME");
}
