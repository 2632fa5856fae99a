"""The exclusive lock every mutating task holds on ``<scandir>/.hermes-tasks.lock``."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time

from .errors import LockTimeout

LOCK_NAME = ".hermes-tasks.lock"


@contextlib.contextmanager
def held(scandir: str, timeout: float, what: str = "hermes-tasks"):
    """Hold the scandir lock, waiting up to ``timeout`` seconds.

    The holder's pid is written into the file for the message a waiter prints. A user who
    may not create or write the lock file (the service user in a root scandir) still locks
    it read-only; with no lock file at all it proceeds unlocked (nothing to race: it cannot
    change slots itself).
    """
    path = os.path.join(scandir, LOCK_NAME)
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
        writable = True
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EROFS, errno.ENOENT, errno.EPERM):
            raise
        try:
            fd, writable = os.open(path, os.O_RDONLY | flags), False
        except OSError:
            yield
            return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _holder(path)
                    raise LockTimeout(
                        f"{what}: lock {path} is held{holder}; gave up after {timeout:g} s "
                        "(raise lock_timeout or wait for the other run to finish)") from None
                time.sleep(0.05)
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _holder(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            pid = int(fh.read(32).strip() or b"0")
    except (OSError, ValueError):
        return ""
    return f" by pid {pid}" if pid > 0 else ""
