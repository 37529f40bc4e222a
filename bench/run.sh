#!/bin/bash
# Start-up benchmark of `lade run`: the time to enter the container and exec /bin/true,
#   - lade run IMG -- /bin/true      (user+mount namespace, overlayfs over the layer trees)
#   - ch-run DIR -- /bin/true        (Charliecloud, on the same image unpacked to a directory)
#   - unshare -Urm /bin/true         (the floor: just the namespaces)
# interleaved (bench/interleave.py: one run of each command per round, RUNS rounds, so a
# drift of the machine's speed hits all three alike), three times over (REPEAT=3); the best
# median of each is compared (medians, since on a shared machine a few runs that wait for the
# CPU move a mean a lot). Target: lade <= 0.9x ch-run (issue 16). Check `uptime` first: the
# numbers move with load.
#
#   bash bench/run.sh     as root: installs charliecloud-runtime, umoci, skopeo,
#                         busybox-static; builds lade (release); re-runs itself as an
#                         ordinary user ($LADE_BENCH_USER, default lade-test)
#
# The image is the busybox fixture of the tests (a 4-layer image made with umoci), or any
# oci:DIR:TAG given as IMAGE=... Not part of CI.
set -euo pipefail

SELF=$(readlink -f "$0")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/lade-bench-run}
BENCH_USER=${LADE_BENCH_USER:-lade-test}
RUNS=${RUNS:-200}
REPEAT=${REPEAT:-3}

if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    need=()
    for p in python3 charliecloud-runtime umoci skopeo busybox-static util-linux; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"
    fi
    (cd "$REPO" && cargo build --release -q)
    id -u "$BENCH_USER" >/dev/null 2>&1 || useradd --create-home "$BENCH_USER"
    mkdir -p "$BENCH_DIR"
    install -m 0755 "$REPO/target/release/lade" "$BENCH_DIR/lade"
    install -m 0755 "$SELF" "$BENCH_DIR/run.sh"
    install -m 0755 "$REPO/bench/interleave.py" "$BENCH_DIR/interleave.py"
    install -m 0644 "$REPO/tests/fixtures/make-images.sh" "$BENCH_DIR/make-images.sh"
    chown -R "$BENCH_USER:" "$BENCH_DIR"
    exec runuser -u "$BENCH_USER" -- env -i PATH=/usr/bin:/bin HOME="$(getent passwd "$BENCH_USER" | cut -d: -f6)" \
        USER="$BENCH_USER" BENCH_DIR="$BENCH_DIR" RUNS="$RUNS" REPEAT="$REPEAT" IMAGE="${IMAGE:-}" \
        LADE="$BENCH_DIR/lade" bash "$BENCH_DIR/run.sh"
fi

LADE=${LADE:-$REPO/target/release/lade}
cd "$BENCH_DIR"
export LADE_STORAGE=$BENCH_DIR/store
if [ -z "${IMAGE:-}" ]; then
    [ -f fixtures/done ] || bash "${MAKE_IMAGES:-$BENCH_DIR/make-images.sh}" "$BENCH_DIR/fixtures" >/dev/null
    IMAGE="oci:$BENCH_DIR/fixtures/layout:multi"
fi
"$LADE" -q pull "$IMAGE" bench-img
# (Trees keep the image's modes, such as a 0555 directory: open them up to remove them.)
chmod -R u+rwX flat 2>/dev/null || true
rm -rf flat && "$LADE" -q unpack bench-img flat
# ch-run binds into the image and needs the mount points to exist (lade makes its own in a
# scratch overlay layer).
mkdir -p flat/dev flat/proc flat/sys flat/tmp flat/home flat/mnt flat/etc
touch flat/etc/hosts flat/etc/resolv.conf flat/etc/passwd flat/etc/group
echo "image: $IMAGE ($("$LADE" list -l | grep bench-img | awk '{print $4, $5}'))"
echo "kernel: $(uname -r); cores: $(nproc)"

echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

for i in $(seq "$REPEAT"); do
    python3 "${INTERLEAVE:-$BENCH_DIR/interleave.py}" --warmup 20 --runs "$RUNS" \
        --json "result-$i.json" \
        "lade=$LADE run bench-img -- /bin/true" \
        "ch-run=ch-run $BENCH_DIR/flat -- /bin/true" \
        "unshare=unshare -Urm /bin/true" >/dev/null
done

REPEAT=$REPEAT python3 - <<'PY'
import json, os
reps = [{x["command"]: x for x in json.load(open(f"result-{i}.json"))["results"]}
        for i in range(1, int(os.environ["REPEAT"]) + 1)]
names = ("lade", "ch-run", "unshare")
print("median of each repetition, ms")
print(f"{'':12} " + " ".join(f"{n:>10}" for n in names) + f" {'lade/ch-run':>12}")
for i, r in enumerate(reps, 1):
    medians = [r[n]["median"] * 1000 for n in names]
    print(f"{'run ' + str(i):12} " + " ".join(f"{m:10.2f}" for m in medians)
          + f" {medians[0] / medians[1]:11.2f}x")
best = [min(r[n]["median"] for r in reps) * 1000 for n in names]
ratio = best[0] / best[1]
print(f"{'best of ' + str(len(reps)):12} " + " ".join(f"{m:10.2f}" for m in best)
      + f" {ratio:11.2f}x")
print(f"target lade <= 0.9x ch-run: {'met' if ratio <= 0.9 else 'NOT met'}")
PY
