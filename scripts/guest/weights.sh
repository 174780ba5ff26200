#!/bin/sh
# Four spinners on two CPUs for $1 seconds, two at nice 0 and two at nice 10: their CPU
# time (clock ticks) and the ratio of the nice-0 pair's to the nice-10 pair's. Weights
# that count fully give about 9:1 (1024 / 110); FIFO gives 1:1.
seconds=${1:-8}
cpu_ticks() { set -- $(cat "/proc/$1/stat"); shift 13; echo $(($1 + $2)); }
yes > /dev/null & a=$!
yes > /dev/null & b=$!
nice -n 10 yes > /dev/null & c=$!
nice -n 10 yes > /dev/null & d=$!
sleep "$seconds"
heavy=$(($(cpu_ticks $a) + $(cpu_ticks $b)))
light=$(($(cpu_ticks $c) + $(cpu_ticks $d)))
kill $a $b $c $d
echo "nice0=$heavy nice10=$light ticks, ratio $(awk -v a="$heavy" -v b="$light" 'BEGIN { printf "%.2f", a / (b ? b : 1) }')"
