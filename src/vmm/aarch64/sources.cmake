# The arm64 platform: the KVM side here; its memory map, device tree and Image loading are
# ktstr_aarch64_description, which every host builds.
set(KTSTR_PLATFORM_SOURCES vmm/aarch64/platform.cpp)
set(KTSTR_PLATFORM_LIBRARIES ktstr_aarch64_description)
