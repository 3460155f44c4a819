#!/usr/bin/env python3
"""Generate a deterministic test corpus, or change one the way a day of work would.

    gen_corpus.py generate DIR [--seed N] [--profile demo|bench|tiny] [--scale X]
    gen_corpus.py mutate DIR [--seed N]
    gen_corpus.py scatter DIR [--seed N] [--count N]

Profiles:
  demo   a few thousand small files (text and random), a few medium files, symlinks (relative,
         absolute, dangling), a hard-link group, a sparse file, empty files and directories,
         odd names (spaces, newline, non-UTF-8), xattrs, odd modes, other owners when run as
         root, and fixed nanosecond mtimes. About 60 MiB (apparent size larger: sparse).
  bench  tens of thousands of small files of mixed compressibility (text-like and random) plus a
         few large files: random, partly compressible, text-like. About 1.1 GiB at --scale 1;
         --scale multiplies file counts and sizes.
  tiny   400,000 files of 10-300 bytes (uniform; half text-like, half random), 100 to a
         directory: about 63 MB, a mail spool or source tree. --scale multiplies the count.

`scatter` appends one text line to --count (4,000) random files of the tree, as a session of
scattered edits does; a different --seed picks different files.

The same seed, profile and scale always give the same bytes, names, modes and mtimes.
"""

import argparse
import math
import os
import random
import sys

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "backup restore server client session chunk index error warning info debug kernel cron ssh "
    "rsync database table select insert update delete where value config user group mail host"
).split()
# A skewed alphabet: random bytes mapped onto it compress about 2x and never repeat for long,
# so content-defined chunking finds no accidental duplicates.
SKEWED = bytes(
    (b"eeeeeeeetttttaaaaoooiiinnnsssrrhhlldcumfpgwybvkxjqz      \n\n,.0123456789" * 4)[:256]
)
BLOCK = 1 << 20


def text_bytes(rng, n):
    """Word-based text: compresses well, like logs and configuration."""
    out = []
    size = 0
    while size < n:
        words = rng.choices(WORDS, k=rng.randint(4, 14))
        line = "%d %s\n" % (rng.randint(0, 99999), " ".join(words))
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def skewed_bytes(rng, n):
    return rng.randbytes(n).translate(SKEWED)


def write_stream(path, rng, size, kind):
    """Write `size` bytes of `kind` (random, text, skewed, mixed) in blocks."""
    with open(path, "wb") as f:
        left = size
        i = 0
        while left > 0:
            n = min(BLOCK, left)
            if kind == "random":
                data = rng.randbytes(n)
            elif kind == "skewed":
                data = skewed_bytes(rng, n)
            elif kind == "mixed":
                # Alternating regions: a database dump with compressed blobs in it.
                data = rng.randbytes(n) if i % 3 == 0 else skewed_bytes(rng, n)
            else:
                data = text_bytes(rng, n)
            f.write(data)
            left -= n
            i += 1


