#!/bin/bash
# Runs one integration test file (or the unit tests) quickly, as the ordinary test user, while
# developing: builds it as root with cargo, then runs the binary as $LADE_TEST_USER (default
# lade-test). The full suite, as CI runs it, is tests/run-all.sh.
#
#   bash tests/as-user.sh build                 # every test in tests/build.rs
#   bash tests/as-user.sh build cache_hits      # those whose name contains cache_hits
#   bash tests/as-user.sh lib                   # the unit tests
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "tests/as-user.sh: run as root (it switches to the test user)" >&2; exit 1; }
[ $# -ge 1 ] || { echo "usage: tests/as-user.sh TEST_FILE|lib [FILTER...]" >&2; exit 2; }
name=$1; shift
TEST_USER=${LADE_TEST_USER:-lade-test}
id -u "$TEST_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$TEST_USER"
if [ "$name" = lib ]; then sel=(--lib); else sel=(--test "$name"); fi
bin=$(cargo test --no-run "${sel[@]}" --message-format=json 2>/dev/null \
      | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | grep /deps/ | tail -1)
[ -n "$bin" ] || { cargo test --no-run "${sel[@]}"; exit 1; }
cargo build --bin lade 2>/dev/null
# The binary and target dir must be readable by the test user.
tmp=$(mktemp -d /var/tmp/lade-as-user.XXXXXX)
chown "$TEST_USER:" "$tmp"
trap 'rm -rf "$tmp"' EXIT
home=$(getent passwd "$TEST_USER" | cut -d: -f6)
# On a host staged like a cluster node, as tests/run-all.sh does (tests/cluster-host.sh).
cluster_mounts="/tmp/lade-job-scratch:$home/lade-automount"
bash tests/cluster-host.sh "$TEST_USER" "$cluster_mounts" \
  runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    HOME="$home" USER="$TEST_USER" LOGNAME="$TEST_USER" TMPDIR="$tmp" LANG=C.UTF-8 \
    LADE_DEBIAN_TARBALL=/var/tmp/lade-test-debian/debian-bookworm-minbase.tar \
    LADE_TEST_CLUSTER_MOUNTS="$cluster_mounts" \
    CARGO_MANIFEST_DIR="$PWD" \
    "$bin" --test-threads=2 "$@"
