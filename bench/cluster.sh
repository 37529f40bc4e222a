#!/bin/bash
# Single-file images (issue 14), lade against Charliecloud on the Debian test image:
#   1. start-up: lade run FILE.sqfs -- /bin/true  vs  ch-run FILE.sqfs -- /bin/true, on the
#      same file (lade's); lade run of the stored image for reference. Target lade <= 1.0x.
#   2. export: lade copy lade:debian squashfs:FILE  vs  ch-convert -i ch-image debian FILE
#      (both from their own store, where the image is already unpacked). Target <= 0.5x.
#   3. the metadata load a parallel filesystem sees: files opened in the image's storage for
#      one run of the stored image and one of the SquashFS file (strace).
#
#   bash bench/cluster.sh   as root: installs hyperfine, strace, squashfs-tools, squashfuse,
#                           charliecloud-runtime and ch-image (charliecloud-builders, or its
#                           .deb unpacked if apt cannot install it: it depends on docker.io),
#                           makes /dev/fuse usable by users, builds lade (release), makes the
#                           Debian tarball as the tests do, re-runs itself as an ordinary user
#                           ($LADE_BENCH_USER, default lade-test).
# Not part of CI. RUNS (default 30) runs for start-up, EXPORTS (default 3) for export.
set -euo pipefail

SELF=$(readlink -f "$0")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/lade-bench-cluster}
BENCH_USER=${LADE_BENCH_USER:-lade-test}
RUNS=${RUNS:-30}
EXPORTS=${EXPORTS:-3}
say() { printf '==> %s\n' "$*" >&2; }

if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    need=()
    for p in hyperfine strace squashfs-tools squashfuse charliecloud-runtime python3-lark \
             python3-requests debootstrap; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"
    fi
    mkdir -p "$BENCH_DIR"
    CH_IMAGE=$(command -v ch-image || true)
    if [ -z "$CH_IMAGE" ] && ! apt-get install -y -q --no-install-recommends charliecloud-builders; then
        say "charliecloud-builders does not install cleanly; unpacking its .deb for ch-image"
        (cd "$BENCH_DIR" && apt-get download charliecloud-builders && dpkg -x charliecloud-builders_*.deb ch)
    fi
    [ -c /dev/fuse ] && chmod 0666 /dev/fuse
    (cd "$REPO" && cargo build --release -q --bin lade)
    id -u "$BENCH_USER" >/dev/null 2>&1 || useradd --create-home "$BENCH_USER"
    TARBALL=/var/tmp/lade-test-debian/debian-bookworm-minbase.tar
    mkdir -p "$(dirname "$TARBALL")" && chmod 0755 "$(dirname "$TARBALL")"
    bash "$REPO/tests/fixtures/debian-tarball.sh" "$TARBALL" bookworm >&2
    install -m 0755 "$REPO/target/release/lade" "$BENCH_DIR/lade"
    install -m 0755 "$SELF" "$BENCH_DIR/cluster.sh"
    install -m 0755 "$REPO/bench/interleave.py" "$BENCH_DIR/interleave.py"
    chown -R "$BENCH_USER:" "$BENCH_DIR"
    exec runuser -u "$BENCH_USER" -- env -i \
        PATH="$BENCH_DIR/ch/usr/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
        HOME="$(getent passwd "$BENCH_USER" | cut -d: -f6)" USER="$BENCH_USER" \
        BENCH_DIR="$BENCH_DIR" RUNS="$RUNS" EXPORTS="$EXPORTS" TARBALL="$TARBALL" \
        LADE="$BENCH_DIR/lade" bash "$BENCH_DIR/cluster.sh"
fi

LADE=${LADE:-$REPO/target/release/lade}
TARBALL=${TARBALL:-/var/tmp/lade-test-debian/debian-bookworm-minbase.tar}
cd "$BENCH_DIR"
W=$BENCH_DIR/work
chmod -R u+rwX "$W" 2>/dev/null || true  # trees keep the image's modes (0555 directories)
rm -rf "$W" && mkdir -p "$W"
export LADE_STORAGE=$W/store CH_IMAGE_STORAGE=$W/ch-store TMPDIR=$W/tmp
mkdir -p "$TMPDIR"
echo "kernel: $(uname -r); cores: $(nproc); $(mksquashfs -version | head -1); $(ch-run --version 2>&1)"

say "importing the Debian tarball into lade's and ch-image's stores"
"$LADE" -q import "$TARBALL" debian
ch-image --no-cache import "$TARBALL" debian >/dev/null 2>&1
echo "image: $TARBALL ($(du -sh "$TARBALL" | cut -f1), $(tar -tf "$TARBALL" | wc -l) entries)"