def log_uniform(rng, lo, hi):
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def small_files(root, rng, count, per_dir=100):
    made = []
    ndirs = max(1, count // per_dir)
    dirs = []
    for d in range(ndirs):
        depth = 1 + d % 3
        parts = ["d%03d" % d] + ["sub%d" % ((d >> k) % 4) for k in range(1, depth)]
        dirs.append(os.path.join(root, "small", *parts))
    for i in range(count):
        d = dirs[i % ndirs]
        os.makedirs(d, exist_ok=True)
        size = log_uniform(rng, 100, 65536)
        if rng.random() < 0.5:
            name, data = "f%05d.txt" % i, text_bytes(rng, size)
        else:
            name, data = "f%05d.bin" % i, rng.randbytes(size)
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(data)
        made.append(p)
    return made


def tiny_files(root, rng, count, per_dir=100):
    """`count` files of 10-300 bytes under tiny/dNNNN/."""
    for i in range(count):
        d = os.path.join(root, "tiny", "d%04d" % (i // per_dir))
        if i % per_dir == 0:
            os.makedirs(d, exist_ok=True)
        size = rng.randint(10, 300)
        if rng.random() < 0.5:
            name, data = "m%06d.txt" % i, text_bytes(rng, size)
        else:
            name, data = "m%06d.bin" % i, rng.randbytes(size)
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def special_entries(root, rng):
    """Links, a sparse file, empty things, odd names, modes, xattrs, owners."""
    s = os.path.join(root, "special")
    os.makedirs(os.path.join(s, "links", "sub"), exist_ok=True)
    os.makedirs(os.path.join(s, "empty-dir"), exist_ok=True)
    os.makedirs(os.path.join(s, "odd names"), exist_ok=True)
    orig = os.path.join(s, "links", "original.txt")
    with open(orig, "wb") as f:
        f.write(text_bytes(rng, 20000))
    os.link(orig, os.path.join(s, "links", "hardlink.txt"))
    os.link(orig, os.path.join(s, "links", "sub", "hardlink-in-sub.txt"))
    os.symlink("original.txt", os.path.join(s, "links", "relative-symlink"))
    os.symlink("/etc/hostname", os.path.join(s, "links", "absolute-symlink"))
    os.symlink("../does/not/exist", os.path.join(s, "links", "dangling-symlink"))
    os.symlink("sub", os.path.join(s, "links", "dir-symlink"))
    open(os.path.join(s, "empty-file"), "wb").close()
    # Sparse: 4 KiB of data, a 48 MiB hole, 64 KiB of data, a trailing hole; 96 MiB apparent.
    sp = os.path.join(s, "sparse.img")
    with open(sp, "wb") as f:
        f.write(rng.randbytes(4096))
        f.seek(48 << 20)
        f.write(rng.randbytes(65536))
        f.truncate(96 << 20)
    for name in [b"with space.txt", b"new\nline", "\u00e9t\u00e9.txt".encode(), b"latin1-\xe9\xff"]:
        with open(os.path.join(s.encode(), b"odd names", name), "wb") as f:
            f.write(b"odd name: " + name + b"\n")
    modes = {"exec.sh": 0o755, "private.key": 0o600, "setgid": 0o2755, "readonly": 0o444}
    os.makedirs(os.path.join(s, "modes"), exist_ok=True)
    for name, mode in modes.items():
        p = os.path.join(s, "modes", name)
        with open(p, "wb") as f:
            f.write(b"#!/bin/sh\necho %s\n" % name.encode())
        os.chmod(p, mode)
    os.chmod(os.path.join(s, "empty-dir"), 0o1777)
    try:
        os.setxattr(orig, "user.comment", b"the original")
        os.setxattr(os.path.join(s, "links"), "user.binary", b"\x00\x01\xff")
        os.setxattr(sp, "user.empty", b"")
    except OSError as e:
        print("note: no xattrs on this filesystem (%s)" % e, file=sys.stderr)
    if os.geteuid() == 0:
        os.chown(os.path.join(s, "modes", "exec.sh"), 1000, 1000)
        os.chown(os.path.join(s, "modes", "private.key"), 0, 1234)
        os.lchown(os.path.join(s, "links", "relative-symlink"), 4242, 4343)


def set_times(root, seed):
    """Fixed mtimes with nanoseconds, children before their directory so that it sticks."""
    rng = random.Random(seed ^ 0x5EED)
    base = 1_700_000_000 * 10**9
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in sorted(filenames) + sorted(dirnames):
            p = os.path.join(dirpath, name)
            t = base + rng.randrange(0, 365 * 86400 * 10**9)
            os.utime(p, ns=(t, t), follow_symlinks=False)
        t = base + rng.randrange(0, 365 * 86400 * 10**9)
        os.utime(dirpath, ns=(t, t), follow_symlinks=False)


def generate(args):
    root = args.dir
    if os.path.exists(root) and os.listdir(root):
        sys.exit("gen_corpus.py: %s exists and is not empty" % root)
    os.makedirs(root, exist_ok=True)
    rng = random.Random(args.seed)
    scale = args.scale
    if args.profile == "tiny":
        tiny_files(root, rng, int(400000 * scale))
    elif args.profile == "demo":
        small_files(root, rng, int(3000 * scale), per_dir=60)
        os.makedirs(os.path.join(root, "medium"), exist_ok=True)
        write_stream(os.path.join(root, "medium", "random.bin"), rng, int((12 << 20) * scale), "random")
        write_stream(os.path.join(root, "medium", "dump.sql"), rng, int((10 << 20) * scale), "mixed")
        write_stream(os.path.join(root, "medium", "app.log"), rng, int((8 << 20) * scale), "text")
        special_entries(root, rng)
    else:
        small_files(root, rng, int(30000 * scale))
        big = os.path.join(root, "large")
        os.makedirs(big, exist_ok=True)
        write_stream(os.path.join(big, "video.bin"), rng, int((320 << 20) * scale), "random")
        write_stream(os.path.join(big, "database.dump"), rng, int((300 << 20) * scale), "mixed")
        write_stream(os.path.join(big, "server.log"), rng, int((200 << 20) * scale), "skewed")
        special_entries(root, rng)
    set_times(root, args.seed)


def mutate(args):
    """A day of changes: edit some files, append to a log, add, delete, rename a directory."""
    root = args.dir
    rng = random.Random(args.seed + 1)
    files = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, "small")):
        dirnames.sort()
        for name in sorted(filenames):
            files.append(os.path.join(dirpath, name))
    if not files:
        sys.exit("gen_corpus.py: no files under %s/small to change" % root)
    changed = rng.sample(files, min(10, len(files)))
    for p in changed[:5]:
        with open(p, "r+b") as f:  # rewrite in place, same size
            data = bytearray(f.read())
            if data:
                data[rng.randrange(len(data))] ^= 0x55
            f.seek(0)
            f.write(data)
    for p in changed[5:]:
        with open(p, "ab") as f:
            f.write(text_bytes(rng, 1000))
    with open(os.path.join(root, "new-file.txt"), "wb") as f:
        f.write(text_bytes(rng, 50000))
    for p in rng.sample([f for f in files if f not in changed], 3):
        os.remove(p)
    small = os.path.join(root, "small")
    first = sorted(os.listdir(small))[0]
    os.rename(os.path.join(small, first), os.path.join(small, first + "-renamed"))
    print("changed %d files, added 1, deleted 3, renamed small/%s" % (len(changed), first))


def scatter(args):
    """Append one text line to `count` random files (a session of scattered edits)."""
    rng = random.Random(args.seed * 7919 + 13)
    files = []
    for dirpath, dirnames, filenames in os.walk(args.dir):
        dirnames.sort()
        files.extend(os.path.join(dirpath, n) for n in sorted(filenames))
    if not files:
        sys.exit("gen_corpus.py: no files under %s" % args.dir)
    added = 0
    for p in rng.sample(files, min(args.count, len(files))):
        line = text_bytes(rng, rng.randint(150, 350)).rstrip(b"\n") + b"\n"
        with open(p, "ab") as f:
            f.write(line)
        added += len(line)
    print("appended %d bytes to %d files" % (added, min(args.count, len(files))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("dir")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--profile", choices=["demo", "bench", "tiny"], default="demo")
    g.add_argument("--scale", type=float, default=1.0)
    m = sub.add_parser("mutate")
    m.add_argument("dir")
    m.add_argument("--seed", type=int, default=42)
    c = sub.add_parser("scatter")
    c.add_argument("dir")
    c.add_argument("--seed", type=int, default=42)
    c.add_argument("--count", type=int, default=4000)
    args = ap.parse_args()
    if args.cmd == "generate":
        generate(args)
    elif args.cmd == "scatter":
        scatter(args)
    else:
        mutate(args)


if __name__ == "__main__":
    main()
