#!/usr/bin/env bash
# bench-lease.sh - leader failover time of zlh-controller (DESIGN.md
# section 8): two controllers on one database; the leader is killed with
# SIGKILL (and, separately, stopped cleanly with SIGTERM) and the time until
# the standby holds the lease (a new epoch in zlh.controller_lease) is
# measured. Prints figures; asserts nothing.
#
#   bash bench/bench-lease.sh [ROUNDS]      (LEASE=2s by default)
# Uses $ZLH_TEST_PG when set (a superuser conninfo), else starts a
# throwaway PostgreSQL with test/pg.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
LEASE=${LEASE:-2s}
B=${B:-build}
BIN="$PWD/$B/bin"
[ -x "$BIN/zlh-controller" ] && [ -x "$BIN/zlhctl" ] || { echo "build first (make)"; exit 1; }

tmp=$(mktemp -d /tmp/zlh-bench-lease.XXXXXX)
pids=()
own_pg=""
cleanup() {
        for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
        wait 2>/dev/null || true
        if [ -n "${admin:-}" ] && [ -n "${db:-}" ]; then
                psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
        fi
        [ -n "$own_pg" ] && bash test/pg.sh stop "$own_pg"
        [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

if [ -z "${ZLH_TEST_PG:-}" ]; then
        eval "$(bash test/pg.sh start)"
        own_pg=$ZLH_TEST_PGDIR
fi
admin=$ZLH_TEST_PG
db="zlh_bench_lease_$$"
psql "$admin" -qc "CREATE DATABASE $db" >/dev/null
conn="${admin/dbname=postgres/dbname=$db}"
"$BIN/zlhctl" --db "$conn" --crds crds db migrate >/dev/null

echo "bench-lease-secret-$$" >"$tmp/pve-token"
cat >"$tmp/controller.yaml" <<YAML
database: "$conn"
controller: {workers: 1, resync: 30s, lease: $LEASE, drain_timeout: 2s}
proxmox:
  url: "http://127.0.0.1:9"
  token_id: "zlh@pve!bench"
  token_secret_file: $tmp/pve-token
  template_vmid: 900
  storage: local
  vmid_range: [5000, 5099]
network: {bridge: vmbr0, cidr: "10.0.0.0/24", gateway: "10.0.0.1"}
YAML

nstarted=0
start() { # -> pid, once it is up (standby or leader)
        nstarted=$((nstarted + 1))
        local log="$tmp/controller-$nstarted.log"
        ZLH_TEST_RECONCILERS="" "$BIN/zlh-controller" -c "$tmp/controller.yaml" >"$log" 2>&1 &
        local pid=$! deadline=$(($(date +%s) + 20))
        disown "$pid"
        until grep -q "zlh-controller running" "$log"; do
                [ "$(date +%s)" -lt "$deadline" ] || { echo "controller $pid did not start:" >&2; tail "$log" >&2; exit 1; }
                sleep 0.02
        done
        pids+=("$pid")
        last_pid=$pid
}
lease_row() { psql "$conn" -Atqc "SELECT coalesce(holder, ''), epoch FROM zlh.controller_lease"; }
now_ms() { date +%s%3N; }
wait_epoch_above() { # epoch timeout_ms -> prints the new row
        local e=$1 deadline=$(($(now_ms) + $2)) row
        while [ "$(now_ms)" -lt "$deadline" ]; do
                row=$(lease_row)
                if [ "${row##*|}" -gt "$e" ] && [ -n "${row%%|*}" ]; then
                        echo "$row"
                        return 0
                fi
                sleep 0.01
        done
        return 1
}
pid_of_holder() { local h=${1%%|*}; h=${h#*:}; echo "${h%%:*}"; }

start
row=$(wait_epoch_above 0 20000) || { echo "no leader"; tail "$tmp"/controller-*.log; exit 1; }
start

ms=$(awk -v l="$LEASE" 'BEGIN { n = l + 0; if (l ~ /ms$/) print n; else if (l ~ /m$/) print n * 60000; else print n * 1000 }')
kills=()
for i in $(seq 1 "$ROUNDS"); do
        row=$(lease_row)
        leader=$(pid_of_holder "$row")
        epoch=${row##*|}
        t0=$(now_ms)
        kill -9 "$leader"
        row=$(wait_epoch_above "$epoch" $((ms * 3 + 5000))) || {
                echo "no takeover"
                tail -n 5 "$tmp"/controller-*.log
                exit 1
        }
        t1=$(now_ms)
        kills+=($((t1 - t0)))
        printf 'round %d: kill -9 of pid %s -> pid %s leads at epoch %s after %d ms\n' \
                "$i" "$leader" "$(pid_of_holder "$row")" "${row##*|}" $((t1 - t0))
        start
done

terms=()
for i in $(seq 1 "$ROUNDS"); do
        row=$(lease_row)
        leader=$(pid_of_holder "$row")
        epoch=${row##*|}
        t0=$(now_ms)
        kill -TERM "$leader"
        row=$(wait_epoch_above "$epoch" $((ms * 3 + 5000))) || {
                echo "no takeover"
                tail -n 5 "$tmp"/controller-*.log
                exit 1
        }
        t1=$(now_ms)
        terms+=($((t1 - t0)))
        printf 'round %d: SIGTERM of pid %s -> pid %s leads at epoch %s after %d ms\n' \
                "$i" "$leader" "$(pid_of_holder "$row")" "${row##*|}" $((t1 - t0))
        start
done

stats() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "min %d ms, median %d ms, max %d ms", v[1], v[int((NR + 1) / 2)], v[NR] }'; }
echo
echo "lease $LEASE ($ms ms), $ROUNDS rounds each:"
echo "  failover after kill -9 (lease must expire): $(stats "${kills[@]}")"
echo "  handover after SIGTERM (lease released):    $(stats "${terms[@]}")"
echo "  (bound: kill -9 <= lease + one standby poll; the standby wakes at the expiry)"
