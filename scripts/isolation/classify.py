"""Summarise an `strace -f -e trace=%file` log (scripts/isolation/trace.sh, docs/ISOLATION.md).

Usage: classify.py TRACE HERMES_HOME PROFILE VENV

Every path outside HERMES_HOME/profiles/PROFILE, grouped by class (venv, root home, /etc,
/proc, /dev, /tmp, ...), with syscall, W when it writes (O_WRONLY/O_RDWR/O_CREAT, mkdir,
unlink, rename, ...), outcome and count. Successful or ENOENT reads of the venv and the
system Python are counted, not listed. Relative names are resolved against a directory fd
(openat(fd, "name")), listed as "(dirfd)/name".
"""
import collections, re, sys
trace, home, profile, venv = sys.argv[1:5]
pdir = f"{home}/profiles/{profile}"
call = re.compile(r'^(\d+)\s+(?:<\.\.\. )?(\w+)\((?:AT_FDCWD|\d+(?:<[^>]*>)?)?,?\s*"([^"]*)"(.*?)\)?\s*=\s*(-?\d+|\?)\s*(\w+)?')
classes = [("profile", pdir), ("venv", venv), ("root-home", home),
           ("python-system", "/usr/lib/python3"), ("usr", "/usr"), ("etc", "/etc"),
           ("proc", "/proc"), ("sys", "/sys"), ("dev", "/dev"), ("tmp", "/tmp"), ("lib", "/lib"),
           ("root-fs", "/")]
seen = collections.defaultdict(lambda: collections.Counter())
pending = {}
def joined(lines):
    """strace -f splits interrupted calls ("<unfinished ...>" + "<... X resumed>"): rejoin."""
    for line in lines:
        u = re.match(r"^(\d+)\s+(\w+)\((.*) <unfinished \.\.\.>$", line.rstrip("\n"))
        if u:
            pending[(u[1], u[2])] = f"{u[1]}  {u[2]}({u[3]}"
            continue
        r = re.match(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$", line.rstrip("\n"))
        if r:
            head = pending.pop((r[1], r[2]), None)
            if head is None:
                continue
            line = head + r[3]
        yield line
for line in joined(open(trace, errors="replace")):
    m = call.match(line)
    if not m:
        continue
    pid, sc, path, rest, rc, err = m.groups()
    if not path.startswith("/"):
        path = "(dirfd)/" + path
        cls = "dirfd-relative"
    else:
        cls = next(c for c, p in classes if path == p or path.startswith(p.rstrip("/") + "/") or p == "/")
    write = any(f in rest for f in ("O_WRONLY", "O_RDWR", "O_CREAT")) or sc in (
        "mkdir", "mkdirat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "chmod", "fchmodat", "symlink", "link", "rmdir", "utimensat")
    seen[cls][(sc + (" W" if write else ""), re.sub(r"/proc/\d+", "/proc/<pid>", path), err or "ok")] += 1
for cls, c in seen.items():
    if cls in ("profile",):
        print(f"== {cls}: {sum(c.values())} calls"); continue
    print(f"== {cls}: {sum(c.values())} calls, {len(c)} distinct")
    for (sc, path, res), n in sorted(c.items(), key=lambda kv: kv[0][1]):
        if cls in ("venv", "python-system") and res in ("ok", "ENOENT") and " W" not in sc:
            continue
        print(f"  {n:5d} {sc:12s} {res:7s} {path}")
