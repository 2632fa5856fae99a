"""Which TCP ports a gateway actually serves: its own listening sockets, from ``/proc``.

A gateway that already serves a port keeps it (SPEC §14.5), so when two gateways would
bind one port the one holding it is found from the system, not from our settings: the
socket fds of the supervised pid matched against the LISTEN entries of that process's own
network namespace (``/proc/<pid>/net/tcp``). Read only for the few gateways a collision
involves; anything unreadable counts as "serves nothing" (a process we may not inspect,
or one that just exited).
"""

from __future__ import annotations

import os

LISTEN = "0A"
_TABLES = ("tcp", "tcp6")
_LIMIT = 4 << 20  # bytes of one table read: a namespace with many sockets is cut, never hangs


def listening(pid: int) -> set[int]:
    """TCP ports process ``pid`` itself listens on (empty when it cannot be told)."""
    inodes: set[str] = set()
    base = f"/proc/{int(pid)}"
    try:
        fds = os.listdir(f"{base}/fd")
    except OSError:
        return set()
    for fd in fds:
        try:
            link = os.readlink(f"{base}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    if not inodes:
        return set()
    found: set[int] = set()
    for table in _TABLES:
        try:
            with open(f"{base}/net/{table}", "rb") as fh:
                raw = fh.read(_LIMIT)
        except OSError:
            continue
        for line in raw.decode("ascii", "replace").splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[3] == LISTEN and fields[9] in inodes:
                try:
                    found.add(int(fields[1].rsplit(":", 1)[1], 16))
                except (IndexError, ValueError):
                    continue
    return found
