#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"
#include "ktstr/kernel/module_tree.hpp"

#include <catch2/catch_test_macros.hpp>

using namespace ktstr;
namespace fs = std::filesystem;

TEST_CASE("module load order puts dependencies first, once each", "[modules]") {
    TempDir dir("modules-test");
    write_file_atomic(
        dir.path() / "modules.dep",
        std::string("kernel/arch/x86/kvm/kvm-amd.ko.xz: kernel/arch/x86/kvm/kvm.ko.xz "
                    "kernel/drivers/crypto/ccp/ccp.ko.xz\n"
                    "kernel/arch/x86/kvm/kvm.ko.xz: kernel/virt/lib/irqbypass.ko.xz\n"
                    "kernel/virt/lib/irqbypass.ko.xz:\n"
                    "kernel/drivers/crypto/ccp/ccp.ko.xz:\n"
                    "kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz\n"
                    "kernel/net/9p/9pnet.ko.xz:\n"));
    ModuleTree tree(dir.path());
    auto order = tree.load_order({"kvm-amd", "9p", "kvm"});
    std::vector<fs::path> expected = {
        "kernel/virt/lib/irqbypass.ko.xz",     "kernel/arch/x86/kvm/kvm.ko.xz",
        "kernel/drivers/crypto/ccp/ccp.ko.xz", "kernel/arch/x86/kvm/kvm-amd.ko.xz",
        "kernel/net/9p/9pnet.ko.xz",           "kernel/fs/9p/9p.ko.xz"};
    CHECK(order == expected);
    CHECK(module_name("kernel/arch/x86/kvm/kvm-amd.ko.xz") == "kvm_amd");
    CHECK_THROWS_AS(tree.load_order({"nosuchmodule"}), Error);
}

TEST_CASE("a dependency cycle in modules.dep is an error, not a hang", "[modules]") {
    TempDir dir("modules-test");
    write_file_atomic(dir.path() / "modules.dep", std::string("a.ko: b.ko\nb.ko: a.ko\n"));
    CHECK_THROWS_AS(ModuleTree(dir.path()).load_order({"a"}), Error);
}
