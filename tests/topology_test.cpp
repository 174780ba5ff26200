#include "ktstr/base/error.hpp"
#include "ktstr/vmm/topology.hpp"
#include "ktstr/vmm/x86_64/apic_id.hpp"

#include <algorithm>
#include <catch2/catch_test_macros.hpp>
#include <set>

using namespace ktstr;

TEST_CASE("topologies parse from NnNlNcNt", "[topology]") {
    Topology t = Topology::parse("2n4l2c2t");
    CHECK(t.nodes() == 2);
    CHECK(t.llcs() == 4);
    CHECK(t.cores_per_llc() == 2);
    CHECK(t.threads_per_core() == 2);
    CHECK(t.cpus() == 16);
    CHECK(t.llcs_per_node() == 2);
    CHECK(t.to_string() == "2n4l2c2t");
    CHECK(t.node_cpus(1) == std::vector<std::uint32_t>{8, 9, 10, 11, 12, 13, 14, 15});
    CHECK(t.llc_cpus(3) == std::vector<std::uint32_t>{12, 13, 14, 15});
    CpuPlace p = t.place(13);
    CHECK(p.node == 1);
    CHECK(p.llc == 3);
    CHECK(p.core_in_llc == 0);
    CHECK(p.core == 6);
    CHECK(p.thread == 1);
    CHECK(t.distance(0, 0) == 10);
    CHECK(t.distance(0, 1) == 20);
}

TEST_CASE("bad topologies are refused with the reason", "[topology]") {
    for (const char* bad : {"0n1l1c1t", "1n0l1c1t", "1n1l1c0t", "2n3l2c1t", "1n2l2c", "1n2l2c2t3",
                            "n2l2c2t", "1n2l2c2x", "", "1n1l253c1t", "-1n1l1c1t"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(Topology::parse(bad), UsageError);
    }
    try {
        Topology::parse("2n3l2c1t");
    } catch (const UsageError& e) {
        CHECK(std::string(e.what()).find("cannot be spread evenly") != std::string::npos);
    }
}

TEST_CASE("APIC IDs pack LLC, core and thread into bit fields", "[topology]") {
    CHECK(bits_for(1) == 0);
    CHECK(bits_for(2) == 1);
    CHECK(bits_for(3) == 2);
    CHECK(bits_for(9) == 4);
    Topology t = Topology::parse("1n3l3c2t"); // core_bits 2, thread_bits 1
    CHECK(apic_id_of(t, 0) == 0);
    CHECK(apic_id_of(t, 1) == 1);
    CHECK(apic_id_of(t, 2) == 2);
    CHECK(apic_id_of(t, 5) == 5);
    CHECK(apic_id_of(t, 6) == 8); // llc 1 starts at 1 << 3
    CHECK(apic_id_of(t, 17) == 16 + 5);
}

TEST_CASE("the gauntlet presets: 24 on x86-64, 14 without SMT on arm64", "[topology]") {
    auto x86 = topology_presets(Arch::x86_64);
    auto arm = topology_presets(Arch::arm64);
    CHECK(x86.size() == 24);
    CHECK(arm.size() == 14);
    for (const auto& preset : arm)
        CHECK(preset.topology.threads_per_core() == 1);
    for (const auto& [name, t] : x86) {
        CAPTURE(name);
        std::set<std::uint32_t> ids;
        for (std::uint32_t cpu = 0; cpu < t.cpus(); ++cpu)
            ids.insert(apic_id_of(t, cpu));
        CHECK(ids.size() == t.cpus());
        CHECK(max_apic_id(t) == *ids.rbegin());
    }
    auto max_cpu =
        std::find_if(x86.begin(), x86.end(), [](auto& p) { return p.name == "max-cpu"; });
    REQUIRE(max_cpu != x86.end());
    CHECK(max_cpu->topology.cpus() == 252);
    CHECK(needs_x2apic(max_cpu->topology)); // 14 LLCs << 5 bits reach past 254
    auto tiny = std::find_if(x86.begin(), x86.end(), [](auto& p) { return p.name == "tiny-1llc"; });
    CHECK_FALSE(needs_x2apic(tiny->topology));
}
