#!/usr/bin/env bash
# bench-sim.sh - how many requests per second zlh-sim sustains on loopback
# for a controller-like mix (GET /cluster/resources over 1,000 containers,
# agent GET /status, task polls) from 64 concurrent keep-alive clients.
# Prints the figure; never fails on a number. Stops by itself in ~20 s.
#   B=build BENCH_SECONDS=10 bash bench/bench-sim.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
[ -x "$B/bin/zlh-sim" ] || make --no-print-directory -j2 "$B/bin/zlh-sim" >/dev/null
mkdir -p "$B/bench"
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -I. -Ilib \
	$(pkg-config --cflags libcurl jansson) -o "$B/bench/bench-sim" bench/bench-sim.c \
	$(pkg-config --libs libcurl jansson)
ZLH_BIN="$PWD/$B/bin" timeout -k 5 60 "$B/bench/bench-sim"
