"""Profiles an earlier run read in full, so a re-run (or a restarted container's boot)
stats them instead of reading them again.

Discovering 1000 profiles read each one's ``SOUL.md``, stale runtime files, state file,
``.env`` and ``config.yaml``: 12 system calls and a JSON parse per profile, a third of
an unchanged re-run (bench/PROFILE.md). What discovery takes from a profile depends
only on which entries its directory holds and on the bytes of the files it reads; so
the slot cache's rule (:mod:`.slotcache`) applies:

* a directory whose (device, inode, ``ctime``, ``mtime``, size) is unchanged has had no
  entry added, removed or renamed: ``SOUL.md`` is the same regular file, the stale files
  and the absent ``.env``/``config.yaml``/state file are as they were;
* a file whose (device, inode, ``ctime``, ``mtime``, size) is unchanged holds the bytes it
  held: nobody but the clock's owner sets ``ctime``, and a write(2) moves it. Its stat is
  taken through an open, as the read it replaces would (close-to-open on NFS). Not a
  store through a shared mapping, which the kernel may leave unstamped: whoever can do
  that to a profile's file could write the same bytes anyway, so a stale value is one
  that file's owner chose; root's own facts (owners, warnings) are never cached.

A profile is recorded only when every one of those stats is older than the read by
:data:`.slotcache.MARGIN` (a change in the same clock tick cannot hide), and only when
its read gave no warning (a warning is said again at every run, so such a profile is
read in full each time). The derived values kept are the profile's state (prior state,
autostart, recorded ``desired_state``), whether stale files lie there, and its port facts.

The cache is ``.hermes-tasks.volume`` next to the render cache in ``render_cache_dir``
(:func:`.rendercache.location`; kept by a restarted container; without one there is no
volume cache: the scandir holds only what it always held), trusted under the render
cache's rule: a regular file owned by the euid, writable by nobody else, in a
directory that is ours alone, opened without following symlinks. Anything else is
ignored and every profile is read in full; losing it costs speed only. It names the
home it describes and the code that derived it, so another home or another version of
the parsers never uses it.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time

from . import fsops, slotcache

NAME = ".hermes-tasks.volume"
FORMAT = 2
LIMIT = 8 << 20
# A record is a few hundred bytes; one longer holds values the volume's writer chose (a
# 256 KiB .env value, a 1 MiB port string): such a profile is read in full every run, so
# whoever fills the volume cannot grow root's file or its memory through it.
RECORD_LIMIT = 2048
# The profile files whose bytes discovery reads (the others it only looks for).
READ = ("gateway_state.json", ".env", "config.yaml")
_READ = frozenset(READ)
# Raw config values kept as JSON gives them back exactly (YAML can hold more: dates...).
_PLAIN = (str, int, float, bool, type(None))


def _key(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_ctime_ns}:{st.st_mtime_ns}:{st.st_size}"


def code_stamp() -> list:
    """What derives the values kept: this module and the parsers it keeps results of."""
    from . import __version__, ports, profiles, state, volfile

    stamp: list = [FORMAT, __version__]
    for mod in (sys.modules[__name__], ports, profiles, state, volfile):
        stamp.append(fsops.digest_file(mod.__file__))  # by content, as the render cache's
    return stamp


class Entry:
    """One profile directory as this run reads it: vouched for (``record``) or read in
    full (its parts are then noted here, to be recorded if settled)."""

    __slots__ = ("name", "dir", "record", "raw", "files", "profile", "ports", "clean")

    def __init__(self, name: str, dir_stat: os.stat_result, record: list | None = None,
                 raw: str | None = None):
        self.name = name
        self.dir = dir_stat
        # when vouched: [dir key, file keys, profile part, ports part], from ``raw``
        self.record = record
        self.raw = raw
        self.files: dict[str, os.stat_result] = {}
        self.profile: list | None = None
        self.ports: list | None = None
        self.clean = True  # no warning while reading it

    @property
    def hit(self) -> bool:
        return self.record is not None


class VolumeCache:
    """Records of profile directories, by profile name; :meth:`save` keeps this run's."""

    def __init__(self, directory: str | None = None, home: str | None = None,
                 stamp: list | None = None):
        self.directory = directory
        self.home = home
        self.stamp = stamp
        self._loaded: dict[str, list] | None = {}
        self._seen: dict[str, list] = {}
        self._now = time.time_ns()
        self._size = 0  # of the records kept: the saved file stays under LIMIT

    @classmethod
    def load(cls, directory: str, home: str) -> VolumeCache:
        """The cache kept in ``directory`` for ``home`` (empty when missing, untrusted,
        for another home or for other code)."""
        cache = cls(directory, home, code_stamp())
        trusted, doc = fsops.load_trusted(directory, NAME, LIMIT)
        if trusted is False:
            cache.directory = None  # never written either
        elif (doc.get("stamp") == cache.stamp and doc.get("home") == home
              and isinstance(doc.get("profiles"), dict)):
            cache._loaded = doc["profiles"]
        return cache

    def open(self, name: str, dfd: int) -> Entry:
        """The entry of profile ``name`` open as ``dfd``: vouched for when its directory
        and every file it read have the stat recorded (one ``fstat``, and an open and
        ``fstat`` of each file that was there: no read, no parse)."""
        st = os.fstat(dfd)
        raw = self._loaded.get(name)
        if type(raw) is not str:
            return Entry(name, st)
        head, _, rest = raw.partition("\n")
        files, _, body = rest.partition("\n")
        if head != _key(st):
            return Entry(name, st)
        for item in files.split():
            fname, _, key = item.partition("=")
            if fname not in _READ:
                return Entry(name, st)
            fst = _opened_stat(dfd, fname)
            if fst is None or not stat.S_ISREG(fst.st_mode) or _key(fst) != key:
                return Entry(name, st)
        try:
            part = json.loads(body)
        except (ValueError, RecursionError):
            return Entry(name, st)
        if not _valid(part):
            return Entry(name, st)
        return Entry(name, st, [head, files, part[:4], part[4:]], raw)

    def done(self, entry: Entry) -> None:
        """Keep ``entry`` for the next run: as vouched, or as read now when complete,
        without a warning, and settled."""
        if entry.raw is not None:
            self._seen[entry.name] = entry.raw
            self._size += len(entry.raw)
            return
        if not entry.clean or entry.profile is None or entry.ports is None:
            return
        stats = [entry.dir, *entry.files.values()]
        limit = self._now - slotcache.MARGIN
        if any(s.st_ctime_ns >= limit for s in stats):
            return
        # One string a profile: "<dir key>\n<file>=<key> ...\n<JSON>" (a thousand nested
        # lists of big integers took 3.5 MiB to load; the strings, a tenth of it).
        files = " ".join(f"{f}={_key(s)}" for f, s in sorted(entry.files.items()))
        body = json.dumps([*entry.profile, *entry.ports], separators=(",", ":"))
        record = f"{_key(entry.dir)}\n{files}\n{body}"
        # ASCII (json.dumps escapes the rest), so at most twice as long once saved
        if len(record) <= RECORD_LIMIT and self._size + len(record) <= LIMIT // 2:
            self._seen[entry.name] = record
            self._size += len(record)

    def finish(self) -> None:
        """Discovery is over: hold on only to what :meth:`save` will write (nothing when
        every profile was found as loaded), not to a thousand records for the whole run."""
        if self._seen == self._loaded:
            self.directory = None  # nothing to write
            self._seen = {}
        self._loaded = None  # whatever this run saw differs from it

    def save(self) -> None:
        """Keep the records of the profiles this run saw (best effort: a failure costs
        speed only). Profiles gone or changed since fall out."""
        if self.directory is None or self._seen == self._loaded:
            return
        data = json.dumps({"stamp": self.stamp, "home": self.home, "profiles": self._seen},
                          sort_keys=True, separators=(",", ":")).encode()
        fsops.save_trusted(self.directory, NAME, data, LIMIT)


def _opened_stat(dfd: int, name: str) -> os.stat_result | None:
    """The ``fstat`` of ``name`` as an open (not a path ``stat``): on a shared volume (NFS)
    an open revalidates the file's attributes with the server (close-to-open), as the
    full read it stands for would; a ``stat`` may answer from the client's cache."""
    try:
        fd = os.open(name, _FILE, dir_fd=dfd)
    except OSError:
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _valid(part) -> bool:
    """A record's JSON of the shape :meth:`VolumeCache.done` writes (the file is ours
    alone, but an old or damaged one must still never raise)."""
    try:
        stale, _, autostart, _, env, config = part
    except (TypeError, ValueError):
        return False
    return (type(stale) is bool and type(autostart) is bool and type(env) is dict
            and all(type(v) is str for v in env.values()) and type(config) is dict
            and all(type(c) is list and len(c) == 4 for c in config.values()))


def plain(value) -> bool:
    """True when JSON keeps ``value`` exactly (a raw config value may be cached)."""
    return type(value) in _PLAIN and (not isinstance(value, float) or value == value
                                      and value not in (float("inf"), float("-inf")))
