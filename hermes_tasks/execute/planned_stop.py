"""hermes's planned-stop marker, written just before a deliberate stop (SPEC §15).

hermes 0.19.0 exits 1 on a SIGTERM it did not expect and keeps ``gateway_state: running``
(so a container restart brings it back); a stop its own tools make is announced first in
``<profile home>/.gateway-planned-stop.json`` (``gateway/status.py``), and the gateway then
exits 0 and records ``stopped``, so hermes's own status and dashboard tell the truth. The
record names the process (``target_pid``, ``target_start_time`` = field 22 of
``/proc/<pid>/stat``) so it can never stop another one, and is stale after 60 s.

The service user's file: the service user writes it itself; root (SPEC §13.10) writes it
only through directory descriptors opened without following a link below ``hermes_home``,
creates it ``O_EXCL``/``O_NOFOLLOW`` next to the target and renames it into place, and hands
it to ``service_uid``/``service_gid`` (nothing there can block or redirect the write). In an
isolated profile (SPEC §16) it is the profile uid's file instead: the uid its directory
belongs to (only root gives one of the profile range), as ``desired_state`` is.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime

from .. import fsops, svstatus
from ..inventory import Settings
from ..profiles import DEFAULT, profile_parts

MARKER = ".gateway-planned-stop.json"


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
               "written_at": datetime.now(UTC).isoformat()}
        out.append((profile, (json.dumps(doc, separators=(",", ":")) + "\n").encode()))
    return out


def ids(settings: Settings) -> tuple[int, int] | None:
    """Who a root caller's markers belong to (None: the caller writes as itself)."""
    if fsops.IS_ROOT and settings.service_user is not None:
        return settings.service_uid, settings.service_gid
    return None


def isolated(settings: Settings) -> tuple[int, int] | None:
    """The profile uids' range when root writes into isolated profiles (else None)."""
    if fsops.IS_ROOT and settings.profile_isolation:
        from ..uids import DEFAULT_LIMIT

        return settings.profile_uid_base, DEFAULT_LIMIT
    return None


def mark(home: str, items: list[tuple[str, str]], owner: tuple[int, int] | None,
         uid_range: tuple[int, int] | None = None) -> list[str]:
    """Write the marker for each (profile, slot path) about to be stopped on purpose.

    ``uid_range``: isolation is on; a named profile whose directory a uid of this range
    owns gets the marker as that uid's file (read from the directory fd the write uses).

    Returns the profiles it was written for (best effort: a gateway without one still
    stops, as an unplanned stop); :func:`clear` those s6 then refused, or the gateway would
    stop itself (hermes watches for the marker).
    """
    done = []
    for profile, data in records(items):
        with contextlib.suppress(OSError):
            with fsops.opened_dir(home, profile_parts(profile)) as dfd:
                fsops.write_atomic(dfd, MARKER, data, 0o644, durable=False,
                                   owner=_owner(dfd, profile, owner, uid_range))
            done.append(profile)
    return done


def _owner(dfd: int, profile: str, owner, uid_range):
    if uid_range is None or owner is None or profile == DEFAULT:
        return owner
    uid = os.fstat(dfd).st_uid
    return (uid, uid) if uid_range[0] <= uid <= uid_range[1] else owner


def clear(home: str, profiles: list[str]) -> None:
    for profile in profiles:
        with contextlib.suppress(OSError):
            with fsops.opened_dir(home, profile_parts(profile)) as dfd:
                fsops.unlink_if_present(dfd, MARKER)
