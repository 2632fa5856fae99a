"""The exclusive lock every mutating task holds on ``<scandir>/.hermes-tasks.lock``."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time

from . import supervision
from .errors import LockTimeout

LOCK_NAME = ".hermes-tasks.lock"
MODE = 0o600


@contextlib.contextmanager
def held(scandir: str, timeout: float, what: str = "hermes-tasks"):
    """Hold the scandir lock, waiting up to ``timeout`` seconds.

    The file is its owner's alone (0600): ``flock`` works on a read-only descriptor, so a
    lock file others may open lets them hold off every run (SPEC §10). A lax one left by
    an older version is replaced, not chmodded, since a descriptor already open would
    keep working. A user who may not open the file (the service user in a root scandir)
    proceeds unlocked: it cannot change slots itself. The holder's pid is written into the
    file for the message a waiter prints.
    """
    path = os.path.join(scandir, LOCK_NAME)
    fd = _open(path)
    if fd is None:
        yield
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            if not supervision.wait_until(lambda fd=fd: try_lock(fd),
                                          deadline - time.monotonic(), 0.05):
                raise LockTimeout(
                    f"{what}: lock {path} is held{_holder(path, fd)}; gave up after "
                    f"{timeout:g} s (raise lock_timeout or wait for the other run to "
                    "finish)")
            if _same_file(fd, path):
                break
            # Replaced (a lax file swapped for a private one) while we waited: lock the new.
            os.close(fd)
            fd = _open(path)
            if fd is None:
                yield
                return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def try_lock(fd: int) -> bool:
    """Take ``flock(LOCK_EX)`` on ``fd`` if it is free now; whether it was taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _open(path: str) -> int | None:
    """The lock file opened read-write and private; None when we may not open it."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(3):
        try:
            fd = os.open(path, flags | os.O_CREAT, MODE)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EROFS, errno.ENOENT, errno.EPERM):
                return None
            raise
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and not st.st_mode & 0o077:
            return fd
        os.close(fd)
        _replace(path)
    raise OSError(errno.EAGAIN, "could not make the lock file private", path)


def _replace(path: str) -> None:
    """Swap a lax lock file for a private one in one rename (descriptors open on the old
    one then lock a file nobody else uses)."""
    parent, name = os.path.split(path)
    tmp = os.path.join(parent, f".{name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, MODE)
    os.fchmod(fd, MODE)  # umask-proof
    os.close(fd)
    os.rename(tmp, path)


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _holder(path: str, fd: int) -> str:
    """`` by pid N`` for a live holder, else nothing (a dead pid must not be named).

    The kernel's own list of flocks on the file wins; the pid written in the file is
    named only when that process is alive.
    """
    holders = _flock_holders(os.fstat(fd))
    if holders:
        return f" by pid {holders[0]}"
    try:
        pid = int(os.pread(fd, 32, 0).strip() or b"0")
    except (OSError, ValueError):
        return ""
    return f" by pid {pid}" if pid > 0 and _alive(pid) else ""


def _flock_holders(st: os.stat_result) -> list[int]:
    """Live pids that /proc/locks lists as holding a flock on the file ``st`` describes."""
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF" ("->" marks waiters)
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == want:
                    pid = int(fields[4]) if fields[4].isdigit() else 0
                    if pid > 0 and _alive(pid):
                        pids.append(pid)
    except OSError:
        return []
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
