#!/bin/bash
# Pull benchmark: the multi-layer (gzip) debootstrap image of bench/unpack.sh, served by a
# local docker-registry over HTTPS (a CA made here), pulled to a runnable image by
#   - lade pull                          (cold: empty store; verify, store, unpack per layer)
#   - skopeo copy docker:// oci: + umoci unpack --rootless
#   - ch-image pull                      (Debian's charliecloud, if installed; the CA given
#                                         through REQUESTS_CA_BUNDLE)
#   - gzip -dc LAYER | tar -x            (every layer in order, from local files: the floor a
#                                         user would compare with)
# and the warm lade pull (every blob present: one manifest request), side by side in one
# run, best of N (default 3), with peak RSS and ratios.
# Targets: cold ≤ 0.25× sequential gzip|tar, ≤ 0.2× ch-image and ≤ 0.1× skopeo+umoci; warm
# ≤ 20 ms; peak RSS ≤ 64 MB.
#
#   bash bench/pull.sh        as root: installs what it needs (docker-registry, skopeo, umoci,
#                             openssl, time; charliecloud-builders if available), builds the
#                             image once (through bench/unpack.sh's cache), builds lade
#                             (release), then measures as an ordinary user ($LADE_BENCH_USER,
#                             default lade-test, created if missing)
#   bash bench/pull.sh        as an ordinary user: needs the image (IMG=OCI_LAYOUT, tag
#                             debian; default: bench/unpack.sh's cache) and LADE=binary
#
# Environment: BENCH_DIR (default /var/tmp/lade-bench), RUNS (3), LADE, IMG, NO_CH=1 to skip
# ch-image. Loopback only. Not part of CI.
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
    if [ -z "${IMG:-}" ] && [ ! -s "$BENCH_DIR/user/image/index.json" ]; then
        say "building the image with bench/unpack.sh (RUNS=1)"
        RUNS=1 bash "$REPO/bench/unpack.sh" >&2
    fi
    IMG=${IMG:-$BENCH_DIR/user/image}
    if [ -z "${LADE:-}" ]; then
        build_lade lade-pull --locked
    fi
    mkdir -p "$BENCH_DIR/pull-user"
    chown "$BENCH_USER:" "$BENCH_DIR/pull-user"
    copy_for_user
    say "measuring as $BENCH_USER"
    exec runuser -u "$BENCH_USER" -- env LADE="$LADE" BENCH_DIR="$BENCH_DIR" RUNS="$RUNS" \
        IMG="$IMG" NO_CH="${NO_CH:-}" HOME=/tmp USER="$BENCH_USER" \
        PATH=/usr/local/bin:/usr/bin:/bin bash "$BENCH_DIR/pull.sh" --as-user
fi

# ------------------------------------------------------------------------------------------------
# User phase
LADE=${LADE:-$REPO/target/release/lade}
IMG=${IMG:-$BENCH_DIR/user/image}
[ -x "$LADE" ] || die "no lade binary at $LADE (cargo build --release, or LADE=...)"
[ -s "$IMG/index.json" ] || die "no image at $IMG: run 'bash bench/unpack.sh' once as root, or set IMG"
for t in docker-registry skopeo umoci openssl /usr/bin/time; do
    command -v "$t" >/dev/null || die "$t not installed"
done
find_ch_image
use_work_dir pull
# Before a timed run, the previous run's output is moved aside, not deleted: on ext4 without a
# journal (this CI machine type), allocating inodes scans past every recently deleted one, so a
# run right after deleting tens of thousands of files measures that scan (5 s instead of 0.7 s
# for lade, seen in perf as recently_deleted/find_inode_bit). It is all deleted at the end.
TRASH=$W/trash
set_aside() {
    mkdir -p "$TRASH"
    for d in "$@"; do [ -e "$d" ] && mv "$d" "$TRASH/$(basename "$d").$RANDOM$RANDOM"; done
    return 0
}

# The registry, over HTTPS with a CA made here, on a free loopback port.
make_certs
pick_port 5300 5399
trap stop_registry EXIT
fresh_registry
REF=127.0.0.1:$port/bench/debian:1
say "pushing the image to $REF"
skopeo copy --quiet --dest-cert-dir "$C/cert-dir" "oci:$IMG:debian" "docker://$REF"

image_stats "$IMG"

