#!/bin/sh
# The layer check passes on the tree and fires on an include across layers and on an
# architecture test outside the platform folders.
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
check() { cmake -DSOURCE_DIR="$1" -DSTAMP="$tree.stamp" -P "$root/cmake/check_layers.cmake" 2>&1; }
tree=$(mktemp -d)
trap 'rm -rf "$tree" "$tree.stamp"' EXIT
check "$root" > /dev/null || { check "$root"; exit 1; }
mkdir -p "$tree/src/io" "$tree/src/vmm/x86_64" "$tree/include/ktstr/vmm"
printf '#include "ktstr/base/error.hpp"\n' > "$tree/src/io/fine.cpp"
printf '#if defined(__x86_64__)\n#endif\n' > "$tree/src/vmm/x86_64/fine.cpp"
check "$tree" > /dev/null || { echo "the check refused a sound tree"; check "$tree"; exit 1; }
printf '#include "ktstr/vmm/kvm.hpp"\n' > "$tree/src/io/upward.cpp"
printf '#if defined(__aarch64__)\n#endif\n' > "$tree/include/ktstr/vmm/neutral.hpp"
out=$(check "$tree") && { echo "the check passed a tree that breaks the layering"; exit 1; }
for expected in "src/io/upward.cpp (layer io) includes ktstr/vmm/kvm.hpp (layer vm)" \
                "include/ktstr/vmm/neutral.hpp: tests the architecture outside src/vmm/<arch>"; do
  case $out in
    *"$expected"*) ;;
    *) echo "missing: $expected"; echo "$out"; exit 1 ;;
  esac
done
echo "layers ok"
