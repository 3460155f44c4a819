# Sourced by tools/bench.sh and tools/bench-push.sh: the edits their cases make to a tree.

# edit_tree DIR: append a line to every 100th regular file, in sorted path order (1% of the
# files; the bench corpus's large files sort first, so one of them is among them).
edit_tree() {
  python3 - "$1" <<'PY'
import os, sys
files = sorted(os.path.join(r, f) for r, _, fs in os.walk(sys.argv[1]) for f in fs)
for p in files[::100]:
    if os.path.isfile(p) and not os.path.islink(p):
        with open(p, "ab") as f:
            f.write(b"one more line, appended by the bench\n")
PY
}

# edit_big FILE: three 4 KiB edits in place, at 1/7, 1/2 and 4/5 of it.
edit_big() {
  python3 - "$1" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
size = os.fstat(fd).st_size
for i, at in enumerate((size // 7, size // 2, size - size // 5)):
    os.pwrite(fd, bytes([0x41 + i]) * 4096, at)
os.close(fd)
PY
}