# --- 2. export -----------------------------------------------------------------------------
say "export, $EXPORTS runs each"
hyperfine -N --runs "$EXPORTS" --export-json export.json \
    --prepare "rm -f $W/lade.sqfs $W/ch.sqfs" \
    -n lade "$LADE -q copy lade:debian squashfs:$W/lade.sqfs" \
    -n ch-convert "ch-convert -i ch-image -o squash debian $W/ch.sqfs" >/dev/null
"$LADE" -q copy lade:debian "squashfs:$W/lade.sqfs"
ch-convert -i ch-image -o squash debian "$W/ch.sqfs" >/dev/null 2>&1

# --- 1. start-up ---------------------------------------------------------------------------
say "start-up, $RUNS runs each"
# Interleaved (one run of each per round): the machine's drift hits all three alike.
python3 "${INTERLEAVE:-$BENCH_DIR/interleave.py}" --warmup 3 --runs "$RUNS" --json run.json \
    "lade run FILE=$LADE run $W/lade.sqfs -- /bin/true" \
    "ch-run FILE=ch-run $W/lade.sqfs -- /bin/true" \
    "lade run stored=$LADE run debian -- /bin/true" >/dev/null

# --- 3. files opened in the image's storage -------------------------------------------------
# The metadata load a parallel filesystem holding the image sees, for one run of a small
# workload ($OPENS_CMD, default 'dpkg -l': dpkg reads its database). strace with seccomp-bpf
# stops a process only at the traced calls, so it never holds up the FUSE server while the
# container waits for it. Counted, per process: lade's and squashfuse's successful opens of
# paths in the store or of the file (not the FUSE mount inside the store's tmp/); the
# container's opens and execs of the image's files for the stored image, where each is a
# file in the store (not /proc, /sys, /dev or what lade binds in from the host). The
# container's opens under a SquashFS file are served over FUSE from the one file, so they
# reach the filesystem only as reads of that file.
OPENS_CMD=${OPENS_CMD:-dpkg -l}
opens() {
    # shellcheck disable=SC2086
    strace -f --seccomp-bpf -qq -e trace=execve,open,openat,openat2 -e status=successful \
        -o "$W/trace.$1" "$LADE" run "$2" -- $OPENS_CMD >/dev/null
    python3 - "$W/trace.$1" "$LADE_STORAGE" "$W/lade.sqfs" "$1" <<'PY'
import re, sys
trace, store, sqfs, kind = sys.argv[1:]
prog, count = {}, 0
host = re.compile(r'/(proc|sys|dev|tmp|home)(/|$)|/etc/(hosts|resolv\.conf)$')
for line in open(trace):
    m = re.match(r'(\d+) +(\w+)\((?:AT_FDCWD, )?"([^"]*)"', line)
    if not m:
        continue
    pid, call, path = m.groups()
    who = prog.get(pid, 'lade')
    if call == 'execve':
        prog[pid] = path
        who = path
    if who.endswith('/lade') or 'squashfuse' in who:
        if call != 'execve':
            in_store = path.startswith(store + '/') and not path.startswith(store + '/tmp/')
            count += in_store or path == sqfs
    elif kind == 'stored' and not host.match(path):
        count += 1
print(count)
PY
}
stored_opens=$(opens stored debian)
file_opens=$(opens file "$W/lade.sqfs")

OPENS_CMD="$OPENS_CMD" python3 - "$stored_opens" "$file_opens" "$W" <<'PY'
import json, os, sys
stored_opens, file_opens, w = sys.argv[1:]
def table(path, title, ref, target, ratio):
    r = {x["command"]: x for x in json.load(open(path))["results"]}
    print(f"\n{title}")
    # Medians beside means: on a shared machine a few slow runs move a mean of 30.
    print(f"{'':18} {'mean ms':>10} {'stddev':>8} {'median':>8} {'ratio':>8} {'(medians)':>10}")
    for name, x in r.items():
        print(f"{name:18} {x['mean']*1000:10.1f} {(x['stddev'] or 0)*1000:8.1f} "
              f"{x['median']*1000:8.1f} {x['mean']/r[ref]['mean']:7.2f}x "
              f"{x['median']/r[ref]['median']:9.2f}x")
    lade = r["lade" if "lade" in r else "lade run FILE"]
    got = lade["mean"] / r[ref]["mean"]
    got_median = lade["median"] / r[ref]["median"]
    print(f"target lade <= {target}x {ref}: {'met' if got <= target else 'NOT met'} "
          f"({got:.2f}x; medians {got_median:.2f}x)")
table("export.json", "export of the Debian image to SquashFS", "ch-convert", 0.5, True)
for f in ("lade.sqfs", "ch.sqfs"):
    print(f"  {f}: {os.path.getsize(os.path.join(w, f)) / 1e6:.1f} MB")
table("run.json", "start-up, /bin/true", "ch-run FILE", 1.0, True)
print(f"\nfiles opened in the image's storage for one run of '{os.environ.get('OPENS_CMD', 'dpkg -l')}': "
      f"stored image {stored_opens}, SquashFS file {file_opens}")
PY
