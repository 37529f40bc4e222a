#!/bin/bash
# Unpack benchmark: a multi-layer (gzip) OCI image of a debootstrapped Debian, unpacked by
#   - lade pull oci:...          (verify + unpack every layer into the store, per layer)
#   - lade unpack NAME DIR       (the flattened filesystem, from the store)
#   - umoci unpack --rootless
#   - gzip -dc LAYER | tar -x    (every layer in order, sequentially: the baseline)
# side by side in one run, best of N (default 3), with peak RSS, and ratios vs gzip|tar.
# Target: lade ≤ 0.5× gzip|tar on 2 cores, peak memory flat in layer size.
#
#   bash bench/unpack.sh            as root: installs what it needs (debootstrap, umoci,
#                                   time), debootstraps once, builds lade (release), then runs
#                                   the measurements as an ordinary user ($LADE_BENCH_USER,
#                                   default lade-test, created if missing)
#   bash bench/unpack.sh            as an ordinary user: needs the cached Debian tarball from
#                                   one earlier root run (or DEBIAN_TARBALL=...) and a lade
#                                   binary (LADE=..., default target/release/lade)
#
# Environment: BENCH_DIR (cache, default /var/tmp/lade-bench), RUNS (3), LADE, LAYERS (5),
# SUITE (bookworm), MIRROR (default: the first reachable one in /etc/apt/sources.list*).
# Not part of CI.
set -euo pipefail

SELF=$(readlink -f "$0")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/lade-bench}
RUNS=${RUNS:-3}
LAYERS=${LAYERS:-5}
SUITE=${SUITE:-bookworm}
BENCH_USER=${LADE_BENCH_USER:-lade-test}
DEBIAN_TARBALL=${DEBIAN_TARBALL:-$BENCH_DIR/debian-$SUITE-minbase.tar}

say() { printf '==> %s\n' "$*" >&2; }
die() { echo "bench/unpack.sh: $*" >&2; exit 1; }

# ------------------------------------------------------------------------------------------------
# Root phase: packages, debootstrap (cached), lade release build, then re-run as the user.
find_mirror() {
    local u
    for u in ${MIRROR:-} $(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
            | sed -E 's/^URIs:[[:space:]]*//; s/^deb (\[[^]]*\] )?//; s/[[:space:]].*//' \
            | grep -v -e security -e updates) http://deb.debian.org/debian; do
        if timeout 15 wget -q --spider "$u/dists/$SUITE/Release" 2>/dev/null; then
            echo "$u"
            return 0
        fi
        say "mirror $u not reachable"
    done
    return 1
}

