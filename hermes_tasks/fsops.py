"""File operations that never follow a symlink below a trusted root.

The volume (``hermes_home``) is written by an unprivileged user, so when we run as root
every path below it is opened component by component with ``O_NOFOLLOW`` relative to its
parent's file descriptor. The scandir is root's own tmpfs, but the same helpers are used
there: one way to touch files, everywhere.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import sys
from collections.abc import Iterator

try:  # CPython's own BLAKE2: importing hashlib loads OpenSSL first
    from _blake2 import blake2b
except ImportError:  # another Python
    from hashlib import blake2b

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
IS_ROOT = os.geteuid() == 0


def _umask() -> int:
    """The process's umask, read without changing it (the kernel shows it since 4.7)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)  # older kernels: the only way to read it is to set it
    os.umask(umask)
    return umask


# The umask is never changed here: what must have an exact mode gets an fchmod after it
# is created (:func:`umask_keeps` says when that is needed).
UMASK = _umask()


def umask_keeps(mode: int, umask: int = UMASK) -> bool:
    """True when creating with ``mode`` under ``umask`` yields exactly ``mode``."""
    return not (mode & umask) and not (mode & 0o7000)


class SymlinkRefused(OSError):
    """A path component below the trusted root is a symlink (or not a directory)."""


def open_dir(root: str, parts: tuple[str, ...] = (), create_mode: int | None = None,
             owner: tuple[int, int] | None = None) -> int:
    """Open ``root/parts...`` as a directory fd, refusing symlinks below ``root``.

    ``root`` itself is trusted (it comes from the inventory). With ``create_mode``, missing
    components are created with that mode and, when ``owner`` is given and we are root,
    handed to ``owner`` (uid, gid). The caller closes the returned fd.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            try:
                nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if create_mode is None:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, create_mode, dir_fd=fd)
                    if owner and IS_ROOT:
                        os.chown(part, *owner, dir_fd=fd, follow_symlinks=False)
                nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise SymlinkRefused(exc.errno, "is a symlink or not a directory; not followed",
                                         os.path.join(root, *parts)) from None
                raise
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


class UnsafeDirectory(OSError):
    """A directory on a path another user can write (so could swap what we write into)."""


def open_private_path(path: str, create_mode: int = 0o755, start: int | None = None) -> int:
    """Open the directory ``path`` as an fd, walking every component from ``/`` (or from
    the directory fd ``start``, ``path`` then relative) without following a symlink,
    creating missing ones with ``create_mode``.

    Refuses (:class:`UnsafeDirectory`) a directory another user could write: one owned
    by someone else than us or root, or group/other-writable, unless it is sticky and the
    entry we go through is ours (``/tmp``) — the final directory itself must be ours
    alone. So nothing written below the fd can be redirected elsewhere. The caller closes
    the fd.
    """
    parts = [p for p in (path if start is not None else os.path.abspath(path)).split("/")
             if p and p != "."]
    if ".." in parts:
        raise UnsafeDirectory(errno.EINVAL, "'..' is not allowed here", path)
    fd = os.open("/", DIR_FLAGS) if start is None else os.dup(start)
    where = "/" if start is None else "."
    try:
        st = os.fstat(fd)
        for part in parts:
            # sticky protects our entry only if the directory's owner is us or root
            sticky = bool(st.st_mode & stat.S_ISVTX) and _ours(st)
            if _others_write(st) and not sticky:  # refused before anything is made in it
                raise UnsafeDirectory(errno.EPERM, "another user can write this directory",
                                      where)
            try:
                nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, create_mode, dir_fd=fd)
                nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise SymlinkRefused(exc.errno, "is a symlink or not a directory; not "
                                         "followed", os.path.join(where, part)) from None
                raise
            child = os.fstat(nfd)
            if _others_write(st) and not _ours(child):
                os.close(nfd)
                raise UnsafeDirectory(errno.EPERM, "another user can write this directory",
                                      where)
            os.close(fd)
            fd, st, where = nfd, child, os.path.join(where, part)
        if _others_write(st):
            raise UnsafeDirectory(errno.EPERM, "another user can write this directory", where)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _ours(st: os.stat_result) -> bool:
    return st.st_uid in (0, os.geteuid())


def _others_write(st: os.stat_result) -> bool:
    return not _ours(st) or bool(st.st_mode & 0o022)


@contextlib.contextmanager
def opened_dir(root: str, parts: tuple[str, ...] = (), **kw) -> Iterator[int]:
    """Context-managed :func:`open_dir`."""
    fd = open_dir(root, parts, **kw)
    try:
        yield fd
    finally:
        os.close(fd)


def read_fd(fd: int, limit: int, size_hint: int = 0) -> bytes:
    """Read ``fd`` to its end, stopping once more than ``limit`` bytes were read.

    Each read asks for what ``fstat`` said plus one byte, not for ``limit``: asking
    ``os.read`` for 1 MiB allocates 1 MiB, which made reading a small file 7x slower.
    ``fd`` must be a regular file (a short read is taken as its end).
    """
    chunks, total = [], 0
    want = max(size_hint, 0) + 1
    while total <= limit:
        asked = min(want, limit + 1 - total)
        chunk = os.read(fd, asked)
        chunks.append(chunk)
        total += len(chunk)
        if len(chunk) < asked:  # a short read of a regular file is its end: no extra read
            break
        want = max(want, 64 << 10)  # the file grew since fstat: larger steps from here
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_bounded(dir_fd: int, name: str, limit: int) -> bytes:
    """Read a regular file of at most ``limit`` bytes without following a symlink.

    Raises ``OSError`` (``ELOOP`` for a symlink, ``EFBIG`` when larger than ``limit``,
    ``EINVAL`` when not a regular file). ``O_NONBLOCK`` keeps a planted FIFO from hanging us.
    """
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", name)
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", name)
        data = read_fd(fd, limit, st.st_size)
        if len(data) > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", name)
        return data
    finally:
        os.close(fd)


def write_atomic(dir_fd: int, name: str, data: bytes, mode: int = 0o644,
                 owner: tuple[int, int] | None = None, durable: bool = True) -> None:
    """Replace ``name`` in ``dir_fd`` by a complete new file through one rename.

    The temp file is created exclusively with ``O_NOFOLLOW`` next to the target, so a
    planted symlink is never written through; the rename replaces a symlink at ``name``
    rather than following it. ``durable`` fsyncs the file and the directory: worth it on
    the volume (state files survive a power cut whole), pointless on the tmpfs scandir.

    Why in this order: the data is fsynced *before* the rename, because otherwise a power
    cut can persist the rename but not the data (delayed allocation) and leave the name
    pointing at an empty or truncated file; the directory is fsynced *after* it, so that a
    run which reported the change has made the rename itself durable. A crash at any point
    leaves the old file or the new one, whole, plus at worst our temp file (removed by the
    next write of the same name).
    """
    tmp = f".{name}.hermes-tasks.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)  # left by an interrupted run
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode, dir_fd=dir_fd)
    try:
        write_all(fd, data)
        os.fchmod(fd, mode)  # umask-proof: run scripts must be exactly 0755
        if owner and IS_ROOT:
            os.fchown(fd, *owner)
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    if durable:
        os.fsync(dir_fd)


def write_exclusive(dir_fd: int, name: str, data: bytes, mode: int = 0o644,
                    owner: tuple[int, int] | None = None, durable: bool = True) -> bool:
    """Create ``name`` holding ``data`` unless something exists there; never replace it.

    The file appears complete or not at all: it is written to a temp file, then hard-linked
    to ``name`` (``linkat`` fails with EEXIST instead of replacing, which ``rename`` cannot
    do). A crash can therefore never leave an empty or half-written file behind that a
    later run would take for the user's own. Returns False when ``name`` already existed.
    ``durable`` fsyncs like :func:`write_atomic` (used on the volume).
    """
    tmp = f".{name}.hermes-tasks.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    if lexists(dir_fd, name):
        return False
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode, dir_fd=dir_fd)
    try:
        try:
            write_all(fd, data)
            os.fchmod(fd, mode)
            if owner and IS_ROOT:
                os.fchown(fd, *owner)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            return False
        except OSError as exc:
            # A file system without hard links: fall back to check-then-rename (the only
            # writer of this name is the lock holder, so the window is harmless).
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            if lexists(dir_fd, name):
                return False
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
    if durable:
        os.fsync(dir_fd)
    return True


def write_all(fd: int, data: bytes) -> None:
    """``write(2)`` until everything is written (a short write is not an error)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_new(dir_fd: int, name: str, data: bytes, mode: int, umask: int = UMASK) -> None:
    """Create a file that must not exist yet (inside an invisible staging directory)."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode, dir_fd=dir_fd)
    try:
        if data:
            write_all(fd, data)
        if not umask_keeps(mode, umask):
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def unlink_if_present(dir_fd: int, name: str) -> bool:
    """Remove ``name`` (a symlink itself, never its target); True when something went."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        return False
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def lexists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def remove_tree(path: str) -> None:
    """``rm -rf`` that never follows symlinks: :func:`remove_tree_at` from the parent."""
    parent, name = os.path.split(os.path.abspath(path))
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_tree_at(fd, name)
    finally:
        os.close(fd)


