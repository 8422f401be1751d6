#!/usr/bin/env bash
# zlhctl end to end against a real PostgreSQL (issue 2): migrate, apply,
# get, diff, dry-run, describe, delete, quota, exit codes, all-or-nothing.
set -euo pipefail
: "${ZLH_TEST_PG:?run through test/run-tests.sh}"
ZLHCTL="$ZLH_BIN/zlhctl"
host=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$ZLH_TEST_PG")
db="zlh_cli_$$"
psql -qX "$ZLH_TEST_PG" -c "CREATE DATABASE $db" >/dev/null
tmp=$(mktemp -d /tmp/zlh-cli.XXXXXX)
cleanup() {
        psql -qX "$ZLH_TEST_PG" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
        rm -rf "$tmp"
}
trap cleanup EXIT
export ZLH_DATABASE="host=$host user=postgres dbname=$db"
fails=0 checks=0
ok() { checks=$((checks + 1)); echo "ok - $*"; }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "not ok - $*"; }
expect_rc() { # want desc cmd...
        local want=$1 desc=$2
        shift 2
        set +e
        "$@" >"$tmp/out" 2>"$tmp/err"
        local rc=$?
        set -e
        if [ "$rc" = "$want" ]; then ok "$desc (exit $rc)"; else
                bad "$desc: exit $rc, want $want"
                sed 's/^/    /' "$tmp/out" "$tmp/err"
        fi
}
expect_grep() { # desc pattern file
        if grep -qE -- "$2" "$3"; then ok "$1"; else
                bad "$1: /$2/ not in $3:"
                sed 's/^/    /' "$3"
        fi
}
sql() { psql -qXtA "$ZLH_DATABASE" -c "$1"; }

expect_rc 0 "db migrate" "$ZLHCTL" db migrate
expect_rc 0 "db migrate again" "$ZLHCTL" db migrate
expect_grep "migrate reports nothing new the second time" "applied: 0" "$tmp/out"

cat >"$tmp/a.yaml" <<'Y'
apiVersion: zlh.dev/v1
kind: GameServer
metadata: {name: survival-01, owner: alice, labels: {tier: modded}}
spec:
  variant: paper
  version: 1.20
  resources: {cores: 2, memoryMiB: 4096}
---
apiVersion: zlh.dev/v1
kind: DevServer
metadata: {name: sandbox, owner: alice}
spec:
  runtime: node
  version: "22"
Y
expect_rc 0 "apply two documents" "$ZLHCTL" apply -f "$tmp/a.yaml"
expect_grep "created reported" "gameserver/survival-01 created \(generation 1\)" "$tmp/out"
[ "$(sql "select count(*) from zlh.servers")" = 2 ] && ok "two rows" || bad "two rows"
expect_rc 0 "apply again" "$ZLHCTL" apply -f "$tmp/a.yaml"
expect_grep "unchanged" "gameserver/survival-01 unchanged \(generation 1\)" "$tmp/out"
expect_rc 0 "get -o json" "$ZLHCTL" get -o json
jq -e 'length == 2 and (map(select(.metadata.name=="survival-01"))[0] |
        .kind == "GameServer" and .metadata.owner == "alice" and .metadata.generation == 1
        and (.metadata.uid | length) == 36 and .metadata.labels.tier == "modded"
        and .spec.version == "1.20" and .spec.resources.diskGiB == 16
        and .status.phase == "Pending" and (.status.conditions | type) == "array")' \
        "$tmp/out" >/dev/null && ok "get -o json shape, typing and defaults" ||
        { bad "get -o json shape"; cat "$tmp/out"; }
expect_rc 0 "get gs -o wide" "$ZLHCTL" get gs -o wide
expect_grep "wide table header" "^KIND +NAME +OWNER +PHASE +READY +VMID +NODE +IP +HOSTNAME +GEN +AGE" "$tmp/out"
expect_grep "wide row" "^GameServer +survival-01 +alice +Pending" "$tmp/out"
if grep -q sandbox "$tmp/out"; then bad "kind filter"; else ok "kind filter excludes DevServer"; fi
expect_rc 0 "get -o yaml" "$ZLHCTL" get devservers -o yaml
expect_grep "yaml output" "runtime: node" "$tmp/out"

# explicit default == omitted default: no new generation
sed 's/resources: {cores: 2, memoryMiB: 4096}/resources: {cores: 2, memoryMiB: 4096, diskGiB: 16}/' \
        "$tmp/a.yaml" >"$tmp/a2.yaml"
expect_rc 0 "apply with explicit default" "$ZLHCTL" apply -f "$tmp/a2.yaml"
expect_grep "explicit default is unchanged" "survival-01 unchanged \(generation 1\)" "$tmp/out"

# diff and dry-run change nothing
sed 's/memoryMiB: 4096/memoryMiB: 8192/' "$tmp/a.yaml" >"$tmp/b.yaml"
expect_rc 0 "diff exits 0 by default" "$ZLHCTL" diff -f "$tmp/b.yaml"
expect_grep "diff shows the change" "memoryMiB.*4096.*8192" "$tmp/out"
expect_rc 1 "diff --exit-code on difference" "$ZLHCTL" diff --exit-code -f "$tmp/b.yaml"
expect_rc 0 "diff --exit-code without difference" "$ZLHCTL" diff --exit-code -f "$tmp/a.yaml"
expect_rc 0 "apply --dry-run" "$ZLHCTL" apply --dry-run -f "$tmp/b.yaml"
expect_grep "dry-run says configured" "would be configured" "$tmp/out"
[ "$(sql "select generation from zlh.servers where name='survival-01'")" = 1 ] &&
        ok "dry-run wrote nothing" || bad "dry-run wrote"
