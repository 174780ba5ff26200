#!/bin/sh
# The arm64 build (build-arm64, cross-compiled) in the emulated arm64 sandbox: one check per
# call, named by $1, so that a retry (retry_sandbox_failures.sh) repeats only that one.
#   tests/arm64_e2e.sh selfcheck|nproc|topology|bzimage
root=$(cd "$(dirname "$0")/.." && pwd)
host_ktstr=$root/build/ktstr
ktstr=$root/build-arm64/ktstr
[ -x "$ktstr" ] || { echo "arm64: no $ktstr (scripts/setup cross-builds it)"; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Runs the arm64 ktstr with ARGS in the sandbox; its output in $out, its status returned.
sandboxed() {
  "$host_ktstr" sandbox --arch arm64 -- "$ktstr" "$@" > "$out" 2>&1
}
expect() { # expect STATUS GOT WHAT
  if [ "$2" -ne "$1" ]; then
    [ "$2" -eq 75 ] && exit 75 # the sandbox's, not a verdict
    echo "arm64 $check: status $2, expected $1"; cat "$out"; exit 1
  fi
}
contains() { grep -qF -- "$1" "$out" || { echo "arm64 $check: no '$1' in:"; cat "$out"; exit 1; }; }
check=$1
case $check in
  selfcheck)
    sandboxed selfcheck; expect 0 $?
    contains "KVM self-check: ok" ;;
  nproc) # vCPUs 1-7 start powered off and come up through PSCI CPU_ON
    sandboxed run --topology 2n4l2c1t -- /bin/busybox nproc; expect 0 $?
    [ "$(grep -v '^ktstr sandbox' "$out")" = 8 ] || { echo "arm64 nproc:"; cat "$out"; exit 1; } ;;
  topology) # the device tree's NUMA nodes, clusters, LLCs (the level-2 cache's sharers) and
    # distances, as the guest sees them
    sandboxed run --topology 2n4l2c1t -- /bin/busybox sh -c \
      'cd /sys/devices/system; cat cpu/cpu0/topology/cluster_cpus_list cpu/cpu7/topology/cluster_cpus_list cpu/cpu2/cache/index2/level cpu/cpu2/cache/index2/shared_cpu_list node/node0/cpulist node/node1/cpulist node/node0/distance'
    expect 0 $?
    [ "$(grep -v '^ktstr sandbox' "$out" | tr '\n' ' ')" = "0-1 6-7 2 2-3 0-3 4-7 10 20 " ] ||
      { echo "arm64 topology:"; cat "$out"; exit 1; } ;;
  bzimage) # an x86 kernel handed to the arm64 VM: a one-line error and status 2, before a boot
    x86_kernel=$(ls "${XDG_CACHE_HOME:-$HOME/.cache}"/ktstr/kernels/*-x86_64/vmlinuz | head -1)
    sandboxed run --kernel "$x86_kernel" -- true; expect 2 $?
    contains "is not an arm64 Image" ;;
  *) echo "usage: $0 selfcheck|nproc|topology|bzimage"; exit 2 ;;
esac
echo "arm64 $check: ok"
