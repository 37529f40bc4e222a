#!/usr/bin/python3
"""Writes a synthetic OCI image (a layout with one tag) for lade's scale benchmark.

  make-image.py OUT TAG --files N       one layer: busybox and N small .js files, 500 to a
                                         directory (node_modules, site-packages)
  make-image.py OUT TAG --layers N      N layers: busybox in the first, 50 small files in each
  make-image.py OUT TAG --bytes N       one layer: busybox and N bytes of text-like data in
                                         files of 4 MiB (compresses about 3:1, like real layers)

Layers are gzip (pigz when installed, else gzip -6). Deterministic: the same arguments give
the same blobs. Used by bench/scale.sh and bench/unpack.sh; not part of CI.
"""

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tarfile

BUSYBOX = "/bin/busybox"
FILES_PER_DIR = 500
CHUNK_FILE = 4 << 20


class Hashing:
    """A write-only stream that hashes what passes through (the diff-ID)."""

    def __init__(self, out):
        self.out = out
        self.sha = hashlib.sha256()

    def write(self, b):
        self.sha.update(b)
        self.out.write(b)
        return len(b)


def add(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 1_700_000_000
    tar.addfile(info)


def add_busybox(tar):
    add_dir(tar, "bin")
    with open(BUSYBOX, "rb") as f:
        add(tar, "bin/busybox", f.read(), 0o755)
    for applet in ("sh", "true", "ls", "cat"):
        info = tarfile.TarInfo("bin/" + applet)
        info.type = tarfile.SYMTYPE
        info.linkname = "busybox"
        info.mtime = 1_700_000_000
        tar.addfile(info)


def small_files(tar, prefix, count, rng):
    dirs = max(1, (count + FILES_PER_DIR - 1) // FILES_PER_DIR)
    made = 0
    for d in range(dirs):
        dname = f"{prefix}/pkg{d:05d}"
        add_dir(tar, dname)
        for i in range(min(FILES_PER_DIR, count - made)):
            body = (
                f"'use strict';\nconst m{i} = require('./m{rng.randrange(FILES_PER_DIR)}');\n"
                f"module.exports = function f{d}_{i}(x) {{ return m{i}(x) + {rng.randrange(1 << 20)}; }};\n"
            )
            add(tar, f"{dname}/m{i}.js", (body * rng.randrange(1, 4)).encode())
            made += 1


def text_block(rng, size):
    words = ["lade", "layer", "image", "overlay", "inode", "cluster", "registry", "tar",
             "gzip", "digest", "manifest", "user", "namespace", "mount", "bench", "file"]
    words += ["%x" % rng.randrange(1 << 32) for _ in range(2000)]
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rng.choice(words) for _ in range(12)) + "\n").encode()
    return bytes(out[:size])


def write_layer(blobs, fill):
    """Runs fill(tar) into a gzip blob in BLOBS; returns (digest, size, diff_id)."""
    tmp = os.path.join(blobs, "layer.tmp")
    gz = ["pigz", "-6", "-n"] if shutil.which("pigz") else ["gzip", "-6", "-n"]
    with open(tmp, "wb") as out:
        p = subprocess.Popen(gz, stdin=subprocess.PIPE, stdout=out)
        h = Hashing(p.stdin)
        with tarfile.open(fileobj=h, mode="w|", format=tarfile.GNU_FORMAT) as tar:
            fill(tar)
        p.stdin.close()
        if p.wait() != 0:
            raise SystemExit("gzip failed")
    sha = hashlib.sha256()
    with open(tmp, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    digest = sha.hexdigest()
    size = os.path.getsize(tmp)
    os.rename(tmp, os.path.join(blobs, digest))
    return digest, size, h.sha.hexdigest()


def put_json(blobs, obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return digest, len(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("tag")
    kind = ap.add_mutually_exclusive_group(required=True)
    kind.add_argument("--files", type=int)
    kind.add_argument("--layers", type=int)
    kind.add_argument("--bytes", type=int)
    a = ap.parse_args()
    blobs = os.path.join(a.out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    rng = random.Random(42)
    fills = []
    if a.files is not None:
        fills.append(lambda t: (add_busybox(t), small_files(t, "node_modules", a.files, rng)))
    elif a.layers is not None:
        for n in range(a.layers):
            def fill(t, n=n):
                if n == 0:
                    add_busybox(t)
                small_files(t, f"layer{n:03d}", 50, rng)
            fills.append(fill)
    else:
        def fill(t):
            add_busybox(t)
            add_dir(t, "data")
            block = text_block(rng, CHUNK_FILE)
            left, i = a.bytes, 0
            while left > 0:
                n = min(left, CHUNK_FILE)
                # Each file differs from the block a little, so no two are equal.
                data = block[i % 997:] + block[: i % 997]
                add(t, f"data/f{i:05d}.txt", data[:n])
                left -= n
                i += 1
        fills.append(fill)
    layers = [write_layer(blobs, f) for f in fills]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + l[2] for l in layers]},
    }
    cdigest, csize = put_json(blobs, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + cdigest, "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + d, "size": s} for d, s, _ in layers],
    }
    mdigest, msize = put_json(blobs, manifest)
    with open(os.path.join(a.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + mdigest, "size": msize,
            "annotations": {"org.opencontainers.image.ref.name": a.tag}}]}, f)


if __name__ == "__main__":
    main()
