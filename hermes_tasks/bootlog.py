"""``<hermes_home>/logs/container-boot.log``: one line per slot per run, rotated by size."""

from __future__ import annotations

import datetime
import os

from . import fsops
from .profiles import escape

NAME = "container-boot.log"


def format_line(when: str, profile: str, prior_state: str | None, action: str, result: str) -> str:
    prior = "None" if prior_state is None else escape(prior_state)
    return (f"{when} profile={escape(profile)} prior_state={prior} "
            f"action={action} result={result}\n")


def append(home: str, rows: list[tuple[str, str | None, str, str]], rotate_bytes: int,
           owner: tuple[int, int], warn) -> None:
    """Append ``(profile, prior_state, action, result)`` rows, rotating first if needed.

    Never follows a symlink on the volume; ``logs/`` and the file are created owned by
    ``owner`` when running as root. A failed rotation is a warning; lines still go in.
    """
    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    data = "".join(format_line(when, *row) for row in rows).encode()
    try:
        dfd = fsops.open_dir(home, ("logs",), create_mode=0o755, owner=owner)
    except OSError as exc:
        warn(f"cannot write {escape(os.path.join(home, 'logs', NAME))}: {exc.strerror or exc}")
        return
    try:
        _rotate(dfd, rotate_bytes, home, warn)
        created = not fsops.lexists(dfd, NAME)
        fd = os.open(NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NONBLOCK, 0o644, dir_fd=dfd)
        try:
            if created and fsops.IS_ROOT:
                os.fchown(fd, *owner)
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        warn(f"cannot write {escape(os.path.join(home, 'logs', NAME))}: {exc.strerror or exc}")
    finally:
        os.close(dfd)


def _rotate(dfd: int, limit: int, home: str, warn) -> None:
    try:
        st = os.stat(NAME, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if st.st_size < limit:
        return
    try:
        os.rename(NAME, NAME + ".1", src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError as exc:
        warn(f"could not rotate {escape(os.path.join(home, 'logs', NAME))}: {exc.strerror}")