RESCANS = 8  # a directory refilled more often than this while being emptied is given up


def remove_tree_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` below ``dir_fd`` and everything in it; absent is fine.

    The tree may be the service user's (a purged profile): so iterative, not recursive
    (a 1,500-deep tree is no ``RecursionError``), one directory fd open at a time (no
    ``EMFILE``), every step relative to a directory fd opened with ``O_NOFOLLOW``; a link
    is removed, never followed; another file system mounted inside is not crossed; a
    directory moved away meanwhile is noticed (its ``..`` is checked by device and inode)
    and not followed out. Raises ``OSError`` with a reason when it stops; what is left
    is still there to remove by a later call.
    """
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
        return
    dev = st.st_dev
    # From the top down to the directory open as fd: (name, inode, subdirectories to visit,
    # rescans done).
    path: list[list] = [[name, st.st_ino, None, 0]]
    fd = _open_same(dir_fd, name, st.st_dev, st.st_ino)
    try:
        while True:
            level = path[-1]
            if not level[2]:
                if level[2] is not None:
                    level[3] += 1
                    if level[3] > RESCANS:
                        raise OSError(errno.EAGAIN, "keeps being refilled while removed",
                                      level[0])
                level[2] = _empty_files(fd, dev)
            if level[2]:
                sub, sub_ino = level[2].pop()
                try:
                    nfd = _open_same(fd, sub, dev, sub_ino)
                except FileNotFoundError:
                    continue
                os.close(fd)
                fd = nfd
                path.append([sub, sub_ino, None, 0])
                continue
            done = path.pop()[0]
            if not path:
                os.close(fd)
                fd = -1
                os.rmdir(done, dir_fd=dir_fd)
                return
            up = os.open("..", DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            ust = os.fstat(fd)
            if (ust.st_dev, ust.st_ino) != (dev, path[-1][1]):
                raise OSError(errno.ESTALE, "a directory was moved while being removed; "
                              "not followed", done)
            try:
                os.rmdir(done, dir_fd=fd)
            except FileNotFoundError:
                pass
    finally:
        if fd >= 0:
            os.close(fd)


def _open_same(dir_fd: int, name: str, dev: int, ino: int) -> int:
    """``name`` opened as a directory without following a link; it must be (dev, ino)."""
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (dev, ino):
        os.close(fd)
        raise OSError(errno.ESTALE, "replaced while being removed; not followed", name)
    return fd


def _empty_files(fd: int, dev: int) -> list[tuple[str, int]]:
    """Unlink every non-directory in ``fd``; return its subdirectories (name, inode)."""
    subdirs = []
    with os.scandir(fd) as it:
        for entry in it:
            est = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(est.st_mode):
                if est.st_dev != dev:
                    raise OSError(errno.EXDEV, "another file system is mounted there; not "
                                  "crossed", entry.name)
                subdirs.append((entry.name, est.st_ino))
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.name, dir_fd=fd)
    return subdirs


def fifo_has_reader(path: str, dir_fd: int | None = None) -> bool | None:
    """True if a process holds ``path`` (a FIFO) open for reading; None if we may not tell.

    This is how ``s6-svok`` decides that a supervisor listens, without spawning it.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT, errno.ENOTDIR):
            return False
        if exc.errno == errno.EACCES:
            return None
        raise
    os.close(fd)
    return True


# -- what root may trust (render, inventory, slot and volume caches) -------------------


def package_init(name: str) -> str | None:
    """Where ``import name`` would find the package, found without importing it."""
    for entry in sys.path:
        path = os.path.join(entry or os.curdir, name, "__init__.py")
        if os.path.isfile(path):
            return path
    return None


def trusted_dir(dfd: int) -> bool:
    """The directory is ours and nobody else may create, rename or remove entries in it."""
    st = os.fstat(dfd)
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def read_trusted(dfd: int, name: str, limit: int) -> bytes | None:
    """The bytes of ``name`` in ``dfd`` if it is ours alone to write, else None."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                or st.st_mode & 0o022 or st.st_size > limit):
            return None
        return read_fd(fd, limit, st.st_size)
    finally:
        os.close(fd)


def load_trusted(directory: str, name: str, limit: int) -> tuple[bool | None, dict]:
    """The JSON object kept as ``name`` in ``directory``, for root's caches: (trusted, doc).

    ``trusted``: False when the directory is not the euid's alone (a cache there is never
    read nor written), None when it cannot be opened. ``doc`` is {} unless a trusted file
    (:func:`read_trusted`) holds a JSON object: missing, foreign, corrupt or too deep, a
    cache is only ignored.
    """
    try:
        with opened_dir(directory) as dfd:
            if not trusted_dir(dfd):
                return False, {}
            raw = read_trusted(dfd, name, limit)
    except (OSError, TypeError):
        return None, {}
    try:
        doc = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        return True, {}
    return True, doc if isinstance(doc, dict) else {}


def save_trusted(directory: str, name: str, data: bytes, limit: int) -> None:
    """Keep ``data`` as root's cache file ``name`` in ``directory`` (best effort: a failure
    costs speed only): never over ``limit`` (its load would refuse it), only in a directory
    that is ours alone (:func:`trusted_dir`), replaced atomically, 0600."""
    if len(data) > limit:
        return
    with contextlib.suppress(OSError):
        with opened_dir(directory) as dfd:
            if trusted_dir(dfd):
                write_atomic(dfd, name, data, mode=0o600, durable=False)


def strings(value) -> dict[str, str]:
    """``value`` if it is a mapping of strings to strings (a cache's entries), else {}."""
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return value
    return {}


def digest_file(path: str | None, limit: int = 4 << 20) -> str | None:
    """A hash of the bytes of code at ``path`` (a cache's stamp), None when unreadable.

    By content, not stat: an image layer need not keep the mtimes its build saw, and a
    cache primed at build must still match at a new container's boot. ``O_NONBLOCK``: a
    FIFO swapped in must not hang the run.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, TypeError):
        return None
    try:
        return blake2b(read_fd(fd, limit, os.fstat(fd).st_size), digest_size=16).hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)
