#!/bin/bash
# Scale benchmark: how lade's pull → run grows with the work, against gzip | tar and umoci in
# the same run. Synthetic images (bench/make-image.py, cached), each pulled from an OCI layout
# into an empty store and then run, and unpacked by the peers:
#   - files:  one layer of 1k, 10k, 100k (and 1M) small .js files, 500 to a directory
#   - layers: 1, 10, 100 (and 200) layers of 50 small files each
#   - bytes:  one layer of 10 MB, 500 MB (and 2 GB) of text-like data in 4 MiB files
# For each: lade pull, lade run IMG -- /bin/true (the first run after the pull), gzip -dc |
# tar -x of every layer in order, umoci unpack --rootless; best of RUNS (3), peak RSS of the
# pull, and the cost per entry, per layer and per byte. It must grow linearly, memory flat.
#
#   bash bench/scale.sh       as root: installs what it needs (umoci, time, busybox-static,
#                             python3, pigz), builds lade (release), then measures as an
#                             ordinary user ($LADE_BENCH_USER, default lade-test)
#   bash bench/scale.sh       as an ordinary user: LADE=binary (default target/release/lade)
#
# Environment: BENCH_DIR (default /var/tmp/lade-bench; its filesystem is what is measured),
# RUNS (3), SCALE_BIG=1 adds the 1M-file, 200-layer and 2 GB cases (about 20 more minutes and
# 10 GB of disk), CASES="files:1000 layers:10 ..." picks cases, NO_UMOCI=1 skips umoci.
# A default run takes about 15 minutes on 2 cores. Not part of CI.
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
    export DEBIAN_FRONTEND=noninteractive
    need=()
    for p in umoci time busybox-static python3 pigz gzip tar util-linux; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        say "installing ${need[*]}"
        apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"
    fi
    id -u "$BENCH_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$BENCH_USER"
    mkdir -p "$BENCH_DIR"
    chmod 0755 "$BENCH_DIR"
    [ -n "${LADE:-}" ] || build_lade lade-scale --locked
    mkdir -p "$BENCH_DIR/scale-user"
    chown "$BENCH_USER:" "$BENCH_DIR/scale-user"
    copy_for_user
    cp "$REPO/bench/make-image.py" "$BENCH_DIR/make-image.py"
    chmod 0644 "$BENCH_DIR/make-image.py"
    say "measuring as $BENCH_USER"
    exec runuser -u "$BENCH_USER" -- env LADE="$LADE" BENCH_DIR="$BENCH_DIR" RUNS="$RUNS" \
        SCALE_BIG="${SCALE_BIG:-}" CASES="${CASES:-}" NO_UMOCI="${NO_UMOCI:-}" HOME=/tmp \
        USER="$BENCH_USER" PATH=/usr/local/bin:/usr/bin:/bin bash "$BENCH_DIR/scale.sh" --as-user
fi

# ------------------------------------------------------------------------------------------------
# User phase
LADE=${LADE:-$REPO/target/release/lade}
[ -x "$LADE" ] || die "no lade binary at $LADE (cargo build --release, or LADE=...)"
MAKE_IMAGE=$(dirname "$SELF")/make-image.py
for t in umoci gzip tar python3 /usr/bin/time; do command -v "$t" >/dev/null || die "$t not installed"; done
use_work_dir scale
# Output is set aside, not deleted, before a timed run (see bench/pull.sh: on ext4 without a
# journal, making files soon after deleting many measures the deletion too); deleted at the end.
TRASH=$W/trash
set_aside() {
    mkdir -p "$TRASH"
    for d in "$@"; do [ -e "$d" ] && mv "$d" "$TRASH/$(basename "$d").$RANDOM$RANDOM"; done
    return 0
}
trap 'nuke "$TRASH"' EXIT

if [ -n "${CASES:-}" ]; then
    read -r -a cases <<< "$CASES"
else
    cases=(files:1000 files:10000 files:100000 layers:1 layers:10 layers:100
           bytes:10000000 bytes:500000000)
    [ -n "${SCALE_BIG:-}" ] && cases+=(files:1000000 layers:200 bytes:2000000000)
fi

