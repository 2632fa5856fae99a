"""``<hermes_home>/logs/container-boot.log``: one line per slot per run, rotated by size."""

from __future__ import annotations

import datetime
import errno
import os
import stat

from . import fsops
from .profiles import escape

NAME = "container-boot.log"


def file_name(host_id: str | None = None) -> str:
    """``container-boot.log``, or ``container-boot.<host_id>.log`` for one host of several
    sharing the volume (SPEC §13.2)."""
    return f"container-boot.{host_id}.log" if host_id else NAME


def format_line(when: str, profile: str, prior_state: str | None, action: str, result: str,
                prior_exit: int | None = None) -> str:
    """One line; ``prior_exit=<code>`` at the end when the previous exit is known (§15)."""
    prior = "None" if prior_state is None else escape(prior_state)
    tail = "" if prior_exit is None else f" prior_exit={int(prior_exit)}"
    return (f"{when} profile={escape(profile)} prior_state={prior} "
            f"action={action} result={result}{tail}\n")


def append(home: str, rows: list[tuple[str, str | None, str, str]], rotate_bytes: int,
           owner: tuple[int, int], warn, durable: bool = True, name: str = NAME) -> None:
    """Append ``(profile, prior_state, action, result)`` rows, rotating first if needed.

    Never follows a symlink on the volume; ``logs/`` and the file are created owned by
    ``owner`` when running as root. A failed rotation is a warning; lines still go in.

    Bounded: the file is rotated before a run's lines would take it past ``rotate_bytes``
    (which includes SPEC's "at or above"), so ``container-boot.log`` and ``.1`` together
    stay within twice ``rotate_bytes`` however many runs append (unless one run alone
    writes more than that). A last line torn by a power cut or a full disk is closed with
    a newline first, so it can never swallow the next run's first line.
    """
    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    data = "".join(format_line(when, *row) for row in rows).encode()
    where = escape(os.path.join(home, "logs", name))
    try:
        dfd = fsops.open_dir(home, ("logs",), create_mode=0o755, owner=owner)
    except OSError as exc:
        warn(f"cannot write {where}: {exc.strerror or exc}")
        return
    try:
        _rotate(dfd, name, rotate_bytes, len(data), where, warn)
        fd, created = _open(dfd, name)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            if st.st_nlink != 1:
                # A hard link shares its inode with another name: a backup (`cp -al`), or a
                # file elsewhere planted on the user-writable volume. Never append to a
                # shared inode: move this name aside as the rotated log, start a new one.
                os.close(fd)
                fd = -1
                os.rename(name, name + ".1", src_dir_fd=dfd, dst_dir_fd=dfd)
                warn(f"{where} had {st.st_nlink} hard links; moved to {name}.1, not written to")
                fd, created = _open(dfd, name, exclusive=True)
                st = os.fstat(fd)
            if created and fsops.IS_ROOT:
                os.fchown(fd, *owner)
            if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n":
                data = b"\n" + data
            fsops.write_all(fd, data)
            if durable:
                # The boot log is what an operator reads after a crash or power cut, which
                # is exactly when unsynced lines would be lost. One fsync per run is cheap.
                os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)
    except OSError as exc:
        warn(f"cannot write {where}: {exc.strerror or exc}")
    finally:
        os.close(dfd)


def _open(dfd: int, name: str, exclusive: bool = False) -> tuple[int, bool]:
    """Open (or create) the log for appending; return (fd, whether this call created it).

    O_RDWR to look at the last byte; O_NONBLOCK so a planted FIFO cannot hang us;
    O_NOFOLLOW so a planted symlink is never written through; O_EXCL first, so only a file
    this call created is handed to the service user, never one planted in between.
    """
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        return os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dfd), True
    except FileExistsError:
        if exclusive:
            raise
    return os.open(name, flags, dir_fd=dfd), False


def _rotate(dfd: int, name: str, limit: int, incoming: int, where: str, warn) -> None:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or st.st_size + incoming <= limit:
        return
    try:
        os.rename(name, name + ".1", src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError as exc:
        warn(f"could not rotate {where}: {exc.strerror}")
