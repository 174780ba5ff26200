# The arm64 platform: its memory map and device tree (ktstr_aarch64_description) are built;
# the KVM side (GICv3, PSCI, Image loading, vCPU set-up) is not written yet.
message(FATAL_ERROR "the arm64 platform (src/vmm/aarch64/platform.cpp) is not built yet: "
                    "ktstr runs on x86-64 hosts for now")
