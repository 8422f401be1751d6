#!/usr/bin/env bash
# bench-container.sh - time to converge N servers (default 200) with the
# container reconciler against zlh-sim (3 nodes, 4 tasks per node, 200 ms
# tasks) in create and clone mode, next to each mode's physical limit, and
# Proxmox calls per server by route. Prints figures; never fails on a number.
#   B=build BENCH_SERVERS=200 BENCH_TASK_MS=200 BENCH_MODES=create,clone \
#     bash bench/bench-container.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
make --no-print-directory -j2 tests >/dev/null
mkdir -p "$B/bench"
PKGS="libcurl yaml-0.1 libpq jansson libsystemd openssl libmicrohttpd"
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -I. -Ilib \
	$(pkg-config --cflags $PKGS) -o "$B/bench/bench-container" bench/bench-container.c \
	"$B/obj/test/lib/testutil.o" "$B/libctl.a" "$B/librecon.a" "$B/libdb.a" \
	"$B/libspecs.a" "$B/libzlh.a" $(pkg-config --libs $PKGS) -lm -lcmocka
export ZLH_BIN="$PWD/$B/bin" ZLH_CRDS_DIR="$PWD/crds" ZLH_SRC="$PWD"
if [ -z "${ZLH_TEST_PG:-}" ]; then
	eval "$(bash test/pg.sh start)"
	trap 'bash test/pg.sh stop "$ZLH_TEST_PGDIR"' EXIT
fi
timeout -k 5 600 "$B/bench/bench-container" 2>&1 | grep -E '^#|FAIL|ERROR|PASSED'
