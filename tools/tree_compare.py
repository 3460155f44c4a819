#!/usr/bin/env python3
"""Compare two trees entry by entry with lstat, the way a restore must reproduce them.

    tree_compare.py [--no-owner] [--no-root] A B

Compares: the set of paths, type, mode (incl. setuid/setgid/sticky), uid/gid, size, mtime in
nanoseconds, symlink targets, file contents, xattrs, hard-link grouping, device numbers.
Prints one line per difference and exits 1 if there is any, 0 if the trees are equal.
"""

import argparse
import hashlib
import os
import stat
import sys


def walk(root):
    """Relative paths (bytes) in sorted pre-order, root first as b''."""
    out = [b""]

    def rec(d, rel):
        names = sorted(os.listdir(d))
        for n in names:
            r = n if not rel else rel + b"/" + n
            out.append(r)
            p = os.path.join(d, n)
            if stat.S_ISDIR(os.lstat(p).st_mode):
                rec(p, r)

    rec(os.fsencode(root), b"")
    return out


def content_hash(path):
    h = hashlib.blake2b()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.digest()
            h.update(b)


def xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def show(rel):
    return repr(rel.decode("utf-8", "backslashreplace")) if rel else "."


def compare(a, b, owner=True, root_meta=True):
    diffs = []
    pa, pb = walk(a), walk(b)
    sa, sb = set(pa), set(pb)
    for rel in sorted(sa - sb):
        diffs.append("%s: only in %s" % (show(rel), a))
    for rel in sorted(sb - sa):
        diffs.append("%s: only in %s" % (show(rel), b))
    first_a, first_b = {}, {}
    ea, eb = os.fsencode(a), os.fsencode(b)
    for rel in pa:
        if rel not in sb:
            continue
        fa = os.path.join(ea, rel) if rel else ea
        fb = os.path.join(eb, rel) if rel else eb
        ma, mb = os.lstat(fa), os.lstat(fb)
        name = show(rel)
        if stat.S_IFMT(ma.st_mode) != stat.S_IFMT(mb.st_mode):
            diffs.append("%s: type %o vs %o" % (name, stat.S_IFMT(ma.st_mode), stat.S_IFMT(mb.st_mode)))
            continue
        meta = bool(rel) or root_meta
        link = stat.S_ISLNK(ma.st_mode)
        if meta and not link and stat.S_IMODE(ma.st_mode) != stat.S_IMODE(mb.st_mode):
            diffs.append("%s: mode %o vs %o" % (name, stat.S_IMODE(ma.st_mode), stat.S_IMODE(mb.st_mode)))
        if meta and owner and (ma.st_uid, ma.st_gid) != (mb.st_uid, mb.st_gid):
            diffs.append("%s: owner %d:%d vs %d:%d" % (name, ma.st_uid, ma.st_gid, mb.st_uid, mb.st_gid))
        if meta and ma.st_mtime_ns != mb.st_mtime_ns:
            diffs.append("%s: mtime %d vs %d ns" % (name, ma.st_mtime_ns, mb.st_mtime_ns))
        if meta and xattrs(fa) != xattrs(fb):
            diffs.append("%s: xattrs %r vs %r" % (name, xattrs(fa), xattrs(fb)))
        if link:
            if os.readlink(fa) != os.readlink(fb):
                diffs.append("%s: symlink target %r vs %r" % (name, os.readlink(fa), os.readlink(fb)))
        elif stat.S_ISREG(ma.st_mode):
            if ma.st_size != mb.st_size:
                diffs.append("%s: size %d vs %d" % (name, ma.st_size, mb.st_size))
            elif content_hash(fa) != content_hash(fb):
                diffs.append("%s: content differs" % name)
            ga = first_a.setdefault((ma.st_dev, ma.st_ino), rel)
            gb = first_b.setdefault((mb.st_dev, mb.st_ino), rel)
            if ga != gb:
                diffs.append("%s: hard-linked with %s vs %s" % (name, show(ga), show(gb)))
            if ma.st_nlink != mb.st_nlink:
                diffs.append("%s: link count %d vs %d" % (name, ma.st_nlink, mb.st_nlink))
        elif stat.S_ISCHR(ma.st_mode) or stat.S_ISBLK(ma.st_mode):
            if ma.st_rdev != mb.st_rdev:
                diffs.append("%s: device %d vs %d" % (name, ma.st_rdev, mb.st_rdev))
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-owner", action="store_true", help="do not compare uid/gid")
    ap.add_argument("--no-root", action="store_true", help="do not compare the roots' own metadata")
    ap.add_argument("a")
    ap.add_argument("b")
    args = ap.parse_args()
    for d in (args.a, args.b):
        if not os.path.isdir(d):
            sys.exit("tree_compare.py: %s is not a directory" % d)
    diffs = compare(args.a, args.b, owner=not args.no_owner, root_meta=not args.no_root)
    for d in diffs:
        print(d)
    if diffs:
        print("tree_compare.py: %d difference(s) between %s and %s" % (len(diffs), args.a, args.b), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
