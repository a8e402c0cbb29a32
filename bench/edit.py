#!/usr/bin/env python3
"""A realistic, deterministic edit set for the refresh benchmark (bench/run, issue 8).

Usage: bench/edit.py IMAGE TREE [--seed N]

- IMAGE (the OS-image-like file): 1% of its bytes overwritten with random bytes in 100
  scattered places (one in each hundredth of the file, at a random offset within it), then a
  1 KiB insertion near its start (at a random offset in its first MiB), which shifts every
  byte after it.
- TREE (the folder of small files): 200 files changed (up to 1 KiB overwritten at a random
  offset; an empty file gets 100 bytes), 100 new files (sizes and contents drawn like
  pkgdist-gen's: 60% under 4 KiB, 35% 4-64 KiB, 5% 64 KiB-1 MiB; half random, half text),
  100 files removed. Changed and removed files are distinct.

The same seed and the same input give the same output. Prints a one-line summary.
"""

import argparse
import os
import random
import sys

WORDS = [b"driver", b"package", b"setup", b"install", b"windows", b"system32", b"config",
         b"update", b"x64", b"resource", b"manifest", b"version", b"the", b"of", b"and",
         b"registry", b"service", b"\r\n", b"=", b"1"]


def text(rng, n):
    out = bytearray()
    while len(out) < n:
        out += rng.choice(WORDS) + b" "
    return bytes(out[:n])


def edit_image(path, rng):
    size = os.path.getsize(path)
    places, changed = 100, size // 100
    span = changed // places
    with open(path, "r+b") as f:
        for i in range(places):
            lo, hi = i * size // places, (i + 1) * size // places
            f.seek(lo + rng.randrange(max(1, hi - lo - span)))
            f.write(rng.randbytes(span))
    # The insertion: rewrite the file with 1 KiB more at a random offset in its first MiB.
    at = rng.randrange(min(size, 1 << 20))
    tmp = path + ".edit-tmp"
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(src.read(at))
        dst.write(rng.randbytes(1024))
        while True:
            block = src.read(8 << 20)
            if not block:
                break
            dst.write(block)
    os.replace(tmp, path)
    return places * span, at


def edit_tree(root, rng):
    files = sorted(
        os.path.relpath(os.path.join(d, n), root)
        for d, _, names in os.walk(root) for n in names)
    picked = rng.sample(files, 300)
    changed, removed = picked[:200], picked[200:]
    for rel in changed:
        p = os.path.join(root, rel)
        size = os.path.getsize(p)
        with open(p, "r+b") as f:
            if size == 0:
                f.write(rng.randbytes(100))
            else:
                n = min(size, 1024)
                f.seek(rng.randrange(size - n + 1))
                f.write(rng.randbytes(n))
    for rel in removed:
        os.remove(os.path.join(root, rel))
    dirs = sorted({os.path.dirname(f) for f in files})
    added = 0
    for i in range(100):
        r = rng.randrange(100)
        if r < 60:
            size = rng.randrange(4096)
        elif r < 95:
            size = 4096 + rng.randrange(60 << 10)
        else:
            size = (64 << 10) + rng.randrange(960 << 10)
        data = rng.randbytes(size) if rng.randrange(2) == 0 else text(rng, size)
        with open(os.path.join(root, rng.choice(dirs), f"new{i:04d}.bin"), "wb") as f:
            f.write(data)
        added += size
    return len(changed), len(removed), added


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image")
    ap.add_argument("tree")
    ap.add_argument("--seed", type=int, default=8)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    overwritten, at = edit_image(a.image, rng)
    changed, removed, added = edit_tree(a.tree, rng)
    print(f"image: {overwritten} bytes overwritten in 100 places, 1024 bytes inserted at {at}; "
          f"tree: {changed} files changed, {removed} removed, 100 added ({added} bytes)")


if __name__ == "__main__":
    sys.exit(main())
