#!/bin/sh
# The emulated sandbox hands back the command's exit status, whatever it is.
ktstr=$1
status=0
"$ktstr" sandbox --emulate -- false; got=$?
[ "$got" -eq 75 ] && exit 75 # the sandbox failed: say so, for a retry
[ "$got" -eq 1 ] || { echo "false: expected status 1, got $got"; status=1; }
"$ktstr" sandbox --emulate -- sh -c 'exit 42'; got=$?
[ "$got" -eq 75 ] && exit 75
[ "$got" -eq 42 ] || { echo "exit 42: expected status 42, got $got"; status=1; }
exit $status
