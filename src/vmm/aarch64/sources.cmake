# The arm64 platform is not written yet.
message(FATAL_ERROR "the arm64 platform (src/vmm/aarch64) is not built yet: ktstr runs on "
                    "x86-64 hosts for now")
