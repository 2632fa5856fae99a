"""hermes's planned-stop marker, written just before a deliberate stop (SPEC §15).

hermes 0.19.0 exits 1 on a SIGTERM it did not expect and keeps ``gateway_state: running``
(so a container restart brings it back); a stop its own tools make is announced first in
``<profile home>/.gateway-planned-stop.json`` (``gateway/status.py``), and the gateway then
exits 0 and records ``stopped``, so hermes's own status and dashboard tell the truth. The
record names the process (``target_pid``, ``target_start_time`` = field 22 of
``/proc/<pid>/stat``) so it can never stop another one, and is stale after 60 s.

Written as the service user (the profile home is its directory on a hostile volume): a
root caller forks one child that drops to ``service_uid``/``service_gid`` and writes every
marker of the batch, without following a link below ``hermes_home``; it is waited for
briefly and killed (by its pid) if the volume hangs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import datetime, timezone

from .. import fsops, svstatus
from ..inventory import Settings
from ..profiles import profile_parts

MARKER = ".gateway-planned-stop.json"
WRITE_TIMEOUT = 2.0


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read(4096)
        # the command name (field 2) may hold spaces and parentheses: split after its ")"
        return int(raw[raw.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def records(items: list[tuple[str, str]]) -> list[tuple[str, bytes]]:
    """(profile, marker bytes) for each (profile, slot path) whose gateway is up now."""
    out = []
    for profile, path in items:
        try:
            st = svstatus.read(path)
        except (OSError, ValueError):
            continue
        if not st.running or not st.pid:
            continue
        doc = {"target_pid": st.pid, "target_start_time": start_time(st.pid),
               "stopper_pid": os.getpid(),
               "written_at": datetime.now(timezone.utc).isoformat()}
        out.append((profile, (json.dumps(doc, separators=(",", ":")) + "\n").encode()))
    return out


def _write_all(home: str, batch: list[tuple[str, bytes]]) -> None:
    for profile, data in batch:
        with contextlib.suppress(OSError):
            with fsops.opened_dir(home, profile_parts(profile)) as dfd:
                fsops.write_atomic(dfd, MARKER, data, 0o644, durable=False)


def _remove_all(home: str, profiles: list[str]) -> None:
    for profile in profiles:
        with contextlib.suppress(OSError):
            with fsops.opened_dir(home, profile_parts(profile)) as dfd:
                fsops.unlink_if_present(dfd, MARKER)


def ids(settings: Settings) -> tuple[int, int] | None:
    """The ids a root caller writes the markers as (None: as itself)."""
    if fsops.IS_ROOT and settings.service_user is not None:
        return settings.service_uid, settings.service_gid
    return None


def _as(user: tuple[int, int] | None, fn, *args) -> bool:
    """``fn(*args)`` as ``user`` in a child (bounded, killed by its pid if the volume hangs
    it), or in this process when ``user`` is None. True when it finished."""
    if user is None:
        fn(*args)
        return True
    pid = os.fork()
    if pid == 0:  # the child: the service user's ids, then the work
        code = 1
        try:
            os.setgroups([])
            os.setgid(user[1])
            os.setuid(user[0])
            fn(*args)
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + WRITE_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        if time.monotonic() > deadline:  # never wait on the volume for long
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return False
        time.sleep(0.0005)  # s6 is told right after: keep hermes's watcher window short


def mark(home: str, items: list[tuple[str, str]], user: tuple[int, int] | None) -> list[str]:
    """Write the marker for each (profile, slot path) about to be stopped on purpose, as
    ``user`` (see :func:`ids`). Returns the profiles it was written for (best effort: a
    gateway without one still stops, as an unplanned stop); :func:`clear` those s6 then
    refused, or the gateway would stop itself (hermes watches for the marker)."""
    batch = records(items)
    if batch and _as(user, _write_all, home, batch):
        return [p for p, _ in batch]
    return []


def clear(home: str, profiles: list[str], user: tuple[int, int] | None) -> None:
    if profiles:
        _as(user, _remove_all, home, profiles)