STORE=$W/lade-store
prep_lade() { set_aside "$STORE"; }
prep_none() { :; }
prep_skopeo() { set_aside "$W/oci" "$W/bundle"; }
prep_ch() { set_aside "$W/ch"; }
skopeo_umoci() {
    skopeo copy --quiet --src-cert-dir "$C/cert-dir" "docker://$REF" "oci:$W/oci:debian" &&
        umoci unpack --rootless --image "$W/oci:debian" "$W/bundle" >/dev/null
}
prep_gzip_tar() { set_aside "$W/tar-out"; }
manifest=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$IMG/index.json" | head -1 | sed 's/.*sha256://; s/"//')
LAYERS=$(grep -o '"layers":.*' "$IMG/blobs/sha256/$manifest" | grep -o 'sha256:[0-9a-f]*' | sed 's/sha256://' | tr '\n' ' ')
gzip_tar() {
    mkdir -p "$W/tar-out"
    local l
    for l in $LAYERS; do gzip -dc "$IMG/blobs/sha256/$l" | tar -x -C "$W/tar-out" || return 1; done
}

say "measuring, best of $RUNS"
measure "lade pull (cold)" prep_lade "$LADE" --storage "$STORE" --tls-ca-file "$C/ca.pem" -q pull "$REF" bench
# Warm: the store of the last cold run has every blob; milliseconds, so best of 5 at least.
RUNS_SAVED=$RUNS; RUNS=$(( RUNS > 5 ? RUNS : 5 ))
measure "lade pull (warm)" prep_none "$LADE" --storage "$STORE" --tls-ca-file "$C/ca.pem" -q pull "$REF" bench
RUNS=$RUNS_SAVED
measure "skopeo copy + umoci unpack" prep_skopeo bash -c "$(declare -f skopeo_umoci); C='$C' REF='$REF' W='$W'; skopeo_umoci"
cat "$IMG"/blobs/sha256/* > /dev/null
measure "gzip -dc | tar -x (sequential)" prep_gzip_tar bash -c "$(declare -f gzip_tar); IMG='$IMG' W='$W' LAYERS='$LAYERS'; gzip_tar"
if [ -n "$HAVE_CH" ]; then
    # ch-image's build cache is git and wants an identity.
    export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost GIT_COMMITTER_NAME=bench \
        GIT_COMMITTER_EMAIL=bench@localhost
    # ch-image takes no CA file; Python requests reads one from REQUESTS_CA_BUNDLE.
    measure "ch-image pull" prep_ch env REQUESTS_CA_BUNDLE="$C/ca.pem" \
        ch-image --storage "$W/ch" pull "$REF"
fi
nuke "$STORE" "$W/oci" "$W/bundle" "$W/ch" "$W/tar-out" "$TRASH"

# ------------------------------------------------------------------------------------------------
echo
echo "Debian minbase, $nlayers gzip layers, $((comp / 1024 / 1024)) MiB compressed, from docker-registry over HTTPS on loopback; $(nproc) CPUs; $(df -T "$W" | awk 'NR==2{print $2}'); best of $RUNS; $(id -un); load $(cut -d' ' -f1-3 /proc/loadavg)"
names=("lade pull (cold)" "lade pull (warm)" "skopeo copy + umoci unpack" "gzip -dc | tar -x (sequential)")
[ -n "$HAVE_CH" ] && names+=("ch-image pull")
table "${names[@]}"
echo
cold=${best_s["lade pull (cold)"]}
check "lade cold / sequential gzip|tar" "$(awk "BEGIN{printf \"%.3f\", $cold / ${best_s["gzip -dc | tar -x (sequential)"]}}")" 0.25
check "lade cold / (skopeo + umoci)" "$(awk "BEGIN{printf \"%.3f\", $cold / ${best_s["skopeo copy + umoci unpack"]}}")" 0.1
if [ -n "$HAVE_CH" ]; then
    check "lade cold / ch-image" "$(awk "BEGIN{printf \"%.3f\", $cold / ${best_s["ch-image pull"]}}")" 0.2
fi
check "lade warm pull, ms" "$(awk "BEGIN{printf \"%.0f\", ${best_s["lade pull (warm)"]} * 1000}")" 20
check "lade peak RSS, MiB" "$(( best_m["lade pull (cold)"] / 1024 ))" 64
