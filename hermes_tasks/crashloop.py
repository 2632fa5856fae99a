"""Crash loops (SPEC §14.6): s6's death tally, the hold ``finish`` records, and clearing it.

``templates/gateway/finish.j2`` counts the gateway's deaths in s6's own death tally
(``supervise/death_tally``, what ``s6-svdt`` prints). Once ``crash_limit`` of them fall within
``crash_window`` seconds it exits 125 (s6 keeps the service down) and writes
``<slot>/data/hold``, one line of JSON, root's (the slot is root's; docs/ARCHITECTURE.md):

    {"reason": "crash loop", "exits": 5, "window": 60, "last_exit": 1, "last_signal": null,
     "at": <Unix seconds>, "tai": <the last death's TAI64N label as nanoseconds past 2^62 s>}

Deaths up to ``<slot>/data/crash-since`` (one line, the same nanosecond form) do not count:
``finish`` moves it at a deliberate stop, :func:`clear` when a start lifts the hold.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct

from . import fsops, records, svstatus

HOLD = "data/hold"
SINCE = "data/crash-since"
TALLY = "supervise/death_tally"
_RECORD = struct.Struct(">QLBB")  # TAI64N label, exit code, signal (s6 2.11: 14 bytes)
_LIMIT = 4096


@records.record(frozen=True)
class Hold:
    """Why ``finish`` holds a gateway down."""

    exits: int
    window: int
    last_exit: int | None
    last_signal: int | None
    at: float  # Unix time it was recorded

    def text(self) -> str:
        """``crash loop: 5 exits in 60 s, last exit 1`` (the row's and status's wording)."""
        last = (f"last exit {self.last_exit}" if self.last_exit is not None
                else f"last signal {self.last_signal}" if self.last_signal is not None
                else "last exit unknown")
        return f"crash loop: {self.exits} exits in {self.window} s, {last}"


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_hold(slot: str, dir_fd: int | None = None) -> Hold | None:
    """The slot's hold record, or None (none, unreadable, or not one of ours)."""
    path = HOLD if dir_fd is not None else os.path.join(slot, HOLD)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return None
    try:
        raw = fsops.read_fd(fd, _LIMIT, os.fstat(fd).st_size)
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    finally:
        os.close(fd)
    if not isinstance(doc, dict) or doc.get("reason") != "crash loop":
        return None
    exits, window = _int(doc.get("exits")), _int(doc.get("window"))
    at = doc.get("at")
    if exits is None or window is None or not isinstance(at, (int, float)):
        return None
    return Hold(exits, window, _int(doc.get("last_exit")), _int(doc.get("last_signal")),
                float(at))


def _tally(slot: str) -> list[tuple[int, int, int, int]]:
    """The raw records: (TAI64 seconds, nanoseconds, exit code, signal), oldest first."""
    try:
        fd = os.open(os.path.join(slot, TALLY),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        raw = fsops.read_fd(fd, 4096 * _RECORD.size, os.fstat(fd).st_size)
    except OSError:
        return []
    finally:
        os.close(fd)
    return [_RECORD.unpack_from(raw, off)
            for off in range(0, len(raw) - len(raw) % _RECORD.size, _RECORD.size)]


def _nanos(secs: int, nanos: int) -> int:
    """A TAI64N label as finish compares it: nanoseconds past TAI64's 2^62 origin."""
    return (secs - (1 << 62)) * 1_000_000_000 + nanos


def deaths(slot: str) -> list[tuple[float, int, int]]:
    """s6's death tally: (Unix time, exit code, signal) per death, oldest first."""
    return [(secs - svstatus.TAI_OFFSET + nanos / 1e9, code, sig)
            for secs, nanos, code, sig in _tally(slot)]


def newest_death(slot: str) -> float | None:
    """Unix time of the last death s6 recorded (None: none yet)."""
    found = deaths(slot)
    return found[-1][0] if found else None


def files_changed(home: str, parts: tuple[str, ...], hold: Hold) -> bool:
    """Whether the profile's ``.env`` or ``config.yaml`` changed after the hold was recorded
    (a fix: the next reconcile lifts the hold). Never follows a symlink."""
    for name in (".env", "config.yaml"):
        with contextlib.suppress(OSError):
            if os.lstat(os.path.join(home, *parts, name)).st_mtime > hold.at:
                return True
    return False


def clear(slot: str) -> None:
    """Lift a hold before the gateway is brought up: deaths so far no longer count.

    Only who may write the slot's ``data/`` can (root, or the scandir's owner); anyone
    else leaves the record, and ``finish`` still counts from its last deliberate stop.
    """
    if not os.path.lexists(os.path.join(slot, HOLD)):
        return
    with contextlib.suppress(OSError):
        tally = _tally(slot)
        tai = _nanos(*tally[-1][:2]) if tally else 0
        dfd = os.open(os.path.join(slot, "data"), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                      | os.O_CLOEXEC)
        try:
            fsops.write_atomic(dfd, os.path.basename(SINCE), f"{tai}\n".encode(), 0o644)
            os.unlink(os.path.basename(HOLD), dir_fd=dfd)
        finally:
            os.close(dfd)
