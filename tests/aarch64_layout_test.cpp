#include "ktstr/base/error.hpp"
#include "ktstr/vmm/aarch64/layout.hpp"

#include <catch2/catch_test_macros.hpp>

using namespace ktstr;
using namespace ktstr::aarch64;

namespace {

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kGiB = 1ull << 30;

} // namespace

TEST_CASE("arm64 memory map regions never overlap, for every vCPU count", "[aarch64]") {
    const MemoryMap reference = memory_map(1, 64 * kMiB);
    for (std::uint64_t ram : {64 * kMiB, 1 * kGiB, 300 * kGiB}) {
        for (std::uint32_t vcpus = 1; vcpus <= kMaxVcpus; ++vcpus) {
            INFO("vcpus " << vcpus << ", RAM " << (ram >> 20) << " MiB");
            MemoryMap map = memory_map(vcpus, ram);
            auto regions = map.regions();
            REQUIRE(regions.size() == 6);
            for (std::size_t i = 0; i < regions.size(); ++i) {
                const auto& [name, region] = regions[i];
                INFO(name);
                REQUIRE(region.size > 0);
                REQUIRE(region.base.raw() % kMmioAlignment == 0);
                // Ascending, so the listing is also the order in the address space.
                if (i > 0)
                    REQUIRE(regions[i - 1].second.end() <= region.base);
                for (std::size_t j = i + 1; j < regions.size(); ++j)
                    REQUIRE_FALSE(region.overlaps(regions[j].second));
                if (name != "ram")
                    REQUIRE(region.end() <= map.ram.base);
            }

            REQUIRE(map.vcpus == vcpus);
            REQUIRE(map.gic_distributor == Region{GuestAddress(0x0800'0000), 0x1'0000});
            REQUIRE(map.gic_redistributors.base == map.gic_distributor.end());
            REQUIRE(map.gic_redistributors.size == vcpus * 0x2'0000ull);
            // Devices do not move with the vCPU count.
            REQUIRE(map.uart0 == reference.uart0);
            REQUIRE(map.uart1 == reference.uart1);
            REQUIRE(map.virtio_mmio == reference.virtio_mmio);
            REQUIRE(map.ram.base == reference.ram.base);

            REQUIRE(map.ram.size == ram);
            REQUIRE(map.ram.base.raw() % kGiB == 0);
            REQUIRE(map.fdt.size == 2 * kMiB);
            REQUIRE(map.fdt.base.raw() % (2 * kMiB) == 0);
            REQUIRE(map.fdt.end() == map.ram.end());
            REQUIRE(map.ram.contains(map.fdt));
        }
    }
}

TEST_CASE("arm64 devices sit above the largest GIC redistributor region", "[aarch64]") {
    MemoryMap largest = memory_map(kMaxVcpus, 64 * kMiB);
    REQUIRE(largest.gic_redistributors.end() <= largest.uart0.base);
    // The address the UART must not have: redistributors of 128+ vCPUs cover it.
    REQUIRE_FALSE(largest.uart0.base == GuestAddress(0x0900'0000));
    REQUIRE(largest.uart0.size == 0x1000);
    REQUIRE(largest.virtio_mmio.size >= 0x200);
    REQUIRE(largest.ram.base == GuestAddress(0x4000'0000));
}

TEST_CASE("arm64 interrupt numbers fit the GIC", "[aarch64]") {
    REQUIRE(kGicIrqs % 32 == 0);
    REQUIRE(kGicIrqs >= 64);
    for (std::uint32_t spi : {kUart0Spi, kUart1Spi, kVirtioMmioSpi})
        REQUIRE(spi_intid(spi) < kGicIrqs);
    REQUIRE(kUart0Spi != kUart1Spi);
    REQUIRE(kUart1Spi != kVirtioMmioSpi);
    REQUIRE(spi_intid(kUart0Spi) == 33);
}

TEST_CASE("arm64 memory map rejects bad sizes", "[aarch64]") {
    REQUIRE_THROWS_AS(memory_map(0, 64 * kMiB), UsageError);
    REQUIRE_THROWS_AS(memory_map(kMaxVcpus + 1, 64 * kMiB), UsageError);
    REQUIRE_THROWS_AS(memory_map(1, 0), UsageError);
    REQUIRE_THROWS_AS(memory_map(1, 64 * kMiB + 4096), UsageError);
    REQUIRE_THROWS_AS(memory_map(1, 2 * kMiB), UsageError); // nothing beside the FDT
    REQUIRE_NOTHROW(memory_map(kMaxVcpus, 4 * kMiB));
}

TEST_CASE("arm64 kernel and initrd go at the start of RAM, below the FDT", "[aarch64]") {
    MemoryMap map = memory_map(4, 256 * kMiB);
    REQUIRE(map.kernel(0) == map.ram.base);
    REQUIRE(map.kernel(0x80000) == GuestAddress(map.ram.base.raw() + 0x80000));

    GuestAddress initrd = map.initrd(0, 30 * kMiB + 1, 10 * kMiB);
    REQUIRE(initrd == GuestAddress(map.ram.base.raw() + 32 * kMiB));
    REQUIRE(map.initrd(0, 32 * kMiB, 0) == GuestAddress(map.ram.base.raw() + 32 * kMiB));
    // Up to the FDT exactly, but not into it.
    REQUIRE(map.initrd(0, 32 * kMiB, 222 * kMiB) == GuestAddress(map.ram.base.raw() + 32 * kMiB));
    REQUIRE_THROWS_AS(map.initrd(0, 32 * kMiB, 222 * kMiB + 1), UsageError);
    REQUIRE_THROWS_AS(map.initrd(0, 300 * kMiB, 0), UsageError);
    REQUIRE_THROWS_AS(map.initrd(~0ull, 1, 1), UsageError);
    REQUIRE_THROWS_AS(map.initrd(0, 1, ~0ull), UsageError);

    MemoryMap huge = memory_map(4, 300 * kGiB);
    REQUIRE_NOTHROW(huge.initrd(0, 64 * kMiB, 1 * kGiB));
    REQUIRE_THROWS_AS(huge.initrd(0, 64 * kMiB, 32 * kGiB), UsageError); // beyond the window
}

TEST_CASE("default MPIDR affinity follows KVM's reset_mpidr", "[aarch64]") {
    REQUIRE(default_mpidr(0) == 0);
    REQUIRE(default_mpidr(1) == 1);
    REQUIRE(default_mpidr(15) == 0xf);
    REQUIRE(default_mpidr(16) == 0x100);
    REQUIRE(default_mpidr(17) == 0x101);
    REQUIRE(default_mpidr(511) == 0x1f0f);
    REQUIRE(default_mpidr(4095) == 0xff0f);
    REQUIRE(default_mpidr(4096) == 0x1'0000);
    for (std::uint32_t vcpu = 0; vcpu < kMaxVcpus; ++vcpu) {
        REQUIRE((default_mpidr(vcpu) & ~kMpidrAffinityMask) == 0);
        if (vcpu > 0)
            REQUIRE(default_mpidr(vcpu) != default_mpidr(vcpu - 1));
    }
}