# image KIND N: the cached layout for a case (made once); sets IMG.
image() {
    IMG=$W/images/$1-$2
    if [ ! -s "$IMG/index.json" ]; then
        say "making the $1=$2 image (once; cached in $IMG)"
        nuke "$IMG"
        mkdir -p "$IMG"
        python3 "$MAKE_IMAGE" "$IMG" t "--$1" "$2" || die "make-image.py failed"
    fi
}

# The layers of $IMG in order.
layers_of() {
    local manifest
    manifest=$(grep -o '"digest": *"sha256:[0-9a-f]*"' "$IMG/index.json" | head -1 | sed 's/.*sha256://; s/"//')
    grep -o '"layers":.*' "$IMG/blobs/sha256/$manifest" | grep -o 'sha256:[0-9a-f]*' | sed 's/sha256://'
}

OUT=$W/out
STORE=$W/store
prep_out() { set_aside "$OUT"; sync; }
prep_store() { set_aside "$STORE"; sync; }
prep_none() { :; }
gzip_tar() {
    mkdir -p "$OUT"
    local l
    for l in $LAYERS; do gzip -dc "$IMG/blobs/sha256/$l" | tar -x -C "$OUT" || return 1; done
}

results=()
for c in "${cases[@]}"; do
    kind=${c%%:*} n=${c#*:}
    image "$kind" "$n"
    LAYERS=$(layers_of | tr '\n' ' ')
    nlayers=$(wc -w <<< "$LAYERS")
    comp=0
    for l in $LAYERS; do comp=$((comp + $(stat -c %s "$IMG/blobs/sha256/$l"))); done
    say "case $c: $nlayers layers, $((comp / 1000)) kB compressed"
    cat "$IMG"/blobs/sha256/* > /dev/null
    measure "$c gzip|tar" prep_out bash -c "$(declare -f gzip_tar); IMG='$IMG' OUT='$OUT' LAYERS='$LAYERS'; gzip_tar"
    entries=$(find "$OUT" | wc -l)
    bytes=$(du -sb "$OUT" | cut -f1)
    if [ -z "${NO_UMOCI:-}" ]; then
        measure "$c umoci" prep_out umoci unpack --rootless --image "$IMG:t" "$OUT"
    fi
    measure "$c lade pull" prep_store "$LADE" --storage "$STORE" -q pull "oci:$IMG:t" img
    # The first run after the pull (the store is the last pull's).
    measure "$c lade run" prep_none "$LADE" --storage "$STORE" run img -- /bin/true
    results+=("$c $nlayers $entries $bytes $comp")
done

# ------------------------------------------------------------------------------------------------
echo
echo "lade scale: $(nproc) CPUs, $(df -T "$W" | awk 'NR==2{print $2}') at $W, best of $RUNS, $(id -un), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-16s %6s %8s %8s %8s %8s %9s %8s %7s %7s %8s %8s %8s %6s\n' \
    case layers entries MB pull_s run_ms gz\|tar_s umoci_s /gz\|tar /umoci us/entry ms/layer ns/byte RSS_MB
for r in "${results[@]}"; do
    read -r c nl en by cp <<< "$r"
    pull=${best_s["$c lade pull"]} run=${best_s["$c lade run"]} gt=${best_s["$c gzip|tar"]}
    um=${best_s["$c umoci"]:-0}
    rss=$(( best_m["$c lade pull"] / 1024 ))
    awk -v c="$c" -v nl="$nl" -v en="$en" -v by="$by" -v pull="$pull" -v run="$run" -v gt="$gt" \
        -v um="$um" -v rss="$rss" 'BEGIN {
        total = pull + run
        printf "%-16s %6d %8d %8.1f %8.3f %8.1f %9.3f %8.3f %7.2f %7s %8.2f %8.2f %8.2f %6d\n",
            c, nl, en, by / 1e6, pull, run * 1000, gt, um, total / gt,
            (um > 0 ? sprintf("%.3f", total / um) : "-"),
            total / en * 1e6, total / nl * 1e3, total / by * 1e9, rss }'
done
echo "(pull_s: lade pull into an empty store; run_ms: the first lade run after it; the ratios,"
echo " per-entry, per-layer and per-byte costs are of pull + run)"
