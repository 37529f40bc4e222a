#!/bin/bash
# Build benchmark: a 10-instruction Dockerfile on the debootstrapped Debian base (the tarball
# of tests/fixtures/debian-tarball.sh, imported as `base`), built by
#   - lade build      cold (build cache reset) and fully cached (second build)
#   - ch-image build  cold (build cache reset) and fully cached (Debian's charliecloud)
# one run each, ratios printed. Targets: cold <= 0.3x ch-image; fully cached <= 0.1 s.
#
#   bash bench/build.sh   as root: builds lade (release), makes the Debian tarball if missing,
#                         re-runs itself as an ordinary user ($LADE_BENCH_USER, lade-test)
#   bash bench/build.sh   as an ordinary user: needs LADE=binary and TARBALL=debian.tar
#
# Environment: BENCH_DIR (default /var/tmp/lade-bench-build), NO_CH=1 to skip ch-image.
# Not part of CI.
set -euo pipefail

SELF=$(readlink -f "$0")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/lade-bench-build}
BENCH_USER=${LADE_BENCH_USER:-lade-test}
TARBALL=${TARBALL:-/var/tmp/lade-test-debian/debian-bookworm-minbase.tar}

if [ "$(id -u)" = 0 ]; then
    (cd "$REPO" && cargo build --release -q)
    [ -f "$TARBALL" ] || bash "$REPO/tests/fixtures/debian-tarball.sh" "$TARBALL" bookworm
    id -u "$BENCH_USER" >/dev/null 2>&1 || useradd --create-home "$BENCH_USER"
    mkdir -p "$BENCH_DIR"
    install -m 0755 "$REPO/target/release/lade" "$BENCH_DIR/lade"
    install -m 0755 "$SELF" "$BENCH_DIR/build.sh"
    chown -R "$BENCH_USER:" "$BENCH_DIR"
    chmod 0755 "$(dirname "$TARBALL")"
    exec runuser -u "$BENCH_USER" -- env -i PATH=/usr/bin:/bin \
        HOME="$(getent passwd "$BENCH_USER" | cut -d: -f6)" USER="$BENCH_USER" \
        BENCH_DIR="$BENCH_DIR" TARBALL="$TARBALL" NO_CH="${NO_CH:-}" \
        LADE="$BENCH_DIR/lade" bash "$BENCH_DIR/build.sh"
fi

LADE=${LADE:-$REPO/target/release/lade}
cd "$BENCH_DIR"
export LADE_STORAGE=$BENCH_DIR/store
export CH_IMAGE_STORAGE=$BENCH_DIR/ch-store
# ch-image's build cache is a git repository: it needs an identity.
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
rm -rf ctx && mkdir -p ctx/files
for i in $(seq 1 50); do head -c 4096 /dev/urandom > "ctx/files/f$i"; done
cat > ctx/Dockerfile <<'EOF'
FROM base
ENV APP=/opt/app
WORKDIR /opt/app
COPY files/ data/
RUN mkdir -p /opt/app/bin && echo '#!/bin/sh' > /opt/app/bin/hello && chmod 755 /opt/app/bin/hello
RUN sha256sum data/* > sums.txt
ARG WHO=bench
RUN echo "hello $WHO" > greeting && rm -f /etc/motd
LABEL org.example.bench=yes
CMD ["/opt/app/bin/hello"]
EOF

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }

"$LADE" -q import "$TARBALL" base
"$LADE" -q build-cache --reset >/dev/null
t0=$(now); "$LADE" -q build -t bench ctx >/dev/null; t1=$(now)
"$LADE" -q build -t bench ctx >/dev/null; t2=$(now)
lade_cold=$(secs "$t0" "$t1"); lade_warm=$(secs "$t1" "$t2")
printf 'lade build      cold %8.3f s   cached %8.3f s\n' "$lade_cold" "$lade_warm"

if [ -z "${NO_CH:-}" ] && command -v ch-image >/dev/null; then
    ch-image reset >/dev/null 2>&1 || true
    ch-image import "$TARBALL" base >/dev/null 2>&1
    t0=$(now); ch-image build -t bench ctx >/dev/null 2>&1; t1=$(now)
    ch-image build -t bench ctx >/dev/null 2>&1; t2=$(now)
    ch_cold=$(secs "$t0" "$t1"); ch_warm=$(secs "$t1" "$t2")
    printf 'ch-image build  cold %8.3f s   cached %8.3f s\n' "$ch_cold" "$ch_warm"
    printf 'ratio lade/ch-image: cold %.2fx (target <= 0.3x), cached %.2fx\n' \
        "$(echo "$lade_cold / $ch_cold" | bc -l)" "$(echo "$lade_warm / $ch_warm" | bc -l)"
fi
printf 'fully cached lade build: %.3f s (target <= 0.1 s)\n' "$lade_warm"
