"""A slot's runtime facts read straight from ``supervise/status``, without spawning s6-svstat.

The record is s6-supervise's own (35 bytes in s6 2.11; reference/s6.md §16), replaced by
rename on every write, so one read is always a whole record. Reading it costs microseconds
where ``s6-svstat`` costs a process (~1 ms): this is how many slots are read at once.
Whether a supervisor is alive is not in the record; :func:`supervised` asks the control
FIFO (a reader on it means a supervisor listens), as ``s6-svok`` does. Waiting on a status
and signalling are :mod:`supervision`'s.
"""

from __future__ import annotations

import os
import struct

from . import fsops, records

RECORD = 35
TAI_OFFSET = (1 << 62) + 37  # TAI64 label of the Unix epoch, as s6-svstat prints it here
_FLAG_PAUSED, _FLAG_FINISHING, _FLAG_WANT_UP, _FLAG_READY = 0x01, 0x02, 0x04, 0x08


@records.record(frozen=True)
class Status:
    """What s6 knows of one service.

    ``supervised`` is None when the caller may not tell (EACCES on the control FIFO).
    ``exit_code``/``signal`` describe the last death (None when not applicable, and
    meaningless while up). ``since`` is the Unix time of the last up/down change.
    """

    supervised: bool | None
    up: bool = False
    ready: bool = False
    wanted_up: bool = False
    normally_up: bool = False
    finishing: bool = False
    paused: bool = False
    pid: int | None = None
    exit_code: int | None = None
    signal: str | None = None
    since: float | None = None
    ready_since: float | None = None

    @property
    def running(self) -> bool:
        """Up under a live supervisor (a stale record of a dead supervisor is not)."""
        return bool(self.supervised is not False and self.up)


def parse(raw: bytes, supervised: bool | None, normally_up: bool) -> Status:
    """Decode one record; ValueError when it is not a record of the known layout."""
    if len(raw) != RECORD:
        raise ValueError(f"supervise/status has {len(raw)} bytes, expected {RECORD}")
    stamp, nanos, ready_stamp, ready_nanos, pid, wstat, flags = struct.unpack(">QLQLQHB", raw)
    finishing = bool(flags & _FLAG_FINISHING)
    up = pid != 0 and not finishing
    exit_code = sig = None
    if not up:
        if os.WIFEXITED(wstat):
            exit_code = os.WEXITSTATUS(wstat)
        elif os.WIFSIGNALED(wstat):
            import signal  # its names only: not on the path of a status with no signal death

            try:
                sig = signal.Signals(os.WTERMSIG(wstat)).name
            except ValueError:
                sig = f"SIG{os.WTERMSIG(wstat)}"
    return Status(
        supervised=supervised, up=up, ready=up and bool(flags & _FLAG_READY),
        wanted_up=bool(flags & _FLAG_WANT_UP), normally_up=normally_up, finishing=finishing,
        paused=bool(flags & _FLAG_PAUSED), pid=pid if up else None, exit_code=exit_code,
        signal=sig, since=_unix(stamp, nanos), ready_since=_unix(ready_stamp, ready_nanos))


_RELATIVE = ("supervise/control", "down", "supervise/status")


def read(slot: str, dir_fd: int | None = None, down: bool | None = None) -> Status:
    """The slot's status; ``Status(supervised=False)`` when no supervisor ever wrote one.

    A record left by a supervisor that has since died is returned with
    ``supervised=False`` (its ``up`` is then history, not fact: see :attr:`Status.running`).
    Raises PermissionError when the record cannot be read (a supervisor's umask of 077).
    With ``dir_fd`` (the slot's directory, open), ``slot`` is not used: the paths below
    are resolved from it, which is cheaper for many slots. ``down``: whether the slot has a
    ``down`` marker, when the caller has just seen (None: look).
    """
    if dir_fd is not None:
        control, marker, status = _RELATIVE
    else:
        control, marker, status = (os.path.join(slot, rel) for rel in _RELATIVE)
    supervised_ = supervised(control, dir_fd)
    if down is not None:
        normally_up = not down
    else:
        try:
            os.stat(marker, dir_fd=dir_fd, follow_symlinks=False)
            normally_up = False
        except OSError:  # as os.path.lexists: absent, or may not look
            normally_up = True
    try:
        fd = os.open(status, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        return Status(supervised=False if supervised_ is None else supervised_,
                      normally_up=normally_up)
    try:
        raw = os.read(fd, RECORD + 1)
    finally:
        os.close(fd)
    return parse(raw, supervised_, normally_up)


def supervised(control: str, dir_fd: int | None = None) -> bool | None:
    """Whether an s6-supervise listens on the ``supervise/control`` FIFO at ``control``
    (relative to ``dir_fd`` when given); None when we may not tell (EACCES)."""
    return fsops.fifo_has_reader(control, dir_fd)


def _unix(stamp: int, nanos: int = 0) -> float | None:
    # Nanoseconds kept: a start and an exit within one second must still differ.
    return None if stamp == 0 else stamp - TAI_OFFSET + nanos / 1e9
