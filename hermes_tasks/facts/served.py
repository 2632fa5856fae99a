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
FD_LIMIT = 4096  # descriptors of one process looked at: a million fds must not stall a run


def listening(pid: int) -> set[int]:
    """TCP ports process ``pid`` itself listens on (empty when it cannot be told)."""
    return listening_many([pid]).get(pid, set())


def _sockets(pid: int) -> set[str] | None:
    """Socket inodes among ``pid``'s descriptors; None when they cannot be told."""
    inodes: set[str] = set()
    base = f"/proc/{int(pid)}/fd"
    try:
        fds = os.listdir(base)
    except OSError:
        return None
    if len(fds) > FD_LIMIT:
        return None
    for fd in fds:
        try:
            link = os.readlink(f"{base}/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def _table(pid: int) -> dict[str, int]:
    """The LISTEN sockets of ``pid``'s network namespace: socket inode → port."""
    found: dict[str, int] = {}
    for table in _TABLES:
        try:
            with open(f"/proc/{int(pid)}/net/{table}", "rb") as fh:
                raw = fh.read(_LIMIT)
        except OSError:
            continue
        for line in raw.decode("ascii", "replace").splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[3] == LISTEN:
                try:
                    found[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
                except (IndexError, ValueError):
                    continue
    return found


def listening_many(pids, tables: dict | None = None,
                   unknown: set[int] | None = None) -> dict[int, set[int]]:
    """:func:`listening` for many processes, each network namespace's tables read once
    (450 gateways in one namespace: one read, not 450; ``tables`` keeps them across calls).
    Pids whose descriptors cannot be told go into ``unknown`` too, when given."""
    tables = {} if tables is None else tables
    out: dict[int, set[int]] = {}
    for pid in pids:
        inodes = _sockets(pid)
        if inodes is None and unknown is not None:
            unknown.add(pid)
        if not inodes:
            out[pid] = set()
            continue
        try:
            netns = os.stat(f"/proc/{int(pid)}/ns/net").st_ino
        except OSError:
            out[pid] = set()
            continue
        if netns not in tables:
            tables[netns] = _table(pid)
        out[pid] = {port for inode, port in tables[netns].items() if inode in inodes}
    return out
