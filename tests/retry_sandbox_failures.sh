#!/bin/sh
# Runs a test command once, and again only when ktstr classified its failure as the
# emulated sandbox's (exit status 75: the L1 guest died, the L1 kernel reported trouble,
# or an L2 was reset in the way only nested SVM under emulation does). Any other failure,
# a wrong verdict or a timeout above all, fails at once. Each such failure is recorded in
# $KTSTR_SANDBOX_FAILURE_LOG (if set) as "<test> <try>", for scripts/test to count; the
# test's own runs that were tried again inside the sandbox (test_support.cpp) add theirs.
name=$1
export KTSTR_TEST_NAME="$name"
shift
tries=5
try=1
while :; do
    "$@"
    status=$?
    [ "$status" -eq 75 ] || exit "$status"
    echo "retry-sandbox-failures: $name: try $try of $tries failed in the emulated sandbox (status 75)" >&2
    [ -n "$KTSTR_SANDBOX_FAILURE_LOG" ] && echo "$name $try" >> "$KTSTR_SANDBOX_FAILURE_LOG"
    [ "$try" -lt "$tries" ] || exit "$status"
    try=$((try + 1))
done
