#!/bin/bash
# Builds the kernel's example sched_ext schedulers (tools/sched_ext) and scx_ktstr for one
# guest kernel, from that kernel's own Debian source package and BTF. `ktstr scheduler
# build` runs this (it is compiled into ktstr) with:
#   SOURCE_DEB  the linux-source-<major.minor> package of exactly that kernel
#   VMLINUZ     the kernel image (its BTF becomes vmlinux.h)
#   RELEASE     the kernel release ("7.3.4+deb13-amd64"), UPSTREAM its version ("7.3.4")
#   RECIPE_DIR  this script's directory, with scx_ktstr/ beside it
#   OUT         an empty directory: bin/ gets the schedulers, sdk/ what out-of-tree
#               schedulers build against (vmlinux.h, libbpf, the scx headers, bpftool)
#   JOBS        parallel make jobs
# Tools: clang-19, lld-19, llvm-19, make, gcc, libelf and zlib headers, xz, unzstd,
# readelf. libbpf and bpftool come from the same kernel source: Debian 12's are too old.
set -euo pipefail

say() { printf 'scheduler build: %s\n' "$*" >&2; }
die() { printf 'scheduler build: %s\n' "$*" >&2; exit 1; }

: "${SOURCE_DEB:?}" "${VMLINUZ:?}" "${RELEASE:?}" "${UPSTREAM:?}" "${RECIPE_DIR:?}" "${OUT:?}"
JOBS=${JOBS:-2}
for tool in clang-19 ld.lld-19 llvm-strip-19 make gcc xz unzstd readelf dpkg-deb; do
    command -v "$tool" >/dev/null || die "missing $tool (scripts/setup installs it)"
done

work=$OUT/work
mkdir -p "$work/src" "$OUT/bin" "$OUT/sdk/include" "$OUT/sdk/lib" "$OUT/sdk/bin"

# Only what tools/sched_ext's build reads (found by tracing a full build): the
# schedulers, libbpf, bpftool and the tools build glue, the UAPI headers libbpf checks
# against, and extract-vmlinux for the BTF.
top=linux-source-${UPSTREAM%.*}
members=("$top/Makefile" "$top/tools/sched_ext" "$top/tools/lib/bpf" "$top/tools/include"
         "$top/tools/build" "$top/tools/scripts" "$top/tools/arch/$(uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')/include"
         "$top/tools/bpf/bpftool" "$top/kernel/bpf/disasm.c" "$top/kernel/bpf/disasm.h"
         "$top/scripts/bpf_doc.py" "$top/scripts/extract-vmlinux"
         "$top/include/uapi/linux/bpf.h" "$top/include/uapi/linux/bpf_common.h"
         "$top/include/uapi/linux/if_xdp.h")
say "unpacking tools/sched_ext and what it needs from $(basename "$SOURCE_DEB")"
dpkg-deb --fsys-tarfile "$SOURCE_DEB" | tar -xO "./usr/src/$top.tar.xz" |
    xz -dc -T"$JOBS" | tar -x -C "$work/src" --strip-components=1 "${members[@]}"
version=$(awk -F' = ' '$1=="VERSION"{v=$2} $1=="PATCHLEVEL"{p=$2} $1=="SUBLEVEL"{s=$2}
                       END{print v"."p"."s}' "$work/src/Makefile")
[ "$version" = "$UPSTREAM" ] || die "the source is $version, the kernel $UPSTREAM"

say "reading the BTF of $RELEASE"
sh "$work/src/scripts/extract-vmlinux" "$VMLINUZ" > "$work/vmlinux"
readelf -S "$work/vmlinux" | grep -q ' \.BTF ' || die "$VMLINUZ has no BTF (.BTF section)"
strings -n 20 "$work/vmlinux" | grep -m1 '^Linux version ' | grep -q "Linux version $RELEASE " ||
    die "$VMLINUZ is not $RELEASE"

say "building tools/sched_ext with clang-19"
mkdir -p "$work/build"
make -C "$work/src/tools/sched_ext" -j"$JOBS" LLVM=-19 VMLINUX_BTF="$work/vmlinux" \
     O="$work/build" all > "$work/make.log" 2>&1 ||
    { tail -40 "$work/make.log" >&2; die "make failed"; }
built=$work/build/build
cp -r "$built/include/vmlinux.h" "$built/include/bpf" "$OUT/sdk/include/"
cp -r "$work/src/tools/sched_ext/include/scx" "$work/src/tools/sched_ext/include/bpf-compat" \
      "$OUT/sdk/include/"
cp "$built/obj/libbpf/libbpf.a" "$OUT/sdk/lib/"
cp "$built/sbin/bpftool" "$OUT/sdk/bin/"
for scheduler in "$built"/bin/scx_*; do
    llvm-strip-19 -o "$OUT/bin/$(basename "$scheduler")" "$scheduler"
done

say "building scx_ktstr against them"
make -C "$RECIPE_DIR/scx_ktstr" SDK="$OUT/sdk" OUT="$work/scx_ktstr" > "$work/scx_ktstr.log" 2>&1 ||
    { cat "$work/scx_ktstr.log" >&2; die "scx_ktstr did not build"; }
llvm-strip-19 -o "$OUT/bin/scx_ktstr" "$work/scx_ktstr/scx_ktstr"
rm -rf "$work"
say "built $(ls "$OUT/bin" | tr '\n' ' ')"
