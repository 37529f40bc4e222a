#!/bin/bash
# Push benchmark: a multi-layer image pushed to an empty local docker-registry over HTTPS (a CA
# made here), by
#   - lade push IMAGE                    (a stored image: its original compressed blobs)
#   - lade push --image DIR              (the unpacked tree, packed and gzipped: what
#                                         ch-image push does)
#   - skopeo copy oci:… docker://…       (the same blobs from an OCI layout)
#   - ch-image push                      (Debian's charliecloud, if usable; the CA given
#                                         through REQUESTS_CA_BUNDLE)
# The image: the debootstrap image of bench/unpack.sh if its cache ($BENCH_DIR/user/image)
# exists, else the busybox fixture of tests/fixtures/make-images.sh (tag multi). A fresh
# registry for every run; best of N (default 3); ratios printed.
# Targets: lade push ≤ 1.0× skopeo; lade push --image ≤ 0.2× ch-image push.
#
#   bash bench/push.sh        as root: installs what it needs, builds lade (release), then
#                             measures as an ordinary user ($LADE_BENCH_USER, default lade-test)
#   bash bench/push.sh        as an ordinary user: LADE=binary (default target/release/lade)
#
# Environment: BENCH_DIR (default /var/tmp/lade-bench), RUNS (3), LADE, IMG (an OCI layout)
# and TAG, NO_CH=1 to skip ch-image. Loopback only. Not part of CI.
set -euo pipefail

SELF=$(readlink -f "$0")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/lade-bench}
RUNS=${RUNS:-3}
BENCH_USER=${LADE_BENCH_USER:-lade-test}
. "$(dirname "$SELF")/lib.sh"

# ------------------------------------------------------------------------------------------------
# Root phase
if [ "$(id -u)" = 0 ] && [ "${1:-}" != --as-user ]; then
    install_tools
    if [ -z "${LADE:-}" ]; then
        build_lade lade-push
    fi
    if [ -z "${IMG:-}" ] && [ -s "$BENCH_DIR/user/image/index.json" ]; then
        IMG=$BENCH_DIR/user/image TAG=debian
    elif [ -z "${IMG:-}" ]; then
        # The busybox fixture of the tests.
        mkdir -p "$BENCH_DIR/push-fixture"
        [ -s "$BENCH_DIR/push-fixture/done" ] ||
            bash "$REPO/tests/fixtures/make-images.sh" "$BENCH_DIR/push-fixture" >&2
        chmod -R a+rX "$BENCH_DIR/push-fixture"
        IMG=$BENCH_DIR/push-fixture/layout TAG=multi
    fi
    chmod a+rx "$BENCH_DIR" "$BENCH_DIR/user" 2>/dev/null || true
    mkdir -p "$BENCH_DIR/push-user"
    chown "$BENCH_USER:" "$BENCH_DIR/push-user"
    copy_for_user
    say "measuring as $BENCH_USER"
    exec runuser -u "$BENCH_USER" -- env LADE="$LADE" BENCH_DIR="$BENCH_DIR" RUNS="$RUNS" \
        IMG="$IMG" TAG="${TAG:-debian}" NO_CH="${NO_CH:-}" HOME=/tmp USER="$BENCH_USER" \
        PATH=/usr/local/bin:/usr/bin:/bin bash "$BENCH_DIR/push.sh" --as-user
fi

# ------------------------------------------------------------------------------------------------
# User phase
LADE=${LADE:-$REPO/target/release/lade}
IMG=${IMG:-$BENCH_DIR/user/image}
TAG=${TAG:-debian}
[ -x "$LADE" ] || die "no lade binary at $LADE (cargo build --release, or LADE=...)"
[ -s "$IMG/index.json" ] || die "no image at $IMG (IMG=OCI_LAYOUT TAG=TAG)"
for t in docker-registry skopeo openssl /usr/bin/time; do
    command -v "$t" >/dev/null || die "$t not installed"
done
find_ch_image
use_work_dir push

# A fresh registry for every run (fresh_registry), over HTTPS with a CA made here, on a free
# loopback port.
make_certs
pick_port 5400 5499
trap stop_registry EXIT
REF=127.0.0.1:$port/bench/img:1

image_stats "$IMG"

# Inputs, made once, not measured: lade's store holding the image, its unpacked tree, and
# ch-image's storage holding it (pulled from a registry, as ch-image takes images).
STORE=$W/lade-store
nuke "$STORE" "$W/tree" "$W/ch"
say "preparing: lade pull oci:$IMG:$TAG"
"$LADE" --storage "$STORE" -q pull "oci:$IMG:$TAG" img
"$LADE" --storage "$STORE" -q unpack img "$W/tree"
if [ -n "$HAVE_CH" ]; then
    export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost GIT_COMMITTER_NAME=bench \
        GIT_COMMITTER_EMAIL=bench@localhost
    fresh_registry
    skopeo copy --quiet --dest-cert-dir "$C/cert-dir" "oci:$IMG:$TAG" "docker://$REF"
    say "preparing: ch-image pull"
    REQUESTS_CA_BUNDLE="$C/ca.pem" ch-image --storage "$W/ch" pull "$REF" img >&2 \
        || { say "ch-image pull failed; ch-image not measured"; HAVE_CH=; }
fi

say "measuring, best of $RUNS, each into an empty registry"
measure "lade push" fresh_registry \
    "$LADE" --storage "$STORE" --tls-ca-file "$C/ca.pem" -q push img "$REF"
measure "lade push --image DIR" fresh_registry \
    "$LADE" --storage "$STORE" --tls-ca-file "$C/ca.pem" -q push --image "$W/tree" img "$REF"
measure "skopeo copy oci: docker://" fresh_registry \
    skopeo copy --quiet --dest-cert-dir "$C/cert-dir" "oci:$IMG:$TAG" "docker://$REF"
if [ -n "$HAVE_CH" ]; then
    measure "ch-image push" fresh_registry env REQUESTS_CA_BUNDLE="$C/ca.pem" \
        ch-image --storage "$W/ch" push img "$REF"
fi
nuke "$STORE" "$W/tree" "$W/ch"

# ------------------------------------------------------------------------------------------------
echo
echo "$IMG:$TAG, $nlayers layers, $((comp / 1024 / 1024)) MiB compressed, to an empty docker-registry over HTTPS on loopback; $(nproc) CPUs; best of $RUNS; $(id -un)"
names=("lade push" "lade push --image DIR" "skopeo copy oci: docker://")
[ -n "$HAVE_CH" ] && names+=("ch-image push")
table "${names[@]}"
echo
check "lade push / skopeo copy" \
    "$(awk "BEGIN{printf \"%.3f\", ${best_s["lade push"]} / ${best_s["skopeo copy oci: docker://"]}}")" 1.0
if [ -n "$HAVE_CH" ]; then
    check "lade push / ch-image push" \
        "$(awk "BEGIN{printf \"%.3f\", ${best_s["lade push"]} / ${best_s["ch-image push"]}}")" 0.2
    check "lade push --image / ch-image push" \
        "$(awk "BEGIN{printf \"%.3f\", ${best_s["lade push --image DIR"]} / ${best_s["ch-image push"]}}")" 0.2
fi
