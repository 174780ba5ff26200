#!/bin/sh
# A signal that ends ktstr ends everything it started: SIGTERM at 1, 3 and 8 s into
# `ktstr run`, into `ktstr kernel fetch` and into `ktstr sandbox`, and SIGKILL of
# `ktstr run`. Each starts in its own session, so whatever is left of it afterwards shows up
# with pgrep -s; and what a killed run left in the temporary directory is gone after the
# next run. Boots the sandbox; run by the test command with the KVM tests.
ktstr=$1
failed=0
TMPDIR=$(mktemp -d /tmp/ktstr-teardown-test.XXXXXX)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

# check NAME SIGNAL DELAY EXPECTED-STATUS -- CMD...
check() {
    name=$1 signal=$2 delay=$3 expected=$4
    shift 5
    setsid "$@" >"$TMPDIR/out" 2>&1 </dev/null &
    pid=$!
    sleep "$delay"
    kill "-$signal" "$pid"
    wait "$pid" 2>/dev/null
    status=$?
    sleep 3 # the kernel's parent-death signals take effect at once; give the exits time
    left=$(pgrep -s "$pid" | tr '\n' ' ')
    if [ "$status" -ne "$expected" ] || [ -n "$left" ]; then
        echo "FAIL $name: status $status (expected $expected), left running: ${left:-none}"
        sed 's/^/    /' "$TMPDIR/out"
        failed=1
    else
        echo "ok   $name: status $status, nothing left running"
    fi
}

for delay in 1 3 8; do
    check "SIGTERM ${delay}s into ktstr run" TERM "$delay" 143 -- "$ktstr" run -- sleep 60
done
check "SIGTERM 0.3s into ktstr kernel fetch" TERM 0.3 143 -- "$ktstr" kernel fetch
check "SIGTERM 8s into ktstr sandbox" TERM 8 143 -- "$ktstr" sandbox -- sleep 60
# Last, so that no other ktstr has pruned its leftovers before the listing below.
check "SIGKILL 8s into ktstr run" KILL 8 137 -- "$ktstr" run -- sleep 60

# The next run prunes what the killed ones left (the SIGKILLed run's directory above all).
echo "left in TMPDIR before the next run: $(ls -A "$TMPDIR" | grep -v '^out$' | tr '\n' ' ')"
"$ktstr" run -- true >/dev/null 2>&1
next=$?
[ "$next" -eq 75 ] && exit 75 # the sandbox failed: not this test's verdict
[ "$next" -eq 0 ] || { echo "FAIL: the next run failed (status $next)"; failed=1; }
leftovers=$(ls -A "$TMPDIR" | grep -v '^out$')
cache=${XDG_CACHE_HOME:-$HOME/.cache}/ktstr
stale=$(find "$cache" -maxdepth 2 \( -name '*.part' -o -name '.fetch.*' \) 2>/dev/null)
if [ -n "$leftovers$stale" ]; then
    echo "FAIL: left behind after the next run: $leftovers $stale"
    failed=1
else
    echo "ok   nothing left in TMPDIR or the cache after the next run"
fi
exit $failed
