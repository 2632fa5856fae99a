"""One owner per profile across hosts sharing a volume (SPEC §12, §13.1): the tool's side.

The slot's ``data/own`` (templates/gateway/own.j2) takes an exclusive ``flock`` on
``<profile dir>/.gateway.lock`` as the service user and execs the gateway holding it, then
records ``{host_id, pid, since}`` in ``.gateway-owner.json``. Here: reading that record for
``gateway.status``, and asking whether the lock is free before sweeping stale pid files.
"""

from __future__ import annotations

import fcntl
import json
import os

from . import fsops, profiles

LOCK = ".gateway.lock"
OWNER = ".gateway-owner.json"
OWNER_LIMIT = 4096


def read_owner(home: str, profile: str) -> dict | None:
    """The profile's owner record ``{host_id, pid, since}``, or None when absent or unusable.

    Read without following symlinks, bounded; only the three known keys are kept.
    """
    try:
        with fsops.opened_dir(home, profiles.profile_parts(profile)) as dfd:
            raw = fsops.read_bounded(dfd, OWNER, OWNER_LIMIT)
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("host_id"), str):
        return None
    pid = doc.get("pid")
    return {"host_id": doc["host_id"][:64],
            "pid": pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            "since": doc.get("since") if isinstance(doc.get("since"), str) else None}


def lock_free(dfd: int) -> bool:
    """Whether no process holds the ownership lock of the profile directory ``dfd``.

    Probed with a non-blocking ``flock`` released at once (a standby polling at that very
    moment retries 2 s later). A missing lock file is free; one that cannot be opened
    (a symlink, a FIFO, no permission) counts as held, so nothing is swept on a guess.
    """
    try:
        fd = os.open(LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # EWOULDBLOCK: held; anything else: cannot tell, so held
    finally:
        os.close(fd)  # closing the only descriptor of this open file releases the flock
    return True


def held_elsewhere(home: str, profile: str, host_id: str) -> str | None:
    """The host running the profile when that is not this one: its record names another
    host and the lock is held. None otherwise (free, ours, or unknown)."""
    record = read_owner(home, profile)
    if record is None or record["host_id"] == host_id:
        return None
    try:
        with fsops.opened_dir(home, profiles.profile_parts(profile)) as dfd:
            return None if lock_free(dfd) else record["host_id"]
    except OSError:
        return None
