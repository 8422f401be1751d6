#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for the tests, on a private unix socket.
#   eval "$(bash test/pg.sh start)"   -> exports ZLH_TEST_PGDIR, ZLH_TEST_PG
#   bash test/pg.sh stop DIR
# As root, the cluster runs as the postgres user (postgres refuses root).
set -euo pipefail
PGBIN=${PGBIN:-$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
[ -x "$PGBIN/initdb" ] || PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() {
        if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cmd=${1:-}
case "$cmd" in
start)
        dir=$(mktemp -d /tmp/zlh-pg.XXXXXX)
        chmod 755 "$dir"
        [ "$(id -u)" = 0 ] && chown postgres: "$dir"
        as_pg "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 \
                >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
        as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w -t 60 \
                -o "-k $dir -c listen_addresses='' -c fsync=off -c synchronous_commit=off \
-c full_page_writes=off -c max_connections=300 -c shared_preload_libraries=pg_stat_statements" \
                start >/dev/null || { cat "$dir/pg.log" >&2; exit 1; }
        echo "export ZLH_TEST_PGDIR='$dir'"
        echo "export ZLH_TEST_PG='host=$dir user=postgres dbname=postgres'"
        ;;
stop)
        dir=${2:?dir}
        [ -d "$dir/data" ] && as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop \
                >/dev/null 2>&1 || true
        rm -rf "$dir"
        ;;
restart)
        dir=${2:?dir}
        as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -m fast -w -t 60 restart >/dev/null
        ;;
*)
        echo "usage: $0 start | stop DIR | restart DIR" >&2
        exit 2
        ;;
esac
