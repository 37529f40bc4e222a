# What bench/pull.sh and bench/push.sh share: installing the tools as root, building lade,
# the work directory, a CA and a certificate for 127.0.0.1, docker-registry over HTTPS on a
# free loopback port, the timed runs and the table. Sourced, not run, by a script that has set
# SELF (its own path, resolved), REPO, BENCH_DIR, RUNS and BENCH_USER.
#
# The root phase of a script copies the script and this file side by side into $BENCH_DIR
# (copy_for_user) and runs that copy as the bench user, which sources $BENCH_DIR/lib.sh.

BENCH_LIB=$(readlink -f "${BASH_SOURCE[0]}")

say() { printf '==> %s\n' "$*" >&2; }
die() { echo "bench/${SELF##*/}: $*" >&2; exit 1; }

# ------------------------------------------------------------------------------------------------
# Root phase

# Installs what is missing of the tools (charliecloud-builders too unless NO_CH) and creates
# the bench user if missing.
install_tools() {
    export DEBIAN_FRONTEND=noninteractive
    local need=() p
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
}

# build_lade NAME [CARGO_ARGS...]: builds lade (release) and copies it to $BENCH_DIR/bin/NAME,
# readable by the bench user; sets LADE to it.
build_lade() {
    local name=$1; shift
    command -v cargo >/dev/null || { [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"; }
    say "cargo build --release"
    (cd "$REPO" && cargo build --release "$@" --bin lade)
    mkdir -p "$BENCH_DIR/bin"
    cp "$REPO/target/release/lade" "$BENCH_DIR/bin/$name"
    chmod 0755 "$BENCH_DIR" "$BENCH_DIR/bin" "$BENCH_DIR/bin/$name"
    LADE=$BENCH_DIR/bin/$name
}

# Copies the running script and this file into $BENCH_DIR, for the bench user to run; the
# copy's path is $BENCH_DIR/${SELF##*/}.
copy_for_user() {
    cp "$SELF" "$BENCH_DIR/${SELF##*/}"
    cp "$BENCH_LIB" "$BENCH_DIR/lib.sh"
    chmod 0755 "$BENCH_DIR/${SELF##*/}"
    chmod 0644 "$BENCH_DIR/lib.sh"
}

# ------------------------------------------------------------------------------------------------
# User phase

# Sets HAVE_CH if ch-image is wanted (no NO_CH) and works.
find_ch_image() {
    HAVE_CH=
    if [ -z "${NO_CH:-}" ] && command -v ch-image >/dev/null && ch-image --version >/dev/null 2>&1; then
        HAVE_CH=1
    else
        say "ch-image not usable here (apt-get install charliecloud-builders); not measured"
    fi
}

# use_work_dir NAME: sets W to $BENCH_DIR/NAME-user (made by the root phase) or, where that is
# not writable, a directory of our own, with TMPDIR inside it.
use_work_dir() {
    W=$BENCH_DIR/$1-user
    [ -w "$W" ] || W=${TMPDIR:-/tmp}/lade-$1-bench-$(id -u)
    mkdir -p "$W"
    export TMPDIR=$W/tmp
    mkdir -p "$TMPDIR"
}

nuke() { for d in "$@"; do [ -e "$d" ] || continue; chmod -R u+rwX "$d" 2>/dev/null || true; rm -rf "$d"; done; }

# A CA and a certificate for 127.0.0.1 in $W/certs, kept from an earlier run; sets C to it.
make_certs() {
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
}

# pick_port FIRST LAST: sets port to the first one of FIRST..LAST nobody listens on.
pick_port() {
    local p
    port=
    for p in $(seq "$1" "$2"); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
    done
    [ -n "$port" ] || die "no free port in $1-$2"
}

REG_PID=
stop_registry() {
    if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
    REG_PID=
}

# A fresh, empty docker-registry (new data directory in $W/registry) on $port, over HTTPS with
# the certificate in $C; the one started before is stopped. Returns once it listens.
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

# image_stats LAYOUT: sets nlayers and comp (compressed bytes) of the first image of LAYOUT.
image_stats() {
    local manifest layers l
    manifest=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$1/index.json" | head -1 | sed 's/.*sha256://; s/"//')
    layers=$(grep -o '"layers":.*' "$1/blobs/sha256/$manifest" | grep -o 'sha256:[0-9a-f]*' | sed 's/sha256://')
    nlayers=$(echo "$layers" | wc -l)
    comp=0
    for l in $layers; do comp=$((comp + $(stat -c %s "$1/blobs/sha256/$l"))); done
}

declare -A best_s best_m
# measure NAME PREPARE COMMAND...: runs PREPARE then COMMAND, $RUNS times, timed; keeps the
# best time in best_s[NAME] and the highest peak RSS (KiB) in best_m[NAME].
measure() {
    local name=$1 prep=$2; shift 2
    local i t m
    for i in $(seq "$RUNS"); do
        $prep
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

# table NAME...: the best time and peak RSS of each measured NAME.
table() {
    local name
    printf '%-28s %9s %14s\n' "tool" "seconds" "peak RSS MiB"
    for name in "$@"; do
        printf '%-28s %9.3f %14d\n' "$name" "${best_s[$name]}" $(( best_m[$name] / 1024 ))
    done
}

check() { # label value target
    if awk "BEGIN{exit !($2 <= $3)}"; then echo "target met:     $1 = $2 (target <= $3)"
    else echo "target NOT met: $1 = $2 (target <= $3)"; fi
}
