#!/bin/sh
# Four spinners on two CPUs for $1 seconds, two in cgroup a and two in cgroup b: each
# cgroup's CPU time and their ratio (1:1 when both get their share).
seconds=${1:-8}
cd /sys/fs/cgroup
# Only the cpu controller puts a task in its cgroup as the scheduler sees it.
echo +cpu > cgroup.subtree_control
mkdir -p a b
sleep 2 # a scheduler that watches for the cgroup finds it (scx_ktstr looks every second)
spin() { sh -c "echo \$\$ > /sys/fs/cgroup/$1/cgroup.procs; exec yes > /dev/null" & }
spin a; x=$!; spin a; y=$!; spin b; z=$!; spin b; w=$!
sleep "$seconds"
ua=$(awk '$1 == "usage_usec" { print $2 }' a/cpu.stat)
ub=$(awk '$1 == "usage_usec" { print $2 }' b/cpu.stat)
kill $x $y $z $w
echo "a=${ua}us b=${ub}us, ratio $(awk -v a="$ua" -v b="$ub" 'BEGIN { printf "%.2f", a / (b ? b : 1) }')"
