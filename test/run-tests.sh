#!/usr/bin/env bash
# Runs every test: unit binaries, then integration binaries and shell tests
# against one throwaway PostgreSQL. Prints one line per test and the summary
# line "N passed, N failed". Exit status 0 only when nothing failed.
#   B=build bash test/run-tests.sh [unit|integration|chaos|all] [filter]
set -uo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
what=${1:-all}
filter=${2:-}
export ZLH_BIN="$PWD/$B/bin" ZLH_CRDS_DIR="$PWD/crds" ZLH_SRC="$PWD" ZLH_B="$B"
logdir="$B/test-logs"
mkdir -p "$logdir"
passed=0 failed=0 failures=()
TO=${ZLH_TEST_TIMEOUT:-600}

run_one() { # name cmd...
        local name=$1
        shift
        [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && return 0
        local t0=$SECONDS
        if timeout -k 10 "$TO" "$@" >"$logdir/$name.log" 2>&1; then
                passed=$((passed + 1))
                echo "PASS $name ($((SECONDS - t0))s)"
        else
                local rc=$?
                failed=$((failed + 1))
                failures+=("$name")
                echo "FAIL $name (exit $rc, $((SECONDS - t0))s) -- last lines of $logdir/$name.log:"
                tail -40 "$logdir/$name.log" | sed 's/^/    /'
        fi
}

if [ "$what" = all ] || [ "$what" = unit ]; then
        for t in "$B"/test/test-*; do
                [ -x "$t" ] || continue
                run_one "$(basename "$t")" "$t"
        done
fi

if [ "$what" != unit ]; then
        eval "$(bash test/pg.sh start)" || { echo "FAIL could not start PostgreSQL"; exit 1; }
        trap 'bash test/pg.sh stop "$ZLH_TEST_PGDIR"' EXIT
        if [ "$what" = all ] || [ "$what" = integration ]; then
                for t in "$B"/test/itest-*; do
                        [ -x "$t" ] || continue
                        case "$(basename "$t")" in itest-chaos*) [ "$what" = all ] || continue ;; esac
                        run_one "$(basename "$t")" "$t"
                done
                for t in test/integration/test-*.sh test/sim/test-*.sh; do
                        [ -f "$t" ] || continue
                        run_one "$(basename "$t" .sh)" bash "$t"
                done
        fi
        if [ "$what" = chaos ]; then
                for t in "$B"/test/itest-chaos* test/chaos/test-*.sh; do
                        [ -e "$t" ] || continue
                        case "$t" in *.sh) run_one "$(basename "$t" .sh)" bash "$t" ;;
                        *) run_one "$(basename "$t")" "$t" ;; esac
                done
        fi
fi

echo
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
