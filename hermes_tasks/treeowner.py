"""Give one profile's tree to one uid, as root, safely (SPEC §16: isolated profiles).

``python -m hermes_tasks.treeowner UID GID MODE HOME PART... --from PREV [--create]
[--kill-uid OLD] [--mark]`` converts
``HOME/PART/...`` (a profile's directory, or its log directory) and everything in it to
``UID:GID``, then sets the top directory's mode to ``MODE`` (octal). A slot's ``run`` and
``log/run`` call it as root, before dropping to the profile's uid, only when the top
directory's owner or mode is not the expected one: the gateway is down then (s6 runs
``run`` only once the previous gateway exited), so nothing creates files as the old uid
behind the walk.

The tree belongs to a user (the service user, or the profile's own uid, whose agent may be
hostile), so:

* every step is relative to a directory fd opened ``O_NOFOLLOW``: a symlink is never
  followed, wherever it is planted; nothing outside the tree is reached;
* entries are changed through a descriptor of the very inode inspected (``O_PATH``, then
  ``fchownat(fd, "", AT_EMPTY_PATH)``), so swapping a name for a link between the look and
  the change changes nothing else;
* only what the previous owner ``PREV`` (the service user switching isolation on, the
  profile's old uid switching it off) or ``UID`` owns is changed: an entry of any other
  owner is left alone and not entered, and a top directory of another owner is refused.
  The service user owns ``profiles/`` and can rename entries in it: another profile's
  converted directory moved into this tree (or in place of it) must not become this
  profile's;
* a regular file with more than one link is left alone and named: a hard link may be
  another tree's file (the old owner could link anything it owned into its tree);
* another file system mounted inside is not entered;
* iterative with one directory fd open at a time (no recursion, no ``EMFILE``); going back
  up checks ``..`` by device and inode, so a directory moved away meanwhile stops the walk;
* the top directory changes owner **last**: "top is UID:GID with MODE" means a walk
  completed, so a walk interrupted (SIGKILL) is simply redone by the next start;
* ``--mark`` (a profile's directory, ``profiles NAME``): root's record
  (``profile-uids.json``, :mod:`.uids`) names the directory it once gave to NAME's uid by
  device and inode; another directory of that name is refused (exit 78, one line), never
  converted, whatever the scandir forgot at a container restart. A conversion to NAME's
  recorded uid records the directory; one to any other uid (given back) forgets it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_AT_EMPTY_PATH = 0x1000
_libc = None


def _fchown_path(fd: int, uid: int, gid: int) -> None:
    """``fchownat(fd, "", uid, gid, AT_EMPTY_PATH)``: chown what an ``O_PATH`` fd holds
    (``fchown`` refuses such a descriptor; Python has no ``AT_EMPTY_PATH``)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.fchownat(fd, b"", uid, gid, _AT_EMPTY_PATH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Foreign(OSError):
    """The top directory belongs to neither the previous owner nor the profile: it will not
    become convertible by itself (exit 78: s6 does not restart the gateway into it)."""


def convert(home: str, parts: list[str], uid: int, gid: int, mode: int,
            create: bool = False, prev: int | None = None) -> tuple[int, list[str]]:
    """Give ``home/<parts…>`` and its tree to ``uid:gid``; the top directory gets ``mode``.

    ``create`` makes a missing top directory (root's ``mkdirat`` below a no-follow fd:
    a logger's directory the profile's uid cannot create in the service user's
    ``logs/gateways``; one of another owner is set aside first). ``prev``: the previous
    owner; with it, entries of other owners are left alone (None: every entry changes).
    Returns (entries changed, paths left alone with why).
    """
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
        last = parts[-1]
        where = os.path.join(home, *parts)
        owners = None if prev is None else {uid, prev}
        made = False
        if create:
            _aside(fd, last, owners, where)
            try:
                os.mkdir(last, 0o700, dir_fd=fd)
                made = True
            except FileExistsError:
                pass
        top = os.open(last, _DIR, dir_fd=fd)
    finally:
        os.close(fd)
    try:
        if owners is not None and not made and os.fstat(top).st_uid not in owners:
            raise Foreign(errno.EPERM, f"it belongs to uid {os.fstat(top).st_uid}, neither "
                          f"the previous owner ({prev}) nor the profile's ({uid}); not "
                          "converted (moved here from another tree?)", where)
        changed, left = _walk(top, where, uid, gid, owners)
        st = os.fstat(top)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(top, uid, gid)
            changed += 1
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(top, mode)
    finally:
        os.close(top)
    return changed, left


def _aside(fd: int, name: str, owners: set[int] | None, where: str) -> None:
    """A directory to be created (a logger's) that exists with another owner — a deleted
    profile's of the same name, or one moved here from another profile — is renamed aside
    (``.NAME.uid<UID>.<time>``, keeping its owner), so a fresh one is made."""
    import time

    if owners is None:
        return
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if st.st_uid in owners:
        return
    os.rename(name, f".{name}.uid{st.st_uid}.{int(time.time())}", src_dir_fd=fd,
              dst_dir_fd=fd)
    sys.stderr.write(f"hermes-tasks: {where!r} belonged to uid {st.st_uid}: set aside, "
                     "a new one is made\n")


def _walk(top: int, where: str, uid: int, gid: int,
          owners: set[int] | None = None) -> tuple[int, list[str]]:
    """Everything below the directory open as ``top`` (not ``top`` itself)."""
    top_st = os.fstat(top)
    dev = top_st.st_dev
    changed, left = 0, []
    # From the top down to the directory open as fd: [inode, path, subdirectories to visit].
    path: list[list] = [[top_st.st_ino, where, None]]
    fd = os.dup(top)
    try:
        while True:
            level = path[-1]
            if level[2] is None:
                level[2], n = _entries(fd, dev, level[1], uid, gid, left, owners)
                changed += n
            if level[2]:
                name, ino = level[2].pop()
                try:
                    nfd = os.open(name, _DIR, dir_fd=fd)
                except OSError:
                    continue  # gone or replaced by a non-directory meanwhile: not ours to follow
                nst = os.fstat(nfd)
                if (nst.st_dev, nst.st_ino) != (dev, ino) or (
                        owners is not None and nst.st_uid not in owners):
                    os.close(nfd)
                    left.append(f"{os.path.join(level[1], name)} (replaced while walked)")
                    continue
                if (nst.st_uid, nst.st_gid) != (uid, gid):
                    os.fchown(nfd, uid, gid)
                    changed += 1
                os.close(fd)
                fd = nfd
                path.append([ino, os.path.join(level[1], name), None])
                continue
            path.pop()
            if not path:
                return changed, left
            up = os.open("..", _DIR, dir_fd=fd)
            os.close(fd)
            fd = up
            ust = os.fstat(fd)
            if (ust.st_dev, ust.st_ino) != (dev, path[-1][0]):
                raise OSError(errno.ESTALE, "a directory was moved while being walked; "
                              "not followed", level[1])
    finally:
        os.close(fd)


def _entries(fd: int, dev: int, where: str, uid: int, gid: int, left: list[str],
             owners: set[int] | None = None) -> tuple[list[tuple[str, int]], int]:
    """Change every non-directory entry of the directory ``fd``; return its subdirectories
    (name, inode) on this file system, and how many entries changed. An entry whose owner
    is not in ``owners`` (when given) is left alone, and a directory of it not entered."""
    subdirs, changed = [], 0
    for name in os.listdir(fd):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if st.st_dev != dev:
            left.append(f"{os.path.join(where, name)} (another file system)")
            continue
        if owners is not None and st.st_uid not in owners:
            left.append(f"{os.path.join(where, name)} (uid {st.st_uid}'s)")
            continue
        if stat.S_ISDIR(st.st_mode):
            subdirs.append((name, st.st_ino))
            continue
        if (st.st_uid, st.st_gid) == (uid, gid) and st.st_nlink == 1:
            continue
        try:
            efd = os.open(name, _PATH, dir_fd=fd)
        except FileNotFoundError:
            continue
        try:
            est = os.fstat(efd)  # the inode the descriptor holds: the one changed
            if stat.S_ISDIR(est.st_mode) or est.st_dev != dev or (
                    owners is not None and est.st_uid not in owners):
                continue  # swapped meanwhile: the walk's next look decides
            if stat.S_ISREG(est.st_mode) and est.st_nlink > 1:
                left.append(f"{os.path.join(where, name)} ({est.st_nlink} hard links)")
                continue
            if (est.st_uid, est.st_gid) != (uid, gid):
                _fchown_path(efd, uid, gid)
                changed += 1
        finally:
            os.close(efd)
    return subdirs, changed


def kill_uid(uid: int) -> list[int]:
    """SIGKILL every process running as ``uid`` (by pid, from ``/proc``): what a profile's
    gateway left behind must not write into its tree while it is given back (isolation
    switched off). Returns the pids signalled."""
    import signal

    killed = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as fh:
                line = next((x for x in fh if x.startswith(b"Uid:")), b"")
            if uid in (int(v) for v in line.split()[1:]):
                os.kill(int(name), signal.SIGKILL)
                killed.append(int(name))
        except (OSError, ValueError):
            continue
    return killed


def _identity(home: str, parts: list[str]) -> tuple[int, int] | None:
    """(st_dev, st_ino) of ``home/<parts…>`` (not followed), or None when it is missing."""
    fd = os.open(home, _DIR)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino
    finally:
        os.close(fd)


def _warn(message: str) -> None:
    sys.stderr.write(f"hermes-tasks: warning: {message}\n")


def main(argv: list[str]) -> int:
    create = "--create" in argv
    mark = "--mark" in argv
    argv = [a for a in argv if a != "--mark"]
    kill = prev = None
    if "--from" in argv:
        at = argv.index("--from")
        value = argv[at + 1] if at + 1 < len(argv) else ""
        del argv[at:at + 2]
        if not value.isdigit():
            sys.stderr.write("treeowner: --from needs the previous owner's uid\n")
            return 2
        prev = int(value)
    if "--kill-uid" in argv:
        at = argv.index("--kill-uid")
        value = argv[at + 1] if at + 1 < len(argv) else ""
        del argv[at:at + 2]
        if not value.isdigit() or int(value) < 1000:
            sys.stderr.write("treeowner: --kill-uid needs a uid of at least 1000\n")
            return 2
        kill = int(value)
    args = [a for a in argv if a != "--create"]
    if len(args) < 5 or not args[0].isdigit() or not args[1].isdigit() or \
            not all(c in "01234567" for c in args[2]) or any(
                not p or p in (".", "..") or "/" in p for p in args[4:]):
        sys.stderr.write("usage: python -m hermes_tasks.treeowner UID GID MODE HOME "
                         "PART... --from PREV [--create] [--kill-uid OLD] [--mark]\n")
        return 2
    uid, gid, mode, home, *parts = args
    where = os.path.join(home, *parts)
    if kill is not None and kill != int(uid):
        pids = kill_uid(kill)
        if pids:
            sys.stderr.write(f"hermes-tasks: stopped {len(pids)} process(es) of uid {kill} "
                             "left from the isolated profile\n")
    here = None
    if mark and len(parts) == 2 and parts[0] == "profiles":
        from . import uids

        try:
            here = _identity(home, parts)
            why = uids.converted_check(home, parts[1], int(uid), here, _warn) \
                if here is not None else None
        except OSError as exc:
            why = f"could not read {os.path.join(home, uids.FILE)!r}: {exc.strerror or exc}"
        if why:
            sys.stderr.write(f"hermes-tasks: {why}\n")
            return 78
    try:
        changed, left = convert(home, parts, int(uid), int(gid), int(mode, 8), create,
                                prev if prev is not None else kill)
    except OSError as exc:
        sys.stderr.write(f"hermes-tasks: could not give {where!r} to {uid}:{gid}: "
                         f"{exc.strerror or exc}"
                         + (f" at {exc.filename!r}" if isinstance(exc.filename, str) else "")
                         + "\n")
        return 78 if isinstance(exc, Foreign) else 1
    sys.stderr.write(f"hermes-tasks: gave {where!r} to {uid}:{gid} "
                     f"({changed} entries changed)\n")
    if here is not None:
        from . import uids

        try:
            uids.remember(home, parts[1], int(uid), here, _warn)
        except OSError as exc:  # the scandir's mark still guards this container's life
            _warn(f"could not record which directory profile {parts[1]} has: "
                  f"{exc.strerror or exc}")
    for item in left:
        sys.stderr.write(f"hermes-tasks: left alone: {item!r}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
