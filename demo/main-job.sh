#!/bin/bash
# lade's main job, end to end, on a fresh Debian machine (as root or as an ordinary user):
#
#   bash demo/main-job.sh
#
#   1. installs what it needs when run as root (umoci, busybox-static, a C toolchain for the
#      build); as a user, checks they are there
#   2. builds lade (cargo build --release), unless LADE=/path/to/lade is given
#   3. makes an OCI image of busybox with umoci, rootless
#   4. lade pull oci:...   (verifies every blob, unpacks every layer into the store)
#   5. lade list, lade unpack, and runs the unpacked busybox
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
PKGS=(umoci busybox-static gcc libc6-dev)
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

step "4. pull it into lade's store"
STORE=$DEMO_DIR/storage
run "$LADE" --storage "$STORE" pull "oci:$DEMO_DIR/image:busybox"

step "5. list, unpack, run"
run "$LADE" --storage "$STORE" list
run "$LADE" --storage "$STORE" unpack busybox rootfs
run ls -l rootfs rootfs/bin/busybox
run ./rootfs/bin/busybox echo "hello from $DEMO_DIR/rootfs/bin/busybox"
run ./rootfs/bin/busybox cat rootfs/etc/motd
run ./rootfs/bin/busybox sh -c 'echo "busybox sh works: $((6 * 7))"'
run "$LADE" --storage "$STORE" fsck

step "done"
echo "image: $DEMO_DIR/image   store: $STORE   unpacked: $DEMO_DIR/rootfs"
