#!/bin/sh
# Installs the Debian packages zlh-controller needs to build, test and demo,
# when any is missing. Idempotent; prints nothing when nothing is missing.
set -eu
PKGS="build-essential pkg-config clang libclang-rt-14-dev clang-format
libcurl4-openssl-dev libyaml-dev libpq-dev libjansson-dev libsystemd-dev
libssl-dev libcmocka-dev libmicrohttpd-dev postgresql postgresql-contrib
curl jq valgrind systemd"
missing=""
for p in $PKGS; do
        st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        case "$st" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
        esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
        echo "deps.sh: missing packages:$missing (run as root, or install them)" >&2
        exit 1
fi
echo "deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
