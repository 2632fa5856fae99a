"""A gateway's log as s6-log keeps it, read back for people (SPEC §14.8: ``gateway.logs``).

Each gateway's logger writes ``<hermes_home>/logs/gateways/<name>/current`` (one more
``/<host_id>`` level on a shared volume: templates/gateway/log/run.j2), every line prefixed
with s6-log's ``T`` stamp (ISO 8601 in the logger's time zone: UTC in the image, whose TZ
is unset); a line with a TAI64N label (s6-log's ``t``) is shown in UTC. The directory is
the service user's, so it is read as hostile input: no symlink followed below
``hermes_home``, a regular file only, never blocking on a FIFO, and only its tail is read —
a log of any size costs a few blocks.
"""

from __future__ import annotations

import datetime
import errno
import os
import re
import stat
import time

from . import fsops, state, svstatus

CURRENT = "current"
BLOCK = 64 << 10
TAIL_LIMIT = 4 << 20  # at most this much of the file's end is read for a tail
LINE_LIMIT = 4096  # a longer line is cut (a binary blob must not flood a terminal)
_LABEL = re.compile(rb"@([0-9a-f]{16})([0-9a-f]{8})(?: |$)")


def directory(name: str, host_id: str, shared_volume: bool) -> tuple[str, ...]:
    """The log directory of profile ``name``'s gateway below ``hermes_home``."""
    return ("logs", "gateways", name, *((host_id,) if shared_volume else ()))


def current(home: str, parts: tuple[str, ...]) -> str:
    """The path of the log the logger writes now (``parts``: :func:`directory`'s)."""
    return os.path.join(home, *parts, "current")


def readable(line: bytes) -> str:
    """One log line with its TAI64N label as UTC (``2026-12-07 16:00:43.123456``), escaped.

    The same instant ``s6-tai64nlocal`` prints with ``TZ=UTC`` (microseconds kept); a line
    without a label is printed as it is.
    """
    m = _LABEL.match(line)
    text = line[m.end():] if m else line
    out = state.printable(text[:LINE_LIMIT].decode("utf-8", "replace").rstrip("\r"), LINE_LIMIT)
    if not m:
        return out
    unix = svstatus._unix(int(m.group(1), 16), int(m.group(2), 16))
    if unix is None:
        return out
    stamp = datetime.datetime.fromtimestamp(unix, datetime.UTC)
    return f"{stamp:%Y-%m-%d %H:%M:%S.%f} {out}"


def open_current(home: str, parts: tuple[str, ...]) -> int:
    """An fd on the log's ``current`` (OSError with a plain reason otherwise)."""
    with fsops.opened_dir(home, parts) as dfd:
        fd = os.open(CURRENT, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd


def tail_fd(fd: int, lines: int) -> tuple[list[bytes], int]:
    """The last ``lines`` whole lines before the file's end, and the offset of that end."""
    end = os.fstat(fd).st_size
    if lines <= 0:
        return [], end
    pos, data = end, b""
    while pos > 0 and data.count(b"\n") <= lines and end - pos < TAIL_LIMIT:
        step = min(BLOCK, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
    got = data.split(b"\n")
    if got and got[-1] == b"":
        got.pop()  # the end of the last line
    if pos > 0 and len(got) > lines:
        got = got[1:]  # the first piece may be the end of a line begun before ``pos``
    return got[-lines:], end


def last(home: str, parts: tuple[str, ...], lines: int) -> list[str]:
    """``gateway.logs``: the last ``lines`` lines of a log, readable; a TaskError naming the
    log and why it cannot be read."""
    from .errors import TaskError

    try:
        fd = open_current(home, parts)
        try:
            return [readable(raw) for raw in tail_fd(fd, lines)[0]]
        finally:
            os.close(fd)
    except OSError as exc:
        where = "/".join((home, *parts, CURRENT))
        raise TaskError(f"cannot read {where}: {exc.strerror or exc}") from None


def tail(home: str, parts: tuple[str, ...], lines: int) -> list[str]:
    """The last ``lines`` lines of a log, readable; [] when there is no log (never raises)."""
    try:
        fd = open_current(home, parts)
    except OSError:
        return []
    try:
        return [readable(raw) for raw in tail_fd(fd, lines)[0]]
    except OSError:
        return []
    finally:
        os.close(fd)


def follow(home: str, parts: tuple[str, ...], lines: int, out, poll: float = 0.25,
           stop=lambda: False) -> None:
    """Print the tail, then every line appended, until interrupted (or ``stop()``).

    When s6-log rotates ``current`` (a new file at that name, or the old one cut short)
    the new file is read from its start.
    """
    fd = open_current(home, parts)
    try:
        got, pos = tail_fd(fd, lines)
        for raw in got:
            out.write(readable(raw) + "\n")
        out.flush()
        pending = b""
        while not stop():
            st = os.fstat(fd)
            if st.st_size > pos:
                chunk = os.pread(fd, min(st.st_size - pos, BLOCK), pos)
                pos += len(chunk)
                pending += chunk
                *whole, pending = pending.split(b"\n")
                for raw in whole:
                    out.write(readable(raw) + "\n")
                out.flush()
                if len(pending) > LINE_LIMIT:
                    out.write(readable(pending) + "\n")
                    pending = b""
                continue
            try:
                again = open_current(home, parts)
            except OSError:
                again = None
            if again is not None:
                if (os.fstat(again).st_ino != st.st_ino) or st.st_size < pos:
                    os.close(fd)
                    fd, pos, pending = again, 0, b""
                    continue
                os.close(again)
            time.sleep(poll)
    finally:
        os.close(fd)
