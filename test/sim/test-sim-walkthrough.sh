#!/usr/bin/env bash
# The curl walk-through of test/sim/README.md, run as a test so the README
# stays true: create, start, observe and destroy a container; provision its
# agent; register and list a Velocity server; create a DNS record; read the
# accounting. Needs bash, curl, grep, sed, sha256sum. Bounded: ~5 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${ZLH_BIN:-$PWD/build/bin}
work=$(mktemp -d /tmp/zlh-sim-walk.XXXXXX)
SIM=
cleanup() {
	[ -n "$SIM" ] && kill "$SIM" 2>/dev/null && wait "$SIM" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
# deadline_loop SECONDS CMD...: retries CMD every 0.05 s until it succeeds
deadline_loop() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.05
	done
}

# --- start (README: "Start it") ---------------------------------------------
"$BIN/zlh-sim" --nodes 3 --task-ms 400 --unknown-ms 1000 --print-config >"$work/c.yaml" 2>"$work/sim.log" &
SIM=$!
deadline_loop 10 grep -q '^  edge_ipv4:' "$work/c.yaml" || fail "no config printed"
head -1 "$work/c.yaml" | grep -q '^# zlh-sim control: http://127.0.0.1:[0-9]*$' || fail "first line"

CTL=$(sed -n '1s/^# zlh-sim control: //p' "$work/c.yaml")
PVE=$(sed -n 's/^  url: "\(.*\)"$/\1/p' "$work/c.yaml")
DIR=$(dirname "$(sed -n 's/^  token_secret_file: "\(.*\)"$/\1/p' "$work/c.yaml")")
AGENT_PORT=$(sed -n 's/^agent: {port: \([0-9]*\),.*/\1/p' "$work/c.yaml")
VEL=$(sed -n 's/^velocity: {url: "\([^"]*\)".*/\1/p' "$work/c.yaml")
CF=$(sed -n 's/^  api_url: "\(.*\)"$/\1/p' "$work/c.yaml")
ZONE=$(sed -n 's/^  zone_id: "\(.*\)"$/\1/p' "$work/c.yaml")
PVE_AUTH="Authorization: PVEAPIToken=zlh@pve!controller=$(cat "$DIR/pve-token")"
AGENT_AUTH="Authorization: Bearer $(cat "$DIR/agent-token")"
ZPACK="X-Zpack-Secret: $(tr -d '\n' <"$DIR/velocity-secret" | sha256sum | cut -d' ' -f1)"
CF_AUTH="Authorization: Bearer $(cat "$DIR/cloudflare-token")"
UID1=0b8e4bc2-1111-4222-8333-444455556666

upid_of() { sed -n 's/.*"data":"\(UPID:[^"]*\)".*/\1/p'; }
task_done() {
	curl -fsS -H "$PVE_AUTH" "$PVE/api2/json/nodes/pve1/tasks/$1/status" | grep -q '"exitstatus":"OK"'
}

# --- create a container (create mode, with the uid in tags and description) --
out=$(curl -fsS -H "$PVE_AUTH" -X POST "$PVE/api2/json/nodes/pve1/lxc" \
	--data-urlencode ostemplate=local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst \
	-d vmid=5000 -d hostname=mc1 --data-urlencode "tags=zlh;zlh-$UID1" \
	--data-urlencode "description=zlh:uid=$UID1" \
	--data-urlencode 'net0=name=eth0,bridge=vmbr0,ip=127.60.0.5/16,gw=127.60.0.1' \
	-d rootfs=local-lvm:8 -d memory=2048 -d cores=2 -d unprivileged=1)
UPID=$(echo "$out" | upid_of)
case "$UPID" in UPID:pve1:*:vzcreate:5000:zlh@pve!controller:) ;; *) fail "upid: $out" ;; esac
curl -fsS -H "$PVE_AUTH" "$PVE/api2/json/cluster/resources?type=vm" | grep -q '"vmid":5000,"node":"pve1","tags":"zlh;zlh-'"$UID1"'","lock":"create","status":"unknown"}' ||
	fail "just-created container not locked/unknown"
