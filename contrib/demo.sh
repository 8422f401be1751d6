#!/usr/bin/env bash
# make demo: a throwaway PostgreSQL, zlh-sim (3 nodes), zlh-controller, the
# example specs; shows the servers converge, injects faults, shows healing.
# Everything it starts is stopped on exit or Ctrl-C; nothing stays in /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
BIN="$PWD/$B/bin"
DEMO_TIMEOUT=${DEMO_TIMEOUT:-90}
work=$(mktemp -d /tmp/zlh-demo.XXXXXX)
pgdir="" sim_pid="" ctl_pid=""

cleanup() {
        set +e
        [ -n "$ctl_pid" ] && kill -TERM "$ctl_pid" 2>/dev/null && wait "$ctl_pid" 2>/dev/null
        [ -n "$sim_pid" ] && kill -TERM "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
        [ -n "$pgdir" ] && bash test/pg.sh stop "$pgdir"
        if [ -n "${KEEP_LOGS:-}" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting a throwaway PostgreSQL"
eval "$(bash test/pg.sh start)"
pgdir=$ZLH_TEST_PGDIR
export ZLH_DATABASE="host=$pgdir user=postgres dbname=postgres"

say "starting zlh-sim (3 Proxmox nodes, agents, Velocity, Cloudflare)"
"$BIN/zlh-sim" --nodes 3 --seed 1 --task-ms 300 --state-dir "$work/sim" --print-config \
        >"$work/sim.yaml" 2>"$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 200); do
        grep -q '^# zlh-sim control:' "$work/sim.yaml" 2>/dev/null && grep -q '^dns:' "$work/sim.yaml" && break
        kill -0 "$sim_pid" 2>/dev/null || { cat "$work/sim.log"; exit 1; }
        sleep 0.05
done
control=$(sed -n 's/^# zlh-sim control: //p' "$work/sim.yaml")
# A free loopback port for the metrics endpoint.
metrics_port=""
for p in $(shuf -i 20000-45000 -n 20); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then metrics_port=$p; break; fi
done
metrics="127.0.0.1:${metrics_port:-29464}"
{
        sed "s|^database:.*|database: \"$ZLH_DATABASE\"|" "$work/sim.yaml"
        echo "controller: {workers: 4, resync: 5s, lease: 15s, metrics_listen: \"$metrics\"}"
} >"$work/controller.yaml"
echo "sim control endpoint: $control"

say "zlhctl db migrate"
"$BIN/zlhctl" db migrate

if [ ! -x "$BIN/zlh-controller" ]; then
        echo "zlh-controller is not built yet; applying the specs only"
fi
if [ -x "$BIN/zlh-controller" ]; then
        say "starting zlh-controller"
        "$BIN/zlh-controller" -c "$work/controller.yaml" >"$work/controller.log" 2>&1 &
        ctl_pid=$!
fi

say "zlhctl apply -f contrib/examples/"
"$BIN/zlhctl" apply -f contrib/examples/

watch_until_ready() { # seconds label
        local deadline=$((SECONDS + $1)) n ready
        while [ $SECONDS -lt $deadline ]; do
                out=$("$BIN/zlhctl" get -o wide 2>/dev/null || true)
                n=$(("$(printf '%s\n' "$out" | wc -l)" - 1))
                ready=$(printf '%s\n' "$out" | awk 'NR>1 && $4=="Ready"' | wc -l)
                printf '\033[2J\033[H%s  (%ds)\n\n%s\n\n%d/%d Ready\n' "$2" $((SECONDS)) "$out" "$ready" "$n"
                [ "$n" -gt 0 ] && [ "$ready" = "$n" ] && return 0
                [ -z "$ctl_pid" ] && return 1
                sleep 1
        done
        return 1
}

if [ -z "$ctl_pid" ]; then
        "$BIN/zlhctl" get -o wide
        exit 0
fi
if watch_until_ready "$DEMO_TIMEOUT" "converging"; then
        echo "all servers converged"
else
        echo "not converged within ${DEMO_TIMEOUT}s; controller log tail:"
        tail -20 "$work/controller.log"
fi

say "fault: Velocity restarts (forgets every registration)"
curl -fsS -X POST "$control/_sim/velocity/restart" >/dev/null
vmid=$("$BIN/zlhctl" get -o json | jq -r '[.[] | select(.status.vmid != null)][0].status.vmid // empty')
if [ -n "$vmid" ]; then
        say "fault: container $vmid deleted by hand"
        curl -fsS -X POST "$control/_sim/pve/delete" -d "{\"vmid\":$vmid}" >/dev/null || true
fi
say "fault: 20% lost responses on every mutating call for the next 40 requests"
curl -fsS -X POST "$control/_sim/faults" \
        -d '{"system":"*","method":"POST","lost_rate":0.2,"count":40}' >/dev/null || true
# Healed = every server has exactly one container in the simulated world
# again, and every server is Ready.
healed() {
        local want have
        want=$("$BIN/zlhctl" get -o json | jq length)
        have=$(curl -fsS "$control/_sim/stats" |
                jq '[.duplicates.containers_per_uid // {} | to_entries[] | select(.value.now == 1)] | length')
        [ "$want" = "$have" ]
}
deadline=$((SECONDS + DEMO_TIMEOUT))
until healed && watch_until_ready 5 "healing"; do
        [ $SECONDS -lt $deadline ] || break
        watch_until_ready 1 "healing" >/dev/null || true
        sleep 1
done
healed && echo "healed: one container per server again" || echo "not healed within ${DEMO_TIMEOUT}s"

say "side effects counted by the simulator (duplicates high-water marks)"
curl -fsS "$control/_sim/stats" | jq -r '
  "containers created: \(.side_effects["pve.create"] // 0) create, \(.side_effects["pve.clone"] // 0) clone",
  "most containers one uid ever had at once: \([.duplicates.containers_per_uid[]?.max] | max // 0)",
  "most registrations one name ever had at once: \([.duplicates.registrations_per_name[]?.max] | max // 0)",
  "most DNS records of one name+type at once: \([.duplicates.dns_records_per_name_type[]?.max] | max // 0)",
  "faults injected: \(.faults)"' 
say "where to look"
echo "controller log: $work/controller.log (JSON lines; KEEP_LOGS=1 keeps it)"
echo "metrics: http://$metrics/metrics (while it runs); a sample:"
curl -fsS "http://$metrics/metrics" | grep -E '^zlh_(servers|leader|lease_epoch|external_calls_total)' | head -12 || true
echo "done; stopping everything"
