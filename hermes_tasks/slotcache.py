"""Slots an earlier run read and found exactly as rendered, so a re-run stats them instead.

Reading every file of 1000 slots (7 files each: open, fstat, read, close) was the largest
part of an unchanged re-run (bench/PROFILE.md). A file's inode number and ``ctime`` change
with any write, truncate, chmod, chown, rename or replacement, and no one but the clock's
owner can set ``ctime``; so when a slot's files still have the (inode, ctime) they had
when a run read them and found them identical to the same rendered content (and mode),
they still hold that content. This is git's index rule, "racy" entries included:
a file is recorded only if its ``ctime`` is older than the read by :data:`MARGIN`, so a
write in the same clock tick as the read can never hide behind an unchanged ``ctime``.

One record per slot: a hash of its rendered files (path, mode, content), its down marker,
and the stat of each file and of the directories holding them at that read. A directory's
``ctime`` moves when an entry is added, removed or renamed in it, so an unchanged one also
vouches for its listing: no litter appeared, the down marker is as recorded.

The cache is ``.hermes-tasks.slots`` in the scandir (a dot-name s6-svscan ignores, on the
tmpfs wiped at every start), trusted under the render cache's rule: a regular file owned by
the euid, writable by nobody else, opened without following symlinks. Anything else is
ignored and every slot is read in full; losing it costs speed only.
"""

from __future__ import annotations

import contextlib
import json
import time

try:  # CPython's own BLAKE2: importing hashlib loads OpenSSL first (3 ms of every run)
    from _blake2 import blake2b
except ImportError:  # another Python
    from hashlib import blake2b

from . import fsops

NAME = ".hermes-tasks.slots"
FORMAT = 2
LIMIT = 4 << 20
MARGIN = 1_000_000_000  # ns; far above any filesystem's timestamp granularity


class SlotCache:
    """Per-slot signatures; :meth:`save` keeps what this run confirmed."""

    def __init__(self, scandir: str | None = None):
        self.scandir = scandir
        self._loaded: dict[str, str] = {}
        self._seen: dict[str, str] = {}
        self._checked: set[str] = set()

    @classmethod
    def load(cls, scandir: str) -> SlotCache:
        """The cache of ``scandir`` (empty when missing, untrusted or of another format)."""
        cache = cls(scandir)
        _, doc = fsops.load_trusted(scandir, NAME, LIMIT)
        if doc.get("format") == FORMAT:
            cache._loaded = fsops.strings(doc.get("slots"))
        return cache

    def known(self, slot: str) -> bool:
        return slot in self._loaded

    def matches(self, slot: str, signature: str) -> bool:
        """True when ``slot`` was confirmed with exactly this signature."""
        self._checked.add(slot)
        if self._loaded.get(slot) == signature:
            self._seen[slot] = signature
            return True
        return False

    def confirm(self, slot: str, signature: str) -> None:
        """Record a slot just read in full and found as rendered (see :func:`settled`)."""
        self._seen[slot] = signature

    def save(self, present) -> None:
        """Keep what this run confirmed, and the records of slots in ``present`` it did not
        look at (best effort: a failure costs speed only). Records of slots that are gone
        or no longer matched fall out.
        """
        keep = {n: s for n, s in self._loaded.items()
                if n in present and n not in self._checked}
        keep.update(self._seen)
        if self.scandir is None or keep == self._loaded:
            return
        data = json.dumps({"format": FORMAT, "slots": keep}, sort_keys=True,
                          separators=(",", ":")).encode()
        with contextlib.suppress(OSError):
            with fsops.opened_dir(self.scandir) as dfd:
                fsops.write_atomic(dfd, NAME, data, mode=0o600, durable=False)


def signature(spec, stats) -> str:
    """The hash of ``spec`` (its files' modes and content, its down marker) and of each file's
    and directory's (inode, ctime) as found (``stats``: slot-relative file paths, and
    directories as ``"log/"``).

    ``ctime`` moves with every change of content, size, mode or owner, and the inode with
    every replacement, so these two stand for the rest of the stat. A spec's ``key``, when
    set, stands for its files' content (hashing 7 KiB per slot would cost a fifth of what
    the cache saves).
    """
    head = "\0".join([f"{rel}:{st.st_ino}:{st.st_ctime_ns}" for rel, st in stats.items()]
                     + [f"{rel}:{mode}" for rel, mode in spec.modes()])
    head += f"\0down:{spec.down}"
    if spec.key is not None:
        return blake2b(f"{head}\0{spec.key}".encode(), digest_size=16).hexdigest()
    return blake2b(b"\0".join([head.encode(), *(f.content for f in spec.files.values())]),
                   digest_size=16).hexdigest()


def settled(stats, now_ns: int | None = None) -> bool:
    """True when every file's last change is at least :data:`MARGIN` before ``now``."""
    limit = (time.time_ns() if now_ns is None else now_ns) - MARGIN
    return all(st.st_ctime_ns < limit for st in stats.values())