if [ "$(id -u)" = 0 ] && [ "${1:-}" != --as-user ]; then
    export DEBIAN_FRONTEND=noninteractive
    need=()
    for p in debootstrap umoci time gzip tar wget util-linux; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        say "installing ${need[*]}"
        apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"
    fi
    mkdir -p "$BENCH_DIR"
    chmod 0755 "$BENCH_DIR"
    if [ ! -s "$DEBIAN_TARBALL" ]; then
        mirror=$(find_mirror) || die "no reachable Debian mirror"
        say "debootstrap --variant=minbase $SUITE from $mirror (once; cached in $DEBIAN_TARBALL)"
        rm -rf "$BENCH_DIR/debootstrap"
        debootstrap --variant=minbase "$SUITE" "$BENCH_DIR/debootstrap" "$mirror" >"$BENCH_DIR/debootstrap.log" 2>&1 \
            || { tail -20 "$BENCH_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $BENCH_DIR/debootstrap.log)"; }
        # A tarball the user can unpack as its own: ownership is dropped, modes kept.
        # (without device nodes, which an ordinary user can neither create nor unpack)
        tar -C "$BENCH_DIR/debootstrap" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' \
            --exclude='./sys/*' -cf "$DEBIAN_TARBALL.tmp" .
        mv "$DEBIAN_TARBALL.tmp" "$DEBIAN_TARBALL"
        rm -rf "$BENCH_DIR/debootstrap"
    fi
    chmod 0644 "$DEBIAN_TARBALL"
    if [ -z "${LADE:-}" ]; then
        command -v cargo >/dev/null || { [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"; }
        say "cargo build --release"
        (cd "$REPO" && cargo build --release --locked --bin lade)
        mkdir -p "$BENCH_DIR/bin"
        cp "$REPO/target/release/lade" "$BENCH_DIR/bin/lade"
        chmod 0755 "$BENCH_DIR/bin" "$BENCH_DIR/bin/lade"
        LADE=$BENCH_DIR/bin/lade
    fi
    id -u "$BENCH_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$BENCH_USER"
    mkdir -p "$BENCH_DIR/user"
    chown "$BENCH_USER:" "$BENCH_DIR/user"
    cp "$SELF" "$BENCH_DIR/unpack.sh"
    chmod 0755 "$BENCH_DIR/unpack.sh"
    say "measuring as $BENCH_USER"
    exec runuser -u "$BENCH_USER" -- env LADE="$LADE" BENCH_DIR="$BENCH_DIR" RUNS="$RUNS" \
        LAYERS="$LAYERS" SUITE="$SUITE" DEBIAN_TARBALL="$DEBIAN_TARBALL" HOME=/tmp \
        PATH=/usr/local/bin:/usr/bin:/bin \
        bash "$BENCH_DIR/unpack.sh" --as-user
fi

# ------------------------------------------------------------------------------------------------
# User phase.
LADE=${LADE:-$REPO/target/release/lade}
[ -x "$LADE" ] || die "no lade binary at $LADE (cargo build --release, or LADE=...)"
[ -s "$DEBIAN_TARBALL" ] || die "no Debian tarball at $DEBIAN_TARBALL: run this once as root (it debootstraps), or set DEBIAN_TARBALL"
for t in umoci gzip tar /usr/bin/time; do command -v "$t" >/dev/null || die "$t not installed"; done
if [ "$(id -u)" = 0 ]; then
    say "warning: measuring as root"
    W=$BENCH_DIR/root
else
    W=$BENCH_DIR/user
    [ -w "$W" ] || W=${TMPDIR:-/tmp}/lade-bench-$(id -u)
fi
mkdir -p "$W"
export TMPDIR=$W/tmp
mkdir -p "$TMPDIR"
nuke() { for d in "$@"; do [ -e "$d" ] || continue; chmod -R u+rwX "$d" 2>/dev/null || true; rm -rf "$d"; done; }

# The image: Debian split into LAYERS umoci layers (gzip), cached next to the tarball's stamp.
IMG=$W/image
STAMP="$(stat -c %s-%Y "$DEBIAN_TARBALL")-$LAYERS"
if [ "$(cat "$IMG/.stamp" 2>/dev/null)" != "$STAMP" ]; then
    say "building the $LAYERS-layer image with umoci (once; cached in $IMG)"
    nuke "$IMG" "$W/src" "$W/bundle"
    mkdir -p "$W/src"
    tar -C "$W/src" -xf "$DEBIAN_TARBALL"
    umoci init --layout "$IMG"
    umoci new --image "$IMG:debian"
    # Layer 1 gets every directory (with its mode); the files and symlinks, in path order,
    # are dealt into LAYERS groups of similar total size. The last layer also deletes
    # (whiteouts) and changes files of earlier layers.
    (cd "$W/src" && find . -mindepth 1 -type d | sort) > "$W/dirs.list"
    (cd "$W/src" && find . ! -type d -printf '%s %p\n' | sort -k2) > "$W/files.list"
    total=$(awk '{t += $1} END {print t}' "$W/files.list")
    awk -v per=$(( total / LAYERS + 1 )) -v n="$LAYERS" -v w="$W" '
        { print substr($0, index($0, " ") + 1) > (w "/group." g); acc += $1
          if (acc >= per && g < n - 1) { g++; acc = 0 } }' g=0 "$W/files.list"
    for g in $(seq 0 $((LAYERS - 1))); do
        umoci unpack --rootless --image "$IMG:debian" "$W/bundle" >/dev/null
        list=$W/group.$g
        [ "$g" = 0 ] && list="$W/dirs.list $W/group.0"
        # shellcheck disable=SC2086
        cat $list | tar -C "$W/src" --no-recursion -T - -cf - | tar -C "$W/bundle/rootfs" -xpf -
        if [ "$g" = $((LAYERS - 1)) ]; then
            nuke "$W/bundle/rootfs/usr/share/doc" "$W/bundle/rootfs/usr/share/man"
            echo bench > "$W/bundle/rootfs/etc/hostname"
        fi
        umoci repack --image "$IMG:debian" "$W/bundle" >/dev/null
        nuke "$W/bundle"
        say "  layer $((g + 1))/$LAYERS done"
    done
    umoci gc --layout "$IMG"
    nuke "$W/src"
    echo "$STAMP" > "$IMG/.stamp"
fi

# Layers in order, from the manifest (no jq needed: the digests appear in order).
manifest=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$IMG/index.json" | head -1 | sed 's/.*sha256://; s/"//')
mapfile -t layers < <(grep -o '"layers":.*' "$IMG/blobs/sha256/$manifest" | grep -o 'sha256:[0-9a-f]*' | sed 's/sha256://')
[ ${#layers[@]} -ge 4 ] || die "image has ${#layers[@]} layers, want at least 4"
comp=0
for l in "${layers[@]}"; do comp=$((comp + $(stat -c %s "$IMG/blobs/sha256/$l"))); done

# ------------------------------------------------------------------------------------------------
# Measurements. Each: prepare (untimed), run under /usr/bin/time. The tools take turns, round
# after round, so that load from elsewhere on the machine spreads over all of them.
declare -A best_s best_m
measure() { # name prepare-fn command...
    local name=$1 prep=$2; shift 2
    local t m
    $prep
    /usr/bin/time -f '%e %M' -o "$W/time.out" "$@" >"$W/cmd.log" 2>&1 \
        || { cat "$W/cmd.log" >&2; die "$name failed"; }
    read -r t m < "$W/time.out"
    say "  $name: ${t}s, $((m / 1024)) MiB"
    if [ -z "${best_s[$name]:-}" ] || awk "BEGIN{exit !($t < ${best_s[$name]})}"; then
        best_s[$name]=$t
    fi
    if [ -z "${best_m[$name]:-}" ] || [ "$m" -gt "${best_m[$name]}" ]; then best_m[$name]=$m; fi
}

OUT=$W/out
STORE=$W/store
# Every run starts with no dirty pages left from the previous one (sync, untimed), or the
# later runs pay for the earlier ones' writeback. The previous output is moved aside rather
# than deleted (and deleted at the end): on ext4 without a journal, allocating inodes right
# after deleting many scans past every recently deleted one, which would be measured too.
TRASH=$W/trash
set_aside() {
    mkdir -p "$TRASH"
    for d in "$@"; do [ -e "$d" ] && mv "$d" "$TRASH/$(basename "$d").$RANDOM$RANDOM"; done
    return 0
}
prep_out() { set_aside "$OUT"; sync; }
prep_store() { set_aside "$STORE" "$OUT"; sync; }

gzip_tar() {
    mkdir -p "$OUT"
    for l in "${layers[@]}"; do
        gzip -dc "$IMG/blobs/sha256/$l" | tar -x -C "$OUT" || return 1
    done
}

say "measuring, best of $RUNS (warm page cache; the first runs warm it)"
cat "$IMG"/blobs/sha256/* >/dev/null
GZ_TAR="$(declare -f gzip_tar); OUT='$OUT' IMG='$IMG'; layers=(${layers[*]}); gzip_tar"
for i in $(seq "$RUNS"); do
    say "round $i of $RUNS"
    measure "gzip -dc | tar -x" prep_out bash -c "$GZ_TAR"
    du_out=$(du -sk "$OUT" | cut -f1)
    # lade makes what it writes durable (one syncfs before publishing); the same for gzip|tar:
    measure "gzip -dc | tar -x; sync" prep_out bash -c "$GZ_TAR && sync"
    measure "umoci unpack --rootless" prep_out umoci unpack --rootless --image "$IMG:debian" "$OUT"
    measure "lade pull" prep_store "$LADE" --storage "$STORE" pull "oci:$IMG:debian"
    # from the store the pull just filled
    measure "lade unpack" prep_out "$LADE" --storage "$STORE" unpack debian "$OUT"
done
nuke "$OUT" "$STORE"

# Memory flat in layer size: one image with a single 256 MiB (incompressible) layer.
BIGIMG=$W/image-big
if [ ! -e "$BIGIMG/.done" ]; then
    say "building a one-layer image with a 256 MiB file (once; cached in $BIGIMG)"
    nuke "$BIGIMG" "$W/bundle"
    umoci init --layout "$BIGIMG"
    umoci new --image "$BIGIMG:big"
    umoci unpack --rootless --image "$BIGIMG:big" "$W/bundle" >/dev/null
    head -c $((256 * 1024 * 1024)) /dev/urandom > "$W/bundle/rootfs/big.bin"
    umoci repack --image "$BIGIMG:big" "$W/bundle" >/dev/null
    nuke "$W/bundle"
    : > "$BIGIMG/.done"
fi
for i in $(seq "$RUNS"); do
    measure "lade pull, 256 MiB layer" prep_store "$LADE" --storage "$STORE" pull "oci:$BIGIMG:big"
done
nuke "$OUT" "$STORE" "$TRASH"
largest=0
for l in "${layers[@]}"; do
    s=$(stat -c %s "$IMG/blobs/sha256/$l"); [ "$s" -gt "$largest" ] && largest=$s
done

# ------------------------------------------------------------------------------------------------
base=${best_s["gzip -dc | tar -x"]}
echo
echo "Debian $SUITE minbase, ${#layers[@]} gzip layers, $((comp / 1024 / 1024)) MiB compressed, $((du_out / 1024)) MiB unpacked; $(nproc) CPUs; best of $RUNS; $(id -un)"
printf '%-26s %9s %14s %12s\n' "tool" "seconds" "peak RSS MiB" "vs gzip|tar"
for name in "gzip -dc | tar -x" "gzip -dc | tar -x; sync" "umoci unpack --rootless" "lade pull" "lade unpack"; do
    printf '%-26s %9.2f %14d %12.2f\n' "$name" "${best_s[$name]}" $(( best_m[$name] / 1024 )) \
        "$(awk "BEGIN{print ${best_s[$name]} / $base}")"
done
sum=$(awk "BEGIN{print ${best_s["lade pull"]} + ${best_s["lade unpack"]}}")
printf '%-26s %9.2f %14s %12.2f\n' "lade pull + unpack" "$sum" "" "$(awk "BEGIN{print $sum / $base}")"
echo
echo "peak RSS of lade pull: $((best_m["lade pull"] / 1024)) MiB with layers up to $((largest / 1024 / 1024)) MiB (compressed), $((best_m["lade pull, 256 MiB layer"] / 1024)) MiB with one 256 MiB layer"
r=$(awk "BEGIN{print ${best_s["lade pull"]} / $base}")
if awk "BEGIN{exit !($r <= 0.5)}"; then
    echo "target met: lade pull is ${r}x gzip|tar (target <= 0.5x)"
else
    echo "target NOT met: lade pull is ${r}x gzip|tar (target <= 0.5x)"
fi
