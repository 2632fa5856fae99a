"""Per-profile uids for isolated profiles (SPEC §16): the record and its stable allocation.

With ``profile_isolation`` on, :func:`for_settings` (called by ``facts.gather``) gives each
named profile its uid, recorded by root's executor under a lock on the record
(:class:`Pending`; docs/ISOLATION.md). Each named profile gets
one number used as both its uid and its gid (a private group), allocated from ``profile_uid_base`` and recorded in
``<hermes_home>/profile-uids.json``::

    {"profiles": {"alice": 20000, "bob": 20001}, "retired": [20002],
     "converted": {"alice": [2049, 131075]}}

``converted`` is the (st_dev, st_ino) of each profile directory root gave to its uid: a
directory found there later that is another one (the service user owns ``profiles/`` and
can swap entries) is refused, never converted, also after a container restart wiped the
scandir (:func:`converted_check`). It is trusted only from a root-owned record.

The record lives on the volume, which the service user (and the default profile's agent)
can write, so root reads it as hostile input (:func:`read_record`, :func:`parse_record`):
bounded, never through a symlink, regular files only, and any defect is a warning with a
safe default, never a traceback. A tampered record can at worst move allocations; it can
never give a profile a uid below the base, the uid of an account or of the service user,
or another profile's uid (duplicates are dropped and quarantined, never handed out again).

Allocation (:func:`allocate`, pure) never moves an allocation and never reuses a uid that
may still own files or processes: a deleted profile's uid is *retired*, never freed. Where
the record and the volume disagree, the owner of a profile's directory (which only root can
set) wins over the record.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
from collections.abc import Iterable, Mapping

from . import fsops, records, supervision, volfile
from .lock import try_lock
from .profiles import DEFAULT, escape, valid_name

FILE = "profile-uids.json"
FILE_LIMIT = 1 << 20  # ~40k entries: far beyond any max_slots
DEFAULT_BASE = 20000
# The highest uid handed out: 65534 is nobody/nogroup and 65535 is (uid_t)-1 in 16 bits;
# a rootless or user-namespaced container usually maps only 0..65535.
DEFAULT_LIMIT = 65533
# Seconds: the service user can hold the record's lock (as gateway-ports.json's); root
# tries briefly, then hands out no new uid this run.
LOCK_WAIT = 0.5


@records.record(frozen=True)
class Record:
    """A validated record: ``profiles`` name → uid, ``retired`` uids never handed out again,
    ``converted`` name → (st_dev, st_ino) of the directory root gave to its uid."""

    profiles: Mapping[str, int] = records.field(default_factory=dict)
    retired: frozenset[int] = frozenset()
    converted: Mapping[str, tuple[int, int]] = records.field(default_factory=dict)


@records.record(frozen=True)
class Allocation:
    """What :func:`allocate` decided.

    ``record`` is the record to write; ``uids`` the uid of each profile asked for (a profile
    with none is missing: no uid left); ``conflicts`` name → reason for a recorded uid that
    an account now uses too (kept, not moved: the caller fails that profile, naming both);
    ``changed`` whether ``record`` differs from the one read.
    """

    record: Record
    uids: Mapping[str, int]
    conflicts: Mapping[str, str]
    changed: bool


# --------------------------------------------------------------------------- reading


def read_record(home: str, warn, base: int = DEFAULT_BASE, limit: int = DEFAULT_LIMIT) -> Record:
    """The record in ``home``; missing → empty; unusable → a warning and empty."""
    path = escape(os.path.join(home, FILE))
    try:
        with fsops.opened_dir(home) as dfd:
            raw, why = volfile.read(dfd, FILE, FILE_LIMIT)
    except FileNotFoundError:
        return Record()
    except OSError as exc:
        why = "a symlink, not followed" if exc.errno == errno.ELOOP else volfile.why(exc)
        raw = None
    if why:
        warn(f"{path} is unusable ({why}); uids are allocated afresh")
        return Record()
    if raw is None:
        return Record()
    return parse_record(raw, lambda text: warn(f"{path}: {text}"), base, limit)


def parse_record(raw: bytes, warn, base: int = DEFAULT_BASE,
                 limit: int = DEFAULT_LIMIT) -> Record:
    """Validate the record's bytes (pure): every defect is one warning, never an exception.

    Kept: profile names that are valid, non-default, with an integer uid in
    ``[base, limit]`` that no other name in the record also claims. A uid claimed by two
    names goes to ``retired`` (both names lose it: which one is genuine cannot be known,
    and neither may be given to a third profile). Retired uids outside the range are dropped.
    """
    if not raw.strip():
        return Record()
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        warn("not valid JSON; uids are allocated afresh")
        return Record()
    if not isinstance(doc, dict):
        warn("not a JSON object; uids are allocated afresh")
        return Record()
    profiles = doc.get("profiles", {})
    if not isinstance(profiles, dict):
        warn("'profiles' is not an object; uids are allocated afresh")
        profiles = {}
    claims: dict[int, list[str]] = {}
    for name, uid in profiles.items():
        if not valid_name(name) or name == DEFAULT:
            warn(f"entry {escape(name)!s} is not a named profile; dropped")
            continue
        if not _in_range(uid, base, limit):
            warn(f"{name}'s uid {_show(uid)} is not an integer in {base}..{limit}; dropped")
            continue
        claims.setdefault(uid, []).append(name)
    kept: dict[str, int] = {}
    retired: set[int] = set()
    for uid, names in claims.items():
        if len(names) == 1:
            kept[names[0]] = uid
        else:
            warn(f"uid {uid} is recorded for {', '.join(sorted(names))}; none keeps it "
                 "and it is never handed out again")
            retired.add(uid)
    raw_retired = doc.get("retired", [])
    if not isinstance(raw_retired, list):
        warn("'retired' is not a list; ignored")
        raw_retired = []
    bad = [u for u in raw_retired if not _in_range(u, base, limit)]
    if bad:
        warn(f"{len(bad)} retired uid(s) not integers in {base}..{limit}; dropped")
    retired.update(u for u in raw_retired if _in_range(u, base, limit))
    retired.difference_update(kept.values())  # a live allocation wins over a stale retirement
    raw_conv = doc.get("converted", {})
    if not isinstance(raw_conv, dict):
        warn("'converted' is not an object; ignored")
        raw_conv = {}
    converted = {n: (v[0], v[1]) for n, v in raw_conv.items() if n in kept
                 and isinstance(v, list) and len(v) == 2
                 and all(type(x) is int and 0 <= x < 1 << 64 for x in v)}
    if len(converted) != len(raw_conv):
        warn(f"{len(raw_conv) - len(converted)} 'converted' entr(ies) not a recorded profile's "
             "[device, inode]; dropped")
    return Record(kept, frozenset(retired), converted)


def _in_range(uid: object, base: int, limit: int) -> bool:
    return type(uid) is int and base <= uid <= limit  # bool and float are not uids


def _show(value: object) -> str:
    text = json.dumps(value) if isinstance(value, (int, float, str, bool)) or value is None \
        else type(value).__name__
    return escape(text[:40])


# --------------------------------------------------------------------------- allocation


def allocate(names: Iterable[str], record: Record, taken: Mapping[int, str] | Iterable[int],
             base: int = DEFAULT_BASE, limit: int = DEFAULT_LIMIT, warn=None,
             owners: Mapping[str, int] | None = None) -> Allocation:
    """Give every profile in ``names`` a uid (pure).

    ``names`` are the named profiles on the volume (``default`` and invalid names are
    ignored: the default profile keeps the service user). ``taken`` holds uids that are
    not the record's to give: every account of ``/etc/passwd`` and group of ``/etc/group``,
    the service user's uid and gid, and any uid seen owning a process (optionally mapped
    to a description for messages). ``owners`` is what the volume says: the owner uid of
    each profile's top directory (only root can chown, so unlike the record it cannot be
    forged by the service user).

    * An owner in range, not taken and owning only that profile's directory wins over the
      record (the record is hostile; the tree is what the uid can actually reach).
    * Otherwise a recorded allocation never moves. If an account now has the same uid,
      the profile keeps it but is reported in ``conflicts``.
    * A profile no longer in ``names`` is retired: its uid is never handed out again
      (files or processes of it may remain), not even to the same name re-created. So is
      a uid that owns a profile tree but is not that profile's.
    * A new profile gets the lowest uid ≥ ``base`` that is neither taken, allocated nor
      retired; none left → a warning and no uid for it.
    """
    say = warn or (lambda _msg: None)
    taken_map = dict(taken) if isinstance(taken, Mapping) else dict.fromkeys(taken, "")
    wanted = sorted({n for n in names if valid_name(n) and n != DEFAULT})
    wanted_set = set(wanted)
    owned = {n: u for n, u in (owners or {}).items()
             if n in wanted_set and _in_range(u, base, limit) and u not in taken_map}
    owner_count: dict[int, int] = {}
    for uid in owned.values():
        owner_count[uid] = owner_count.get(uid, 0) + 1
    profiles = {n: u for n, u in owned.items() if owner_count[u] == 1}
    # A uid owning two profile trees belongs to neither: retired, both get fresh ones.
    retired = set(record.retired) | {u for u, c in owner_count.items() if c > 1}
    tree_uids = set(owned.values())
    conflicts: dict[str, str] = {}
    for name, uid in record.profiles.items():
        if name not in wanted_set:
            retired.add(uid)
        elif name in owned or uid in retired:
            continue  # its tree's owner decided, or the uid is out of use for good
        elif uid in tree_uids:
            say(f"uid {uid} recorded for profile {name} owns another profile's directory; "
                f"{name} gets a new uid")
        else:
            profiles[name] = uid
            if uid in taken_map:
                conflicts[name] = (f"uid {uid} of profile {name} is also "
                                   f"{taken_map[uid] or 'an account or group'} on this host")
    # Every in-range uid that owned a profile tree or was recorded stays in use for good,
    # whoever it belongs to now; a uid in use is not "retired".
    retired |= {u for u in (owners or {}).values() if _in_range(u, base, limit)}
    retired |= set(record.profiles.values())
    retired -= set(profiles.values())
    used = set(profiles.values()) | retired
    cursor = base  # used only grows: everything below the cursor is unavailable
    for name in wanted:
        if name in profiles:
            continue
        uid = cursor
        while uid <= limit and (uid in used or uid in taken_map):
            uid += 1
        cursor = uid
        if uid > limit:
            say(f"no free uid left for profile {name} in {base}..{limit}")
            continue
        profiles[name] = uid
        used.add(uid)
    # A directory stays marked converted while its profile keeps the uid it was given to.
    converted = {n: v for n, v in record.converted.items()
                 if n in profiles and profiles[n] == record.profiles.get(n)}
    new = Record(dict(sorted(profiles.items())), frozenset(retired), converted)
    changed = dict(new.profiles) != dict(record.profiles) or new.retired != record.retired \
        or dict(new.converted) != dict(record.converted)
    return Allocation(new, dict(new.profiles), conflicts, changed)


def to_json(record: Record) -> bytes:
    doc = {"profiles": dict(sorted(record.profiles.items())),
           "retired": sorted(record.retired)}
    if record.converted:
        doc["converted"] = {n: list(v) for n, v in sorted(record.converted.items())}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def taken_from_files(passwd: bytes, group: bytes) -> dict[int, str]:
    """uid/gid → ``account NAME``/``group NAME`` from ``/etc/passwd`` and ``/etc/group``
    text (root-owned files, but parsed defensively: a malformed line is skipped)."""
    out: dict[int, str] = {}
    for text, kind in ((passwd, "account"), (group, "group")):
        for line in text.decode("utf-8", "replace").splitlines():
            fields = line.split(":")
            if len(fields) < 3 or not fields[2].isdigit():
                continue
            out.setdefault(int(fields[2]), f"{kind} {escape(fields[0])}")
    return out


# --------------------------------------------------------------------------- wiring


def for_settings(settings, names: Iterable[str], owners: Mapping[str, int], warn
                 ) -> tuple[dict[str, int], dict[str, str], Pending | None]:
    """(profile → uid, profile → why its gateway must not start, what to record) for one
    run; reads only.

    ``names`` are the named profiles on the volume (and any about to be created),
    ``owners`` the owner uid of each one's top directory. Isolation on: every profile
    gets its allocation; a changed allocation comes with a :class:`Pending` the run
    records (the executor's ``AllocateUids``, under the lock, before any tree is
    converted; ``--check`` drops it). Isolation off: the profiles isolation once converted
    (recorded, or a tree a uid of the range owns), whose run scripts give their trees back
    to the service user.
    """
    base = settings.profile_uid_base
    names = [n for n in names if valid_name(n) and n != DEFAULT]
    record = read_record(settings.hermes_home, warn, base)
    if not settings.profile_isolation:
        back = {n: record.profiles[n] for n in names if n in record.profiles}
        wanted = set(names)  # a thousand profiles: a list here made it quadratic
        back.update({n: u for n, u in owners.items() if n in wanted and n not in back
                     and _in_range(u, base, DEFAULT_LIMIT) and u != settings.service_uid})
        if back:  # the old uid's processes are stopped: never an account's (hostile record)
            taken = accounts()
            back = {n: u for n, u in back.items()
                    if u not in taken and u not in (settings.service_uid, settings.service_gid)}
        return back, {}, None
    taken = accounts()
    taken.setdefault(settings.service_uid, "the service user")
    taken.setdefault(settings.service_gid, "the service group")
    alloc = allocate(names, record, taken, base, warn=warn, owners=owners)
    fresh = {u for n, u in alloc.uids.items() if record.profiles.get(n) != u}
    if fresh:  # a uid handed out now must not be one a process still runs as
        live = {u: "the uid of a running process" for u in live_uids() if u not in taken}
        if fresh & set(live):
            taken = {**taken, **live}
            alloc = allocate(names, record, taken, base, warn=warn, owners=owners)
    blocked = dict(alloc.conflicts)
    for name in names:
        if name not in alloc.uids:
            blocked[name] = f"no free uid left for profile {name} in {base}..{DEFAULT_LIMIT}"
    uids = {n: u for n, u in alloc.uids.items() if n not in blocked}
    pending = Pending(settings.hermes_home, base, tuple(names), dict(owners), taken, uids) \
        if alloc.changed else None
    return uids, blocked, pending


@records.record(frozen=True)
class Pending:
    """The uids a plan used, for the run to record in ``profile-uids.json`` (the
    executor's :class:`..changes.AllocateUids`, under the run's lock).

    Hosts sharing the volume share the record, not the scandir lock: :meth:`record` locks
    the file itself (0.5 s at most: the service user can hold it, as ``gateway-ports.json``),
    re-reads it and allocates again from what it holds then. A profile whose uid the run
    cannot stand behind (not recorded, or moved by another writer meanwhile) must not start
    this run; the next run retries. A uid already recorded, or owning the profile's tree
    (only root chowns), is stable and keeps working.
    """

    home: str
    base: int
    names: tuple[str, ...]
    owners: Mapping[str, int]
    taken: Mapping[int, str]
    uids: Mapping[str, int]

    def record(self, warn) -> dict[str, str]:
        """Lock, re-read, allocate, save; profile → why its gateway must not start."""
        where = f"{escape(self.home)}/{FILE}"
        try:
            with locked(self.home, warn, self.base) as (dfd, record):
                stable = self._stable(record)
                if dfd is None:
                    return self._unstable(stable, f"{where} is locked by another process "
                                          f"(tried {LOCK_WAIT:g} s); no new uid is handed "
                                          "out this run, the next run retries")
                names = set(self.names) | {n for n in record.profiles if _exists(dfd, n)}
                alloc = allocate(names, record, self.taken, self.base, warn=warn,
                                 owners=self.owners)
                moved = {n: f"the uid of profile {n} changed while it was recorded (another "
                            f"host allocated meanwhile); it starts at the next run"
                         for n, u in self.uids.items() if alloc.uids.get(n) != u}
                if alloc.changed:
                    fsops.write_atomic(dfd, FILE, to_json(alloc.record), 0o644, owner=(0, 0))
                return moved
        except OSError as exc:
            return self._unstable(self._stable(Record()),
                                  f"could not record the uids in {where}: {volfile.why(exc)}; "
                                  "no new uid is handed out this run, the next run retries")

    def _stable(self, record: Record) -> set[str]:
        return {n for n, u in self.uids.items()
                if record.profiles.get(n) == u or self.owners.get(n) == u}

    def _unstable(self, stable: set[str], why: str) -> dict[str, str]:
        return {n: why for n in self.uids if n not in stable}


def _exists(dfd: int, name: str) -> bool:
    """Whether ``profiles/NAME`` is a directory now (a profile another host just made)."""
    try:
        st = os.stat(os.path.join("profiles", name), dir_fd=dfd, follow_symlinks=False)
    except (OSError, ValueError):
        return False
    return stat.S_ISDIR(st.st_mode)


@contextlib.contextmanager
def locked(home: str, warn, base: int = DEFAULT_BASE):
    """``(home's fd, the record)`` with ``flock`` held on the record file (created, root's,
    when missing), re-read after locking; ``(None, the record read plainly)`` when another
    process holds the lock past :data:`LOCK_WAIT`. The file is replaced by rename on save,
    so a lock taken on a replaced file is dropped and taken again on the new one."""
    deadline = time.monotonic() + LOCK_WAIT
    with fsops.opened_dir(home) as dfd:
        for _ in range(8):  # each retry follows a rename: never spins forever
            try:
                fd = os.open(FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                             dir_fd=dfd)
            except FileNotFoundError:
                try:
                    fd = os.open(FILE, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o644, dir_fd=dfd)
                except FileExistsError:
                    continue
                if fsops.IS_ROOT:
                    os.fchown(fd, 0, 0)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                # a symlink: replaced by an empty record (never followed), then locked
                warn(f"{escape(home)}/{FILE} is unusable (a symlink, not followed); uids are "
                     "allocated afresh")
                fsops.write_atomic(dfd, FILE, b"", 0o644, owner=(0, 0))
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise OSError(errno.EINVAL, f"{FILE} is {volfile.kind(st.st_mode)}")
                if not supervision.wait_until(lambda fd=fd: try_lock(fd),
                                              deadline - time.monotonic(), 0.05):
                    yield None, _trusted(_parse_fd(fd, home, warn, base), st)
                    return
                try:
                    now = os.stat(FILE, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    now = None
                if now is None or (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
                    continue  # replaced while we waited: lock the new one
                yield dfd, _trusted(_parse_fd(fd, home, warn, base), st)
                return
            finally:
                os.close(fd)
        raise OSError(errno.EAGAIN, f"{FILE} kept being replaced")


def _parse_fd(fd: int, home: str, warn, base: int) -> Record:
    raw = os.pread(fd, FILE_LIMIT + 1, 0)
    if len(raw) > FILE_LIMIT:
        warn(f"{escape(home)}/{FILE} is unusable (too large); uids are allocated afresh")
        raw = b""
    return parse_record(raw, lambda text: warn(f"{escape(home)}/{FILE}: {text}"), base)


def _trusted(record: Record, st: os.stat_result) -> Record:
    """Conversion marks count only in root's own file: the service user can plant a record
    of its own (it owns the directory), never one owned by root."""
    return record if st.st_uid == 0 or not record.converted else \
        records.replace(record, converted={})


def converted_check(home: str, name: str, uid: int, here: tuple[int, int], warn
                    ) -> str | None:
    """Why ``profiles/NAME`` (whose (st_dev, st_ino) is ``here``) must not be given to
    ``uid``: root converted another directory of that name for it before (one line), or
    None."""
    with locked(home, warn) as (_dfd, record):
        was = record.converted.get(name)
    if was is None or record.profiles.get(name) != uid or tuple(was) == tuple(here):
        return None
    return (f"{escape(home)}/profiles/{escape(name)} is not the directory given to uid {uid} "
            f"(replaced?): not converted, not started; to give it to the profile anyway, "
            f"delete \"{escape(name)}\" under \"converted\" in {escape(home)}/{FILE}")


def remember(home: str, name: str, uid: int, here: tuple[int, int] | None, warn) -> None:
    """Record (``here``) or forget (None) which directory root gave to NAME's uid."""
    with locked(home, warn) as (dfd, record):
        if dfd is None:
            warn(f"{escape(home)}/{FILE} is locked by another process; which directory "
                 f"profile {escape(name)} has is not recorded this time")
            return
        converted = dict(record.converted)
        if here is not None and record.profiles.get(name) == uid:
            converted[name] = tuple(here)
        else:
            converted.pop(name, None)
        if converted != dict(record.converted):
            new = records.replace(record, converted=converted)
            fsops.write_atomic(dfd, FILE, to_json(new), 0o644, owner=(0, 0))


