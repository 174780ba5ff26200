// Tests that need /dev/kvm; the test command runs them in the sandbox.
#include "ktstr/vmm/guest_memory.hpp"
#include "ktstr/vmm/kvm.hpp"
#include "ktstr/vmm/x86_64/boot.hpp"
#include "ktstr/vmm/x86_64/self_check.hpp"

#include <array>
#include <catch2/catch_test_macros.hpp>

using namespace ktstr;

TEST_CASE("a guest's port write reaches the VMM, then the vCPU halts", "[kvm]") {
    SelfCheckReport report = run_kvm_self_check();
    INFO(report.summary());
    REQUIRE(report.exits.size() == 2);
    const ObservedExit& io = report.exits[0];
    CHECK(io.reason == KVM_EXIT_IO);
    CHECK(io.port_write);
    CHECK(io.port == 0x3f8);
    CHECK(io.data == std::vector<std::uint8_t>{'K'});
    CHECK(report.exits[1].reason == KVM_EXIT_HLT);
    CHECK(report.passed());
}

TEST_CASE("guest stores land in the VMM's view of guest memory", "[kvm]") {
    Kvm kvm;
    Vm vm(kvm);
    GuestMemory memory({{GuestAddress(0), 0x10000}});
    vm.map_memory(memory);
    // Real mode: mov byte [0x2345], 0x5a; mov ax, [0x3000]; mov [0x3002], ax; hlt
    const std::array<std::uint8_t, 13> code{0xc6, 0x06, 0x45, 0x23, 0x5a, 0xa1, 0x00,
                                            0x30, 0xa3, 0x02, 0x30, 0xf4, 0xf4};
    memory.write_bytes(GuestAddress(0x1000), code);
    memory.write<std::uint16_t>(GuestAddress(0x3000), 0xbeef);

    Vcpu vcpu = vm.create_vcpu(0);
    x86_64::setup_real_mode_vcpu(vcpu, GuestAddress(0x1000));

    std::uint32_t reason = vcpu.run();
    while (reason == KVM_EXIT_INTR)
        reason = vcpu.run();
    REQUIRE(reason == KVM_EXIT_HLT);
    CHECK(memory.read<std::uint8_t>(GuestAddress(0x2345)) == 0x5a);
    CHECK(memory.read<std::uint16_t>(GuestAddress(0x3002)) == 0xbeef);
    CHECK(x86_64::read_regs(vcpu).rip == 0x100c);
}
