#!/bin/bash
# lade's main job, end to end, on a fresh Debian machine (as root or as an ordinary user):
#
#   bash demo/main-job.sh
#
#   1. installs what it needs when run as root (umoci, busybox-static, a C toolchain for the
#      build); as a user, checks they are there
#   2. builds lade (cargo build --release), unless LADE=/path/to/lade is given
#   3. makes an OCI image of busybox with umoci, rootless
#   4. starts a local registry (Debian's docker-registry) on loopback and pushes the image
#   5. lade pull from the registry (verifies every blob, unpacks every layer into the store)
#   6. lade run: the image as an unprivileged container
#   7. lade unpack, lade copy to an oci-archive (same digest as the registry's), lade fsck
#
# Everything goes to $DEMO_DIR (default /var/tmp/lade-demo-$USER), including lade's store, so
# your default store is not touched.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
USER=${USER:-$(id -un)}
DEMO_DIR=${DEMO_DIR:-/var/tmp/lade-demo-$USER}

step() { printf '\n### %s\n' "$*"; }
run() { printf '$'; printf ' %q' "$@"; echo; "$@"; }
die() { echo "demo/main-job.sh: $*" >&2; exit 1; }

step "1. packages"
PKGS=(umoci skopeo docker-registry curl python3 busybox-static gcc libc6-dev)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "installed already: ${PKGS[*]}"
elif [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    run apt-get update -q
    run apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    die "missing packages: ${missing[*]} (run this once as root, or: sudo apt-get install ${missing[*]})"
fi

step "2. build lade"
if [ -n "${LADE:-}" ]; then
    echo "using LADE=$LADE"
else
    if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null || die "cargo not found: install Rust (rustup), or set LADE=/path/to/lade"
    run cargo build --release --locked --bin lade
    LADE=$REPO/target/release/lade
fi
run "$LADE" --version

step "3. a busybox image, made rootless with umoci"
# Start clean (the unpacked tree may hold read-only directories).
if [ -e "$DEMO_DIR" ]; then chmod -R u+rwX "$DEMO_DIR" 2>/dev/null || true; rm -rf "$DEMO_DIR"; fi
mkdir -p "$DEMO_DIR"
cd "$DEMO_DIR"
run umoci init --layout image
run umoci new --image image:busybox
run umoci unpack --rootless --image image:busybox bundle
echo "installing /bin/busybox and its $(/bin/busybox --list-full | wc -l) applet links into bundle/rootfs"
mkdir -p bundle/rootfs/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root}
cp /bin/busybox bundle/rootfs/bin/busybox
/bin/busybox --list-full | while read -r p; do
    [ "$p" = bin/busybox ] || ln -sf /bin/busybox "bundle/rootfs/$p"
done
chmod 1777 bundle/rootfs/tmp
echo 'root:x:0:0:root:/root:/bin/sh' > bundle/rootfs/etc/passwd
echo 'hello from a lade-unpacked busybox image' > bundle/rootfs/etc/motd
run umoci repack --image image:busybox bundle
run umoci config --image image:busybox --config.cmd /bin/sh
rm -rf bundle
run umoci ls --layout image

step "4. a local registry (Distribution, from Debian's docker-registry), and the image pushed to it"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p registry
cat > registry/config.yml <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $DEMO_DIR/registry/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$PORT}
EOF
docker-registry serve registry/config.yml >registry/log 2>&1 &
REGISTRY_PID=$!
trap 'kill $REGISTRY_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
echo "registry listening on 127.0.0.1:$PORT (pid $REGISTRY_PID)"
REF=127.0.0.1:$PORT/demo/busybox:1.0
run skopeo copy -q --dest-tls-verify=false "oci:$DEMO_DIR/image:busybox" "docker://$REF"

step "5. pull it from the registry into lade's store"
# The registry speaks plain HTTP on loopback; --tls-no-verify permits that for this run only.
STORE=$DEMO_DIR/storage
L=("$LADE" --storage "$STORE")
run "${L[@]}" pull --tls-no-verify "$REF" busybox
run "${L[@]}" list -l
echo "(a second pull finds every blob in the store and asks the registry for the manifest only)"
run "${L[@]}" pull --tls-no-verify "$REF" busybox

step "6. run it: a container is just a process (user + mount namespace, overlayfs, no daemon)"
run "${L[@]}" run busybox -- /bin/cat /etc/motd
run "${L[@]}" run busybox -- /bin/sh -c 'echo "uid $(id -u) inside, $((6 * 7)) from sh"; exit 3' \
    || echo "(exit status $?: the command's own)"
run "${L[@]}" run --uid 0 busybox -- /bin/sh -c 'echo "uid $(id -u) inside with --uid 0"'

step "7. unpack, copy out digest-preserving, check the store"
run "${L[@]}" unpack busybox rootfs
run ls rootfs
run "${L[@]}" copy lade:busybox "oci-archive:$DEMO_DIR/busybox.tar:1.0"
run skopeo inspect --format '{{.Digest}}' "oci-archive:$DEMO_DIR/busybox.tar:1.0"
run skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$REF"
run "${L[@]}" fsck

step "done"
echo "image: $DEMO_DIR/image   store: $STORE   unpacked: $DEMO_DIR/rootfs"
