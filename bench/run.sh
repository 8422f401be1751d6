#!/usr/bin/env bash
# make bench: runs every benchmark under bench/ (bench-*.sh), each of which
# prints figures and asserts nothing about speed. Each bounds itself in time.
set -uo pipefail
cd "$(dirname "$0")/.."
export B=${B:-build}
rc=0
for b in bench/bench-*.sh; do
        [ -f "$b" ] || continue
        echo "=== $b"
        timeout -k 10 900 bash "$b" || { echo "($b exited $?)"; rc=1; }
        echo
done
exit $rc