expect_rc 0 "apply change" "$ZLHCTL" apply -f "$tmp/b.yaml"
expect_grep "configured, generation 2" "survival-01 configured \(generation 2\)" "$tmp/out"

# stdin
expect_rc 0 "apply from stdin" bash -c "\"$ZLHCTL\" apply -f - <\"$tmp/b.yaml\""

# all or nothing: one valid new doc + one invalid doc -> nothing written
cat >"$tmp/bad.yaml" <<'Y'
apiVersion: zlh.dev/v1
kind: GameServer
metadata: {name: fresh-01, owner: alice}
spec: {variant: paper, version: "1.21.4"}
---
apiVersion: zlh.dev/v1
kind: GameServer
metadata: {name: broken, owner: alice}
spec:
  variant: paper
  version: "1.21"
  resources: {memoryMiB: 100}
  colour: blue
  publish: yes
Y
expect_rc 1 "invalid document" "$ZLHCTL" apply -f "$tmp/bad.yaml"
expect_grep "located minimum error" "bad.yaml:12:[0-9]+: spec.resources.memoryMiB: .*minimum" "$tmp/err"
expect_grep "located unknown field" "bad.yaml:13:[0-9]+: spec.colour" "$tmp/err"
expect_grep "yes is not a boolean" "bad.yaml:14:[0-9]+: spec.publish" "$tmp/err"
[ "$(sql "select count(*) from zlh.servers where name in ('fresh-01','broken')")" = 0 ] &&
        ok "nothing half-written" || bad "half-written apply"
printf 'apiVersion: zlh.dev/v1\nmetadata: {name: x, owner: alice}\nspec: {}\n' >"$tmp/nokind.yaml"
expect_rc 1 "missing kind" "$ZLHCTL" apply -f "$tmp/nokind.yaml"
expect_grep "missing kind named" "nokind.yaml:[0-9]+:[0-9]+: .*kind" "$tmp/err"
printf 'kind: [unclosed\n' >"$tmp/syntax.yaml"
expect_rc 1 "yaml syntax error" "$ZLHCTL" apply -f "$tmp/syntax.yaml"
expect_grep "syntax error located" "syntax.yaml:[0-9]+:[0-9]+:" "$tmp/err"
printf '{"apiVersion":"zlh.dev/v1","kind":"DevServer","metadata":{"name":"j","owner":"alice"},"spec":{"runtime":"node","version":22}}' >"$tmp/j.json"
expect_rc 1 "json wrong type" "$ZLHCTL" apply -f "$tmp/j.json"
expect_grep "json error names the field" "spec.version" "$tmp/err"

# names: describe, ambiguity, delete, not found
expect_rc 0 "describe" "$ZLHCTL" describe survival-01
expect_grep "describe shows conditions and spec" "Conditions:" "$tmp/out"
sed 's/owner: alice/owner: bob/' "$tmp/a.yaml" >"$tmp/bob.yaml"
expect_rc 0 "bob applies the same names" "$ZLHCTL" apply -f "$tmp/bob.yaml"
expect_rc 2 "ambiguous name needs --owner" "$ZLHCTL" describe survival-01
expect_rc 0 "describe --owner" "$ZLHCTL" describe survival-01 --owner bob
expect_rc 4 "describe unknown" "$ZLHCTL" describe nope
expect_rc 0 "delete --owner" "$ZLHCTL" delete sandbox --owner bob
[ -n "$(sql "select deletion_requested_at from zlh.servers where owner='bob' and name='sandbox'")" ] &&
        ok "deletion requested" || bad "deletion not requested"
expect_rc 4 "delete unknown" "$ZLHCTL" delete nope --owner bob
expect_rc 0 "events" "$ZLHCTL" events

# quota: refused with exit 5
expect_rc 0 "quota set" "$ZLHCTL" quota set carol --servers 1 --memory-mib 65536
printf 'apiVersion: zlh.dev/v1\nkind: DevServer\nmetadata: {name: c1, owner: carol}\nspec: {runtime: go, version: "1.22"}\n---\napiVersion: zlh.dev/v1\nkind: DevServer\nmetadata: {name: c2, owner: carol}\nspec: {runtime: go, version: "1.22"}\n' >"$tmp/carol.yaml"
expect_rc 5 "quota exceeded" "$ZLHCTL" apply -f "$tmp/carol.yaml"
expect_grep "quota message" "[Qq]uota" "$tmp/err"
[ "$(sql "select count(*) from zlh.servers where owner='carol'")" = 0 ] &&
        ok "quota refusal wrote nothing" || bad "quota refusal wrote"

# usage and unreachable database
expect_rc 2 "no command" "$ZLHCTL"
expect_rc 2 "apply without -f" "$ZLHCTL" apply
expect_rc 3 "database unreachable" env ZLH_DATABASE="host=/nonexistent dbname=x connect_timeout=2" "$ZLHCTL" get

echo "$((checks - fails)) passed, $fails failed"
[ "$fails" = 0 ]
