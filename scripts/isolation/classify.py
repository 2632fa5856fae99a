"""Summarise an `strace -f -e trace=%file` log (scripts/isolation/trace.sh, docs/ISOLATION.md).

Usage: classify.py TRACE HERMES_HOME PROFILE VENV

Every path outside HERMES_HOME/profiles/PROFILE, grouped by class (venv, root home, /etc,
/proc, /dev, /tmp, ...), with syscall, W when it writes (O_WRONLY/O_RDWR/O_CREAT, mkdir,
unlink, rename, ...), outcome and count. Successful or ENOENT reads of the venv and the
system Python are counted, not listed. Relative names are resolved against a directory fd
(openat(fd, "name")), listed as "(dirfd)/name".
"""

from __future__ import annotations

import collections
import re
import sys

CALL = re.compile(r'^(\d+)\s+(?:<\.\.\. )?(\w+)\((?:AT_FDCWD|\d+(?:<[^>]*>)?)?,?\s*"([^"]*)"'
                  r"(.*?)\)?\s*=\s*(-?\d+|\?)\s*(\w+)?")
UNFINISHED = re.compile(r"^(\d+)\s+(\w+)\((.*) <unfinished \.\.\.>$")
RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$")
WRITES = ("mkdir", "mkdirat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "chmod",
          "fchmodat", "symlink", "link", "rmdir", "utimensat")


def joined(lines):
    """strace -f splits interrupted calls ("<unfinished ...>" + "<... X resumed>"): rejoin."""
    pending = {}
    for line in lines:
        line = line.rstrip("\n")
        u = UNFINISHED.match(line)
        if u:
            pending[(u[1], u[2])] = f"{u[1]}  {u[2]}({u[3]}"
            continue
        r = RESUMED.match(line)
        if r:
            start = pending.pop((r[1], r[2]), None)
            if start is None:
                continue
            line = start + r[3]
        yield line


def main(trace: str, home: str, profile: str, venv: str) -> None:
    classes = [("profile", f"{home}/profiles/{profile}"), ("venv", venv), ("root-home", home),
               ("python-system", "/usr/lib/python3"), ("usr", "/usr"), ("etc", "/etc"),
               ("proc", "/proc"), ("sys", "/sys"), ("dev", "/dev"), ("tmp", "/tmp"),
               ("lib", "/lib"), ("root-fs", "/")]
    seen: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    with open(trace, errors="replace") as f:
        for line in joined(f):
            m = CALL.match(line)
            if not m:
                continue
            _pid, sc, path, rest, _rc, err = m.groups()
            if not path.startswith("/"):
                path, cls = "(dirfd)/" + path, "dirfd-relative"
            else:
                cls = next(c for c, p in classes
                           if p == "/" or path == p or path.startswith(p.rstrip("/") + "/"))
            write = any(f in rest for f in ("O_WRONLY", "O_RDWR", "O_CREAT")) or sc in WRITES
            key = (sc + (" W" if write else ""), re.sub(r"/proc/\d+", "/proc/<pid>", path),
                   err or "ok")
            seen[cls][key] += 1
    for cls, c in seen.items():
        if cls == "profile":
            print(f"== {cls}: {sum(c.values())} calls")
            continue
        print(f"== {cls}: {sum(c.values())} calls, {len(c)} distinct")
        for (sc, path, res), n in sorted(c.items(), key=lambda kv: kv[0][1]):
            if cls in ("venv", "python-system") and res in ("ok", "ENOENT") and " W" not in sc:
                continue
            print(f"  {n:5d} {sc:12s} {res:7s} {path}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: classify.py TRACE HERMES_HOME PROFILE VENV")
    main(*sys.argv[1:5])
