"""``python -m hermes_tasks.logdir HOME NAME [HOST]``: repair a logger's directories as root.

A volume carried over from an older image may hold ``logs/gateways`` owned by root; the
logger then cannot make its directory as the service user and exits 111 every second while
nothing is logged (hermes-agent #45258). A slot's ``log/run`` calls this, only when it sees
a root-owned directory, before it drops to the service user: ``logs/``, ``logs/gateways/``
(never recursively) and the profile's own log directory (and its host directory on a
shared volume), each given to the service user only while root owns it.

Root, on the user's volume: every directory is opened relative to the one before with
``O_NOFOLLOW``, and changed through that descriptor (``fchown``), so a symlink planted
anywhere on the way is never followed and a swap after the check changes nothing else
(the chown that became #71682's privilege escalation upstream).
"""

from __future__ import annotations

import os
import stat
import sys

_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def repair(home: str, parts: list[str], uid: int, gid: int) -> list[str]:
    """Give each root-owned directory of ``home/logs/gateways/<parts…>`` to uid:gid.

    Stops at the first missing one (the logger makes the rest as the service user).
    Returns the paths it changed.
    """
    changed = []
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        path = home
        for part in ["logs", "gateways", *parts]:
            try:
                nfd = os.open(part, _FLAGS, dir_fd=fd)
            except FileNotFoundError:
                break
            os.close(fd)
            fd = nfd
            path = os.path.join(path, part)
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and (uid, gid) != (0, 0):
                os.fchown(fd, uid, gid)
                changed.append(path)
    finally:
        os.close(fd)
    return changed


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5) or not argv[0].isdigit() or not argv[1].isdigit():
        sys.stderr.write("usage: python -m hermes_tasks.logdir UID GID HOME NAME [HOST]\n")
        return 2
    uid, gid, home, *parts = argv
    try:
        for path in repair(home, parts, int(uid), int(gid)):
            sys.stderr.write(f"hermes-tasks: gave {path!r} (root's) to {uid}:{gid}\n")
    except OSError as exc:
        sys.stderr.write(f"hermes-tasks: could not repair the log directories under "
                         f"{home!r}: {exc.strerror or exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
