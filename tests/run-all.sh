#!/bin/bash
# The whole lade test suite, as CI runs it (.ci/run execs this) and as the README says:
#
#   bash tests/run-all.sh        (as root, on a fresh Debian machine)
#
# As root, it
#   1. installs every test dependency with apt-get (skipped when all are installed already),
#   2. creates the ordinary user that runs the tests ($LADE_TEST_USER, default lade-test),
#   3. checks formatting (cargo fmt --check) and lints (cargo clippy --all-targets -D warnings),
#   4. builds every unit and integration test into a nextest archive,
# then, as that ordinary user, runs the whole archive with cargo-nextest: lade is a tool for
# users without root, and a test that passes only as root proves nothing. The user needs no
# Rust toolchain (rustup's lives in /root, mode 700): the archive holds the built binaries and
# nextest runs them against a copy of the source tree. Doc tests cannot be archived; they are
# compiled and run as root at the end (they exercise pure library functions).
#
# Prints nextest's summary line and exits non-zero if anything failed.
set -euo pipefail

SELF=tests/run-all.sh
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$SECONDS

step() { printf '\n==> %s  [%ds]\n' "$*" $((SECONDS - START)); }
die() { echo "$SELF: $*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
    die "needs root for the set-up (apt-get install of test dependencies, creating the test user \
'${LADE_TEST_USER:-lade-test}'); run it as root, e.g. 'sudo bash tests/run-all.sh'. The tests \
themselves then run as that ordinary user."
fi

TEST_USER=${LADE_TEST_USER:-lade-test}
export DEBIAN_FRONTEND=noninteractive

# ------------------------------------------------------------------------------------------------
step "test dependencies (apt)"
# skopeo, umoci: peers and oracles; busybox-static: the test images; attr: getfattr/setfattr;
# tar/gzip/coreutils: fixture layers; util-linux: runuser; gcc/libc6-dev: the build (C code in
# zstd-sys, linking); ca-certificates for later registry
# tests.
# docker-registry (Distribution 2.8), openssl (test CAs), bsdutils (script: a terminal for the
# password prompt test): the registry tests; debootstrap, wget: the Debian image of the run
# tests.
PKGS=(skopeo umoci busybox-static attr tar gzip coreutils util-linux findutils gcc libc6-dev
      ca-certificates docker-registry openssl bsdutils debootstrap wget curl)
PKGS+=(squashfs-tools squashfuse charliecloud-runtime)  # issue 14: SquashFS out, FUSE in, ch-run as a peer
PKGS+=(man-db groff-base bash)  # issue 17: `man -l` renders lade's pages; bash runs the completion script
PKGS+=(python3 python3-venv)  # issue 15: the venv of the independent cosign-key and ORAS checks
PKGS+=(python3-lark python3-requests libsquashfuse0 libfuse3-3)  # issue 12.4: ch-image (unpacked below)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' \
        || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "all installed: ${PKGS[*]}"
else
    echo "installing: ${missing[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ------------------------------------------------------------------------------------------------
step "FUSE for ordinary users (issue 14: lade run FILE.sqfs)"
# FUSE in a user namespace needs /dev/fuse readable and writable by the user; most
# distributions ship it 0666, these machines leave it 0600.
if [ -c /dev/fuse ]; then
    chmod 0666 /dev/fuse
    ls -l /dev/fuse
else
    echo "no /dev/fuse: the single-file image tests will fail"
fi

# ------------------------------------------------------------------------------------------------
step "Python checkers for the trust tests (issue 15: venv under /var/tmp, from PyPI)"
# cryptography + PyNaCl open lade's cosign-format keys independently; oras (oras-py) pushes and
# pulls artifacts against lade. Readable by the test user; reused when already complete.
PYENV=/var/tmp/lade-test-pyenv
if ! "$PYENV/bin/python" -c 'import cryptography, nacl, oras' 2>/dev/null \
        || [[ $(readlink -f "$PYENV/bin/python") != /usr/* ]]; then
    rm -rf "$PYENV"
    /usr/bin/python3 -m venv "$PYENV"  # Debian's: a python under /root is not the test user's
    "$PYENV/bin/pip" install -q cryptography pynacl oras
fi
chmod -R a+rX "$PYENV"
"$PYENV/bin/python" -c 'import cryptography, nacl, oras; print("cryptography", cryptography.__version__)'
step "ch-image for the exact-modes build test (issue 12.4), unpacked beside the system"
# Debian's charliecloud-builders depends on docker.io and buildah (a daemon, iptables rules and
# ~300 MB for a test that needs neither), so its .debs are unpacked into a directory of their
# own instead of installed: ch-image runs ch-run from its own bin directory and its Python
# from ../lib/charliecloud, so builders, common and runtime go side by side. Its Python
# dependencies (python3-lark, python3-requests) and ch-run's libraries come from the PKGS list.
CH_DIR=/opt/lade-test-charliecloud
if [ ! -x "$CH_DIR/usr/bin/ch-image" ] || [ ! -x "$CH_DIR/usr/bin/ch-run" ]; then
    ch_debs=$(mktemp -d)
    chmod 0755 "$ch_debs"
    (cd "$ch_debs" && apt-get download -q charliecloud-builders charliecloud-common \
        charliecloud-runtime) || { apt-get update -q && (cd "$ch_debs" && apt-get download -q \
        charliecloud-builders charliecloud-common charliecloud-runtime); }
    rm -rf "$CH_DIR.new" && mkdir -p "$CH_DIR.new"
    for deb in "$ch_debs"/*.deb; do dpkg -x "$deb" "$CH_DIR.new"; done
    rm -rf "$CH_DIR" "$ch_debs" && mv "$CH_DIR.new" "$CH_DIR"
fi
USER=root /usr/bin/python3 "$CH_DIR/usr/bin/ch-image" --version

# ------------------------------------------------------------------------------------------------
step "Rust toolchain"
if ! command -v cargo >/dev/null; then
    # rustup's default place; CI runs as root with the toolchain in /root/.cargo
    # shellcheck disable=SC1091
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || die "cargo not found (install Rust with rustup first)"
if ! command -v cargo-nextest >/dev/null; then
    echo "cargo-nextest not found; installing it from crates.io (takes a few minutes)"
    cargo install --locked cargo-nextest
fi
NEXTEST=$(command -v cargo-nextest)
cargo --version
"$NEXTEST" nextest --version | head -1

# ------------------------------------------------------------------------------------------------
step "test user '$TEST_USER'"
if ! id -u "$TEST_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$TEST_USER"
    echo "created"
fi
TEST_UID=$(id -u "$TEST_USER")
[ "$TEST_UID" != 0 ] || die "test user '$TEST_USER' is root"
TEST_HOME=$(getent passwd "$TEST_USER" | cut -d: -f6)
id "$TEST_USER"

# ------------------------------------------------------------------------------------------------
step "Debian root filesystem for the run tests (debootstrap once, cached)"
DEBIAN_DIR=/var/tmp/lade-test-debian
mkdir -p "$DEBIAN_DIR" && chmod 0755 "$DEBIAN_DIR"
DEBIAN_TARBALL=$DEBIAN_DIR/debian-bookworm-minbase.tar
bash tests/fixtures/debian-tarball.sh "$DEBIAN_TARBALL" bookworm
ls -l "$DEBIAN_TARBALL"

# ------------------------------------------------------------------------------------------------
step "cluster-host stage (issue 12): submounts under /tmp and the home, in a private namespace"
# Cluster nodes have a job's scratch tmpfs under /tmp and automounted or NFS directories in
# the home; in a user namespace those submounts are locked, and a bind without MS_REC of a
# tree holding them fails. The whole suite runs on such a host, so that every test that runs
# a container or a RUN step sees it (not only tests/run_cluster.rs, which checks the mounts
# are there): tests/cluster-host.sh mounts them in a private mount namespace, leaving the
# machine's mounts as they are.
CLUSTER_MOUNTS="/tmp/lade-job-scratch:$TEST_HOME/lade-automount"
echo "tmpfs on: ${CLUSTER_MOUNTS//:/ }"

# ------------------------------------------------------------------------------------------------
status=0
step "cargo fmt --check"
cargo fmt --check || { echo "FAILED: cargo fmt --check (run 'cargo fmt')"; status=1; }

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings || { echo "FAILED: cargo clippy"; status=1; }

step "building all tests (cargo nextest archive)"
ARCHIVE=$ROOT/target/nextest/lade-tests.tar.zst
mkdir -p "$(dirname "$ARCHIVE")"
if ! "$NEXTEST" nextest archive --locked --archive-file "$ARCHIVE"; then
    echo "FAILED: the tests do not build"
    exit 1
fi

# ------------------------------------------------------------------------------------------------
step "staging for $TEST_USER"
# A directory the user owns, outside the checkout (which may sit under /root, mode 700): the
# archive, a copy of the source tree (nextest's --workspace-remap; tests run with it as their
# working directory), nextest itself (it may live under /root/.cargo/bin), and a config with
# a safety timeout (the repo's own .config/nextest.toml takes precedence).
WORK=$(mktemp -d /var/tmp/lade-tests.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/src" "$WORK/bin" "$WORK/tmp"
tar -C "$ROOT" --exclude=./target --exclude=./.git --exclude=./fuzz/target \
    --exclude=./fuzz/corpus --exclude=./fuzz/artifacts -cf - . | tar -C "$WORK/src" -xf -
cp "$ARCHIVE" "$WORK/tests.tar.zst"
cp "$NEXTEST" "$WORK/bin/cargo-nextest"
cat > "$WORK/nextest.toml" <<'EOF'
[profile.default]
# a hung test is killed after 20 minutes instead of eating all of CI's 90
slow-timeout = { period = "120s", terminate-after = 10 }
failure-output = "immediate-final"
EOF
chown -R "$TEST_USER:" "$WORK"
chmod 0755 "$WORK"

step "running the whole test suite as $TEST_USER (uid $TEST_UID)"
# A clean environment: nothing of root's (CARGO_HOME, RUSTUP_HOME, ...) leaks in. No cargo
# on PATH: the user could not run it anyway.
user_env=(env -i
    PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
    HOME="$TEST_HOME" USER="$TEST_USER" LOGNAME="$TEST_USER"
    TMPDIR="$WORK/tmp" LANG=C.UTF-8
    LADE_DEBIAN_TARBALL="$DEBIAN_TARBALL"
    LADE_TEST_PYTHON="$PYENV/bin/python"
    LADE_TEST_CLUSTER_MOUNTS="$CLUSTER_MOUNTS"
    NEXTEST_HIDE_PROGRESS_BAR=1 CARGO_TERM_COLOR=never)
runuser -u "$TEST_USER" -- "${user_env[@]}" sh -c \
    'echo "running as: $(id)"; if [ "$(id -u)" = 0 ]; then echo "still root!" >&2; exit 1; fi'
set +e
(cd "$WORK/src" && bash "$ROOT/tests/cluster-host.sh" "$TEST_USER" "$CLUSTER_MOUNTS" \
    runuser -u "$TEST_USER" -- "${user_env[@]}" \
    "$WORK/bin/cargo-nextest" nextest run \
        --archive-file "$WORK/tests.tar.zst" \
        --workspace-remap "$WORK/src" \
        --tool-config-file "lade-ci:$WORK/nextest.toml" \
        --no-fail-fast --color never) 2>&1 | tee "$WORK/nextest.log"
nextest_status=${PIPESTATUS[0]}
set -e
[ "$nextest_status" = 0 ] || status=1

step "doc tests (as root: doc tests cannot be archived for the test user)"
doc_status=0
cargo test --locked --doc 2>&1 | tee "$WORK/doctest.log" || doc_status=1
[ "$doc_status" = 0 ] || status=1

# ------------------------------------------------------------------------------------------------
# issue 13.7: the cargo-fuzz targets (fuzz/, a crate of its own), each for a bounded time, when
# a nightly toolchain is there; else skipped, saying so. A crash fails the run and leaves its
# input in fuzz/artifacts/TARGET/ (turn it into a regression test; README, "Fuzzing"). Their
# build (nightly, every dependency) is kept outside the clone, like the Debian tarball above,
# so that only lade itself is rebuilt on later runs. Without AddressSanitizer here: the code
# the targets reach is safe Rust, where libFuzzer's coverage and Rust's panics and overflow
# checks find what there is to find, and an ASan build of every dependency took over half an
# hour cold on CI's 2 cores (`cargo fuzz run` without `-s none` is the thorough local run).
FUZZ_SECONDS=${LADE_FUZZ_SECONDS:-20}
FUZZ_FLAGS=(--sanitizer none --target-dir /var/tmp/lade-fuzz-target)
step "fuzz targets (cargo-fuzz, ${FUZZ_SECONDS} s each)"
fuzz_status=0
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    if ! command -v cargo-fuzz >/dev/null; then
        cargo install --locked cargo-fuzz || fuzz_status=1
    fi
    if [ "$fuzz_status" = 0 ] \
            && (cd fuzz && cargo +nightly fuzz build "${FUZZ_FLAGS[@]}"); then
        for t in $(cd fuzz && cargo +nightly fuzz list); do
            # New inputs go to fuzz/corpus/TARGET (not kept); fuzz/seeds/TARGET starts it.
            mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
            if (cd fuzz && cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$t" \
                    "corpus/$t" "seeds/$t" -- \
                    -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=20) \
                    > "$WORK/fuzz-$t.log" 2>&1; then
                echo "fuzz $t: $(grep -E '^Done [0-9]+ runs' "$WORK/fuzz-$t.log" || echo done)"
            else
                echo "FAILED: fuzz target $t"; tail -40 "$WORK/fuzz-$t.log"; fuzz_status=1
            fi
        done
    else
        echo "FAILED: building the fuzz targets"; fuzz_status=1
    fi
else
    echo "no nightly toolchain: fuzz targets skipped (README, \"Fuzzing\", says how to run them)"
fi
[ "$fuzz_status" = 0 ] || status=1

# ------------------------------------------------------------------------------------------------
step "summary"
grep -E '^ *Summary \[' "$WORK/nextest.log" || echo "nextest printed no summary (exit $nextest_status)"
grep -E '^test result:' "$WORK/doctest.log" | sed 's/^/doc tests: /' || true
if [ "$status" = 0 ]; then
    echo "ALL PASSED in $((SECONDS - START))s"
else
    echo "FAILED (fmt/clippy/tests above; nextest exit $nextest_status, doc tests $doc_status, \
fuzz $fuzz_status) after $((SECONDS - START))s"
fi
exit "$status"
