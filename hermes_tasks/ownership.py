"""One owner per profile across hosts sharing a volume (SPEC §12, §13.1): the tool's side.

The slot's ``data/own`` (templates/gateway/own.j2) takes an exclusive ``flock`` on
``<profile dir>/.gateway.lock`` as the service user and execs the gateway holding it, then
records ``{host_id, pid, since}`` in ``.gateway-owner.json``. Here: reading that record for
``gateway.status``, and asking whether the lock is free before sweeping stale pid files.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import stat

from . import fsops, profiles, volfile

LOCK = ".gateway.lock"
OWNER = ".gateway-owner.json"
OWNER_LIMIT = 4096
# A one-shot restart request in a profile's directory: another host's gateway.restart
# records it (execute/elsewhere.py), the owning host's agent restarts the gateway and
# removes it (agent.py).
RESTART_REQUEST = ".gateway-restart-request"


def read_owner(home: str, profile: str, warn=None) -> dict | None:
    """The profile's owner record ``{host_id, pid, since}``, or None when absent or unusable.

    A claim written by the service user, so validated before use (SPEC §14.9): read without
    following symlinks, bounded, parsed guarded; ``host_id`` must match the host-id rule,
    ``pid`` be a positive integer and ``since`` a UTC time, or the record is not believed
    (``warn``, when given, hears why, naming the path).
    """
    where = os.path.join(home, *profiles.profile_parts(profile), OWNER)
    try:
        with fsops.opened_dir(home, profiles.profile_parts(profile)) as dfd:
            raw, why = volfile.read(dfd, OWNER, OWNER_LIMIT)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raw, why = None, volfile.why(exc)
    doc = None
    if raw is not None:
        doc, why = volfile.load_json(raw)
    if why is None and raw is not None:
        why = _invalid(doc)
    if why:
        if warn:
            warn(f"{profiles.escape(where)} {why}; not believed")
        return None
    if raw is None:
        return None
    return {"host_id": doc["host_id"], "pid": doc["pid"], "since": doc["since"]}


def _invalid(doc) -> str | None:
    """Why a parsed owner record is not a record own.j2 writes, or None."""
    from .inventory import HOST_ID_RE

    if not isinstance(doc, dict):
        return "is not a JSON object"
    host, pid, since = doc.get("host_id"), doc.get("pid"), doc.get("since")
    if not isinstance(host, str) or not HOST_ID_RE.fullmatch(host):
        return "names a host_id that breaks the host-id rule"
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 1 << 22:
        return "holds a pid that is not a positive integer"
    # own.j2's `date -u +%Y-%m-%dT%H:%M:%SZ`, read without strptime (whose first call
    # imports _strptime, calendar and locale: ~3 ms of a gateway.status)
    if not (isinstance(since, str) and len(since) == 20 and since.isascii()
            and since[4::3] == "--T::Z"):
        return "holds a 'since' that is not a UTC time"
    fields = (since[0:4], since[5:7], since[8:10], since[11:13], since[14:16], since[17:19])
    try:
        if not all(f.isdigit() for f in fields):
            raise ValueError
        datetime.datetime(*map(int, fields))
    except ValueError:
        return "holds a 'since' that is not a UTC time"
    return None


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


def held_by_other(dfd: int) -> bool:
    """Whether the ownership lock of the profile directory ``dfd`` is actually held, by a
    process that is not this one: a regular file whose ``flock`` is refused right now.

    Anything else (missing, a symlink, a FIFO, unopenable, free) is not proof of an owner.
    """
    try:
        fd = os.open(LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            from .lock import _flock_holders

            holders = _flock_holders(os.fstat(fd))
            return not holders or any(pid != os.getpid() for pid in holders)
        except OSError:
            return False
        return False
    finally:
        os.close(fd)  # closing the only descriptor of this open file releases the flock


def held_elsewhere(home: str, profile: str, host_id: str, shared: bool,
                   warn=None) -> str | None:
    """The host running the profile when that is not this one, or None (free, ours, unknown).

    A claim from the volume, believed only on a volume the inventory says is shared
    (``shared_volume: true``), when the record is valid, names another host, and the lock
    is actually held by another process (SPEC §14.9). The host id returned matches the
    host-id rule: printable as it is.
    """
    if not shared:
        return None
    record = read_owner(home, profile, warn)
    if record is None or record["host_id"] == host_id:
        return None
    try:
        with fsops.opened_dir(home, profiles.profile_parts(profile)) as dfd:
            return record["host_id"] if held_by_other(dfd) else None
    except OSError:
        return None