def retire(settings, name: str, warn) -> None:
    """A deleted profile's uid is retired at once (root, a real run, under the record's
    lock): re-created before the next reconcile, the name must not get it back (files or
    processes of it may remain)."""
    if not fsops.IS_ROOT:
        return
    if name not in read_record(settings.hermes_home, lambda _m: None,
                               settings.profile_uid_base).profiles:
        return  # nothing to retire: the lock would create the record (isolation never used)
    where = f"{escape(settings.hermes_home)}/{FILE}"
    try:
        with locked(settings.hermes_home, warn, settings.profile_uid_base) as (dfd, record):
            if name not in record.profiles:
                return
            if dfd is None:
                warn(f"{where} is locked by another process; the uid of profile {name} is "
                     "retired at the next reconcile")
                return
            kept = {n: u for n, u in record.profiles.items() if n != name}
            new = Record(kept, record.retired | {record.profiles[name]},
                         {n: v for n, v in record.converted.items() if n != name})
            fsops.write_atomic(dfd, FILE, to_json(new), 0o644, owner=(0, 0))
    except OSError as exc:
        warn(f"could not retire the uid of profile {name} in {where}: {volfile.why(exc)}")


def accounts() -> dict[int, str]:
    """Every uid and gid of this host's ``/etc/passwd`` and ``/etc/group`` (root's files)."""
    texts = []
    for path in ("/etc/passwd", "/etc/group"):
        try:
            with open(path, "rb") as fh:
                texts.append(fh.read(FILE_LIMIT * 8))
        except OSError:
            texts.append(b"")
    return taken_from_files(*texts)


def live_uids() -> set[int]:
    """The uids running processes have (owners of ``/proc/<pid>``)."""
    out = set()
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            try:
                out.add(os.stat(f"/proc/{name}").st_uid)
            except OSError:
                continue
    return out
