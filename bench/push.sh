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

say() { printf '==> %s\n' "$*" >&2; }
die() { echo "bench/push.sh: $*" >&2; exit 1; }

# ------------------------------------------------------------------------------------------------
# Root phase
if [ "$(id -u)" = 0 ] && [ "${1:-}" != --as-user ]; then
    export DEBIAN_FRONTEND=noninteractive
    need=()
    for p in docker-registry skopeo umoci openssl time util-linux; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
    done
    if [ -z "${NO_CH:-}" ] && ! dpkg-query -W -f='${Status}\n' charliecloud-builders 2>/dev/null \
            | grep -q 'ok installed'; then
        need+=(charliecloud-builders)
    fi
    if [ ${#need[@]} -gt 0 ]; then
        say "installing ${need[*]}"
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${need[@]}" \
            || say "some packages could not be installed; going on without them"
    fi
    id -u "$BENCH_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$BENCH_USER"
    if [ -z "${LADE:-}" ]; then
        command -v cargo >/dev/null || { [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"; }
        say "cargo build --release"
        (cd "$REPO" && cargo build --release --bin lade)
        mkdir -p "$BENCH_DIR/bin"
        cp "$REPO/target/release/lade" "$BENCH_DIR/bin/lade-push"
        chmod 0755 "$BENCH_DIR" "$BENCH_DIR/bin" "$BENCH_DIR/bin/lade-push"
        LADE=$BENCH_DIR/bin/lade-push
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
    cp "$SELF" "$BENCH_DIR/push.sh"
    chmod 0755 "$BENCH_DIR/push.sh"
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
HAVE_CH=
if [ -z "${NO_CH:-}" ] && command -v ch-image >/dev/null && ch-image --version >/dev/null 2>&1; then
    HAVE_CH=1
else
    say "ch-image not usable here (apt-get install charliecloud-builders); not measured"
fi
W=$BENCH_DIR/push-user
[ -w "$W" ] || W=${TMPDIR:-/tmp}/lade-push-bench-$(id -u)
mkdir -p "$W"
export TMPDIR=$W/tmp
mkdir -p "$TMPDIR"
nuke() { for d in "$@"; do [ -e "$d" ] || continue; chmod -R u+rwX "$d" 2>/dev/null || true; rm -rf "$d"; done; }

# A CA and a certificate for 127.0.0.1.
C=$W/certs
if [ ! -s "$C/server.pem" ]; then
    mkdir -p "$C"
    (cd "$C"
     openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=lade bench CA" \
         -keyout ca.key -out ca.pem -addext basicConstraints=critical,CA:TRUE \
         -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
     openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key \
         -out server.csr 2>/dev/null
     printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
     openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
         -extfile ext.cnf -out server.pem 2>/dev/null
     mkdir -p cert-dir && cp ca.pem cert-dir/ca.crt)
fi

port=
for p in $(seq 5400 5499); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || die "no free port in 5400-5499"
REG_PID=
stop_registry() {
    if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
    REG_PID=
}
trap stop_registry EXIT
# A fresh, empty registry (new data directory) on $port.
fresh_registry() {
    stop_registry
    nuke "$W/registry"
    mkdir -p "$W/registry"
    cat > "$W/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/registry/data
http:
  addr: 127.0.0.1:$port
  secret: lade-bench
  tls:
    certificate: $C/server.pem
    key: $C/server.key
EOF
    docker-registry serve "$W/registry/config.yml" >"$W/registry/log" 2>&1 &
    REG_PID=$!
    local i
    for i in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    kill -0 "$REG_PID" 2>/dev/null || { cat "$W/registry/log" >&2; die "docker-registry did not start"; }
}
REF=127.0.0.1:$port/bench/img:1

manifest=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$IMG/index.json" | head -1 | sed 's/.*sha256://; s/"//')
layers=$(grep -o '"layers":.*' "$IMG/blobs/sha256/$manifest" | grep -o 'sha256:[0-9a-f]*' | sed 's/sha256://')
nlayers=$(echo "$layers" | wc -l)
comp=0
for l in $layers; do comp=$((comp + $(stat -c %s "$IMG/blobs/sha256/$l"))); done

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

declare -A best_s best_m
measure() { # name command...
    local name=$1; shift
    local i t m
    for i in $(seq "$RUNS"); do
        fresh_registry
        local t0=$EPOCHREALTIME
        /usr/bin/time -f '%M' -o "$W/time.out" "$@" >"$W/cmd.log" 2>&1 \
            || { cat "$W/cmd.log" >&2; die "$name failed"; }
        t=$(awk "BEGIN{printf \"%.4f\", $EPOCHREALTIME - $t0}")
        read -r m < "$W/time.out"
        say "  $name run $i: ${t}s, $((m / 1024)) MiB"
        if [ -z "${best_s[$name]:-}" ] || awk "BEGIN{exit !($t < ${best_s[$name]})}"; then
            best_s[$name]=$t
        fi
        if [ -z "${best_m[$name]:-}" ] || [ "$m" -gt "${best_m[$name]}" ]; then best_m[$name]=$m; fi
    done
}

say "measuring, best of $RUNS, each into an empty registry"
measure "lade push" "$LADE" --storage "$STORE" --tls-ca-file "$C/ca.pem" -q push img "$REF"
measure "lade push --image DIR" "$LADE" --storage "$STORE" --tls-ca-file "$C/ca.pem" -q \
    push --image "$W/tree" img "$REF"
measure "skopeo copy oci: docker://" skopeo copy --quiet --dest-cert-dir "$C/cert-dir" \
    "oci:$IMG:$TAG" "docker://$REF"
if [ -n "$HAVE_CH" ]; then
    measure "ch-image push" env REQUESTS_CA_BUNDLE="$C/ca.pem" \
        ch-image --storage "$W/ch" push img "$REF"
fi
nuke "$STORE" "$W/tree" "$W/ch"

# ------------------------------------------------------------------------------------------------
echo
echo "$IMG:$TAG, $nlayers layers, $((comp / 1024 / 1024)) MiB compressed, to an empty docker-registry over HTTPS on loopback; $(nproc) CPUs; best of $RUNS; $(id -un)"
printf '%-28s %9s %14s\n' "tool" "seconds" "peak RSS MiB"
names=("lade push" "lade push --image DIR" "skopeo copy oci: docker://")
[ -n "$HAVE_CH" ] && names+=("ch-image push")
for name in "${names[@]}"; do
    printf '%-28s %9.3f %14d\n' "$name" "${best_s[$name]}" $(( best_m[$name] / 1024 ))
done
echo
check() { # label value target
    if awk "BEGIN{exit !($2 <= $3)}"; then echo "target met:     $1 = $2 (target <= $3)"
    else echo "target NOT met: $1 = $2 (target <= $3)"; fi
}
check "lade push / skopeo copy" \
    "$(awk "BEGIN{printf \"%.3f\", ${best_s["lade push"]} / ${best_s["skopeo copy oci: docker://"]}}")" 1.0
if [ -n "$HAVE_CH" ]; then
    check "lade push / ch-image push" \
        "$(awk "BEGIN{printf \"%.3f\", ${best_s["lade push"]} / ${best_s["ch-image push"]}}")" 0.2
    check "lade push --image / ch-image push" \
        "$(awk "BEGIN{printf \"%.3f\", ${best_s["lade push --image DIR"]} / ${best_s["ch-image push"]}}")" 0.2
fi
