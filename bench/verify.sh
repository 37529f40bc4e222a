#!/bin/bash
# Verify benchmark (issue 15): `lade verify --key PUB REF` of a signed image (a cosign-format
# simple-signing signature on the `.sig` tag and a Sigstore bundle found through the
# referrers fallback index, so every request a verification makes) against a local
# docker-registry over HTTPS (a CA made here). Warm: the image is signed once, one untimed run
# first; best of N (default 10).
# Target: lade verify ≤ 50 ms. cosign's own `verify` is not measured side by side: no cosign
# binary can be had from Debian, PyPI or npm (the registries this project may use), and
# fetching a release binary from elsewhere is not allowed here.
#
#   bash bench/verify.sh      as root: installs what it needs, builds lade (release), then
#                             measures as an ordinary user ($LADE_BENCH_USER, default lade-test)
#   bash bench/verify.sh      as an ordinary user: LADE=binary (default target/release/lade)
#
# Environment: BENCH_DIR (default /var/tmp/lade-bench), RUNS (10), LADE. Loopback only. Not
# part of CI.
set -euo pipefail

SELF=$(readlink -f "$0")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/lade-bench}
RUNS=${RUNS:-10}
BENCH_USER=${LADE_BENCH_USER:-lade-test}
NO_CH=1
. "$(dirname "$SELF")/lib.sh"

# ------------------------------------------------------------------------------------------------
# Root phase
if [ "$(id -u)" = 0 ] && [ "${1:-}" != --as-user ]; then
    install_tools
    if [ -z "${LADE:-}" ]; then
        build_lade lade-verify
    fi
    mkdir -p "$BENCH_DIR/push-fixture"
    [ -s "$BENCH_DIR/push-fixture/done" ] ||
        bash "$REPO/tests/fixtures/make-images.sh" "$BENCH_DIR/push-fixture" >&2
    chmod -R a+rX "$BENCH_DIR/push-fixture"
    mkdir -p "$BENCH_DIR/verify-user"
    chown "$BENCH_USER:" "$BENCH_DIR/verify-user"
    copy_for_user
    say "measuring as $BENCH_USER"
    exec runuser -u "$BENCH_USER" -- env LADE="$LADE" BENCH_DIR="$BENCH_DIR" RUNS="$RUNS" \
        HOME=/tmp USER="$BENCH_USER" PATH=/usr/local/bin:/usr/bin:/bin \
        bash "$BENCH_DIR/verify.sh" --as-user
fi

# ------------------------------------------------------------------------------------------------
# User phase
LADE=${LADE:-$REPO/target/release/lade}
IMG=$BENCH_DIR/push-fixture/layout
[ -x "$LADE" ] || die "no lade binary at $LADE (cargo build --release, or LADE=...)"
for t in docker-registry skopeo openssl /usr/bin/time; do
    command -v "$t" >/dev/null || die "$t not installed"
done
use_work_dir verify
make_certs
pick_port 5500 5599
trap stop_registry EXIT
fresh_registry
REF=127.0.0.1:$port/bench/signed:1
skopeo copy --quiet --dest-cert-dir "$C/cert-dir" "oci:$IMG:multi" "docker://$REF"

STORE=$W/lade-store
nuke "$STORE" "$W/keys"
mkdir -p "$W/keys"
export LADE_KEY_PASSWORD=bench
"$LADE" --storage "$STORE" -q key generate "$W/keys/bench"
"$LADE" --storage "$STORE" --tls-ca-file "$C/ca.pem" -q sign --bundle --key "$W/keys/bench.key" "$REF" >/dev/null
"$LADE" --storage "$STORE" --tls-ca-file "$C/ca.pem" verify --key "$W/keys/bench.pub" "$REF" >&2

say "measuring, best of $RUNS"
measure "lade verify" true \
    "$LADE" --storage "$STORE" --tls-ca-file "$C/ca.pem" -q verify --key "$W/keys/bench.pub" "$REF"
nuke "$STORE"

echo
echo "$REF (cosign signature + Sigstore bundle) on docker-registry over HTTPS on loopback; $(nproc) CPUs; best of $RUNS; $(id -un)"
table "lade verify"
echo "cosign verify: not measured (no cosign binary from Debian, PyPI or npm)"
echo
check "lade verify seconds" "${best_s["lade verify"]}" 0.050