deadline_loop 5 task_done "$UPID" || fail "create task"

# --- start it and observe ----------------------------------------------------
UPID=$(curl -fsS -H "$PVE_AUTH" -X POST "$PVE/api2/json/nodes/pve1/lxc/5000/status/start" | upid_of)
deadline_loop 5 task_done "$UPID" || fail "start task"
curl -fsS -H "$PVE_AUTH" "$PVE/api2/json/nodes/pve1/lxc/5000/status/current" | grep -q '"status":"running"' ||
	fail "not running"
curl -fsS -H "$PVE_AUTH" "$PVE/api2/json/nodes/pve1/lxc/5000/config" | grep -q '"description":"zlh:uid='"$UID1"'\\n"' ||
	fail "config description"

# --- its agent answers on the container's IP ----------------------------------
curl -fsS -H "$AGENT_AUTH" "http://127.60.0.5:$AGENT_PORT/status" | grep -q '"state":"idle"' || fail "agent idle"
curl -fsS -H "$AGENT_AUTH" -H 'Content-Type: application/json' -X POST "http://127.60.0.5:$AGENT_PORT/config" \
	-d '{"vmid":5000,"container_type":"game","game":"minecraft","variant":"paper","version":"1.21.4","world":"world","ports":[25565],"artifact_path":"minecraft/paper/1.21.4/server.jar","java_path":"java/21/OpenJDK21.tar.gz","memory_mb":2048}' >/dev/null
ready() { curl -sS -H "$AGENT_AUTH" "http://127.60.0.5:$AGENT_PORT/ready" | grep -q '"source":"minecraft_ping"'; }
deadline_loop 5 ready || fail "agent never ready"

# --- Velocity: register and list ------------------------------------------------
curl -fsS -H "$ZPACK" -H 'Content-Type: application/json' -X POST "$VEL/zpack/register" \
	-d '{"server_name":"mc1","address":"127.60.0.5","port":25565}' >/dev/null
curl -fsS -H "$ZPACK" "$VEL/zpack/status" | grep -q '{"name":"mc1","address":"127.60.0.5","port":25565}' ||
	fail "registration not listed"

# --- Cloudflare: create a DNS record and find it by comment -----------------------
curl -fsS -H "$CF_AUTH" -H 'Content-Type: application/json' -X POST "$CF/zones/$ZONE/dns_records" \
	-d '{"type":"A","name":"mc1.sim.zlh.test","content":"203.0.113.10","ttl":60,"proxied":false,"comment":"zlh:uid='"$UID1"'"}' |
	grep -q '"success":true' || fail "dns create"
curl -fsS -H "$CF_AUTH" "$CF/zones/$ZONE/dns_records?comment=zlh:uid=$UID1&type=A" | grep -q '"total_count":1' ||
	fail "dns list"

# --- stop and destroy -------------------------------------------------------------
UPID=$(curl -fsS -H "$PVE_AUTH" -X POST "$PVE/api2/json/nodes/pve1/lxc/5000/status/stop" | upid_of)
deadline_loop 5 task_done "$UPID" || fail "stop task"
UPID=$(curl -fsS -H "$PVE_AUTH" -X DELETE "$PVE/api2/json/nodes/pve1/lxc/5000?purge=1" | upid_of)
deadline_loop 5 task_done "$UPID" || fail "destroy task"
curl -sS -H "$PVE_AUTH" "$PVE/api2/json/nodes/pve1/lxc/5000/config" |
	grep -q "Configuration file 'nodes/pve1/lxc/5000.conf' does not exist" || fail "still there"

# --- the accounting ----------------------------------------------------------------
stats=$(curl -fsS "$CTL/_sim/stats")
for want in '"pve.create":1' '"pve.destroy":1' '"velocity.register":1' '"dns.create":1' \
	'"'"$UID1"'":{"now":0,"max":1}'; do
	echo "$stats" | grep -qF "$want" || fail "stats lack $want"
done

kill "$SIM"
wait "$SIM" || fail "zlh-sim exited $?"
SIM=
[ ! -e "$DIR" ] || fail "state dir $DIR left behind"
echo "walk-through ok"
