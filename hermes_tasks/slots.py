"""Facts about the slots already in the scandir: what each file holds, and its skeleton.

Reading only; the planner compares these facts with rendered :class:`SlotSpec` objects.
"""

from __future__ import annotations

import os
import stat
import time

from . import fsops, records, rendercache, slotcache
from .profiles import SLOT_PREFIX
from .render import REGISTRAR, SlotSpec
from .slotcache import SlotCache

# Control entries pre-seeded before publication (reference/s6.md §7): the service group
# gets supervise/ 0710 + control 0620 (commands and status); event/ stays root's alone,
# because s6-supervise writes through every ftrig1* entry in it, following symlinks.
SUPERVISE_MODE = 0o710
CONTROL_MODE = 0o620
EVENT_MODE = 0o700
# (slot-relative path, mode, type test, shared with the service group)
SKELETON = (("supervise", SUPERVISE_MODE, stat.S_ISDIR, True),
            ("supervise/control", CONTROL_MODE, stat.S_ISFIFO, True),
            ("event", EVENT_MODE, stat.S_ISDIR, False))
# A slot only root may control (the registrar): the same entries, root's alone.
PRIVATE_SKELETON = (("supervise", 0o700, stat.S_ISDIR, False),
                    ("supervise/control", 0o600, stat.S_ISFIFO, False),
                    ("event", EVENT_MODE, stat.S_ISDIR, False))
MAX_FILE = 1 << 20
# Staging and retirement names we create; any left at the start of a run are stale.
STAGING_SUFFIXES = (".tmp", ".new", ".old", ".removing")
# Restarts an update still owes, written before the update's files and removed once its
# handlers ran, so a run interrupted (or failing) in between is completed by the next
# one. Under data/, the one name s6 promises never to use (reference/s6.md §2).
PENDING = "data/restart-pending"
PENDING_NAME = PENDING.rpartition("/")[2]
PENDING_TOKENS = frozenset({"gateway", "gateway-up", "logger"})
# fsops.write_atomic's temp files (".<name>.hermes-tasks.tmp"): one left in a slot by an
# interrupted run is litter for the next run to remove, even when its target is right.
TMP_SUFFIX = ".hermes-tasks.tmp"
# An interrupted write of the render cache or the slot cache.
CACHE_LITTER = (f".{rendercache.NAME}{TMP_SUFFIX}", f".{slotcache.NAME}{TMP_SUFFIX}")


@records.record
class SlotFacts:
    """One scandir entry as found.

    ``files`` maps each relative path that was asked for to ``(bytes, mode)`` or None when
    missing. ``structural`` names a reason the slot cannot be updated in place (not a real
    directory, no ``log/`` where one is wanted, an entry of the wrong type). ``pending``
    holds the restarts an earlier run left owed (:data:`PENDING`).
    """

    name: str
    path: str
    files: dict[str, tuple[bytes, int] | None]
    down: bool
    skeleton_ok: bool
    structural: str | None = None
    pending: frozenset[str] = frozenset()
    litter: tuple[str, ...] = ()  # slot-relative temp files left by an interrupted run


def owner(gid: int, shared: bool = True) -> tuple[int, int]:
    """Owner of a skeleton entry: root and the service group (``shared``) or root alone.

    Not root, everything is the caller's own (a container run as one user).
    """
    if _EUID != 0:
        return (_EUID, os.getegid())
    return (0, gid) if shared else (0, 0)


def gateway_profiles(names) -> list[str]:
    """The profile of every gateway slot among slot ``names`` ("registered": the one
    definition, for the plan and for the tasks' own checks), in the order given."""
    return [n[len(SLOT_PREFIX):] for n in names if n.startswith(SLOT_PREFIX)]


def managed_names(scandir: str) -> tuple[list[str], list[str]]:
    """Our visible slot names (``gateway-*``, the registrar) and our stale dot-entries.

    Stale: staging and retired slot copies, and the temp file of a render-cache write,
    all left by an interrupted run.
    """
    slots, stale = [], []
    try:
        names = os.listdir(scandir)
    except FileNotFoundError:
        return [], []
    for name in names:
        if name in CACHE_LITTER:
            stale.append(name)
        elif name.startswith(("." + SLOT_PREFIX, "." + REGISTRAR)):
            if name.endswith(STAGING_SUFFIXES):
                stale.append(name)
        elif name.startswith(SLOT_PREFIX) or name == REGISTRAR:
            slots.append(name)
    return sorted(slots), sorted(stale)


def open_slot(path: str) -> int:
    """The slot directory's fd; FileNotFoundError when absent, OSError when not a real
    directory (a symlink, a file): see :func:`not_a_directory`."""
    return os.open(path, _DIR)


def not_a_directory(spec: SlotSpec, path: str) -> SlotFacts:
    """The facts of a slot name that is a symlink or a file (ELOOP, ENOTDIR)."""
    return SlotFacts(spec.name, path, {}, False, False, structural="is not a real directory")


def read_at(dfd: int, path: str, spec: SlotSpec, gid: int,
            cache: SlotCache | None = None) -> SlotFacts:
    """Facts about the slot open as ``dfd`` (at ``path``), read for comparison.

    Everything is read relative to the slot's directory fd: at 1000 slots, path joins
    and lookups from the root were a third of an unchanged re-run. With ``cache``, a slot
    whose files and directories show by their stat that nothing changed since a run found
    it exactly as rendered is not listed or read again (:mod:`.slotcache`); a slot read in
    full and found as rendered is recorded there. The skeleton is checked every time.
    """
    facts = SlotFacts(spec.name, path, {}, False, False)
    if not _from_cache(dfd, spec, facts, cache):
        now = time.time_ns()
        stats = _dir_stats(dfd, spec) if cache is not None else None
        listed = _read_listed(dfd, spec, facts, stats)
        if listed is None:
            return facts
        same = all(facts.files[r] == (f.content, f.mode) for r, f in spec.files.items())
        if same:
            facts.files = spec.found()  # the bytes read are the rendered ones: keep none
        if (stats is not None and listed and not facts.litter and same
                and facts.down == spec.down and len(stats) == len(spec.files) + len(_dirs(spec))
                and slotcache.settled(stats, now)):
            cache.confirm(spec.name, slotcache.signature(spec, stats))
    facts.skeleton_ok, wrong = _skeleton_state(dfd, skeleton(spec.logged, spec.shared), gid)
    if wrong:
        facts.structural = f"{wrong} has the wrong type"
    return facts


def _read_listed(dfd: int, spec: SlotSpec, facts: SlotFacts, stats: dict | None) -> bool | None:
    """List the slot and read every file of ``spec`` into ``facts``; None when it is
    structurally wrong (``facts.structural`` says how), else whether no restart-pending
    file is there at all (one with no valid token reads as nothing pending, yet it could
    be rewritten in place unseen). ``stats`` collects files' stats."""
    # One listing answers "down?", "log/?", "data/?" and where litter may lie.
    names = os.listdir(dfd)
    log_names = _list_sub(dfd, "log") if "log" in names else None
    if spec.logged and log_names is None:
        facts.structural = "has no log/ directory"
        return None
    for rel in spec.files:
        try:
            facts.files[rel] = _read_file(dfd, rel, stats)
        except IsADirectoryError:
            facts.structural = f"{rel} is not a regular file"
            return None
        except NotADirectoryError:
            facts.structural = f"{rel.rpartition('/')[0]} is not a directory"
            return None
    facts.down = "down" in names
    data_names = (_list_sub(dfd, "data") if "data" in names else None) or []
    if PENDING_NAME in data_names:
        facts.pending = _read_pending(dfd)
    facts.litter = tuple(sorted(_litter("", names) + _litter("log/", log_names or [])
                                + _litter("data/", data_names)))
    return PENDING_NAME not in data_names


def _dirs(spec: SlotSpec) -> list[str]:
    """The slot's directories that hold ``spec``'s files (and ``log/``), slot first."""
    found = {rel.rpartition("/")[0] for rel in spec.files} | ({"log"} if spec.logged else set())
    return sorted(found)


def _dir_stats(dfd: int, spec: SlotSpec) -> dict[str, os.stat_result] | None:
    """The stat of each of :func:`_dirs` (keyed ``"<dir>/"``), or None when one is not a
    real directory. Taken before listing them: an entry added or removed later moves
    their ``ctime``."""
    out = {}
    for rel in _dirs(spec):
        try:
            st = os.stat(rel, dir_fd=dfd, follow_symlinks=False) if rel else os.fstat(dfd)
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
        out[rel + "/"] = st
    return out


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_EUID = os.geteuid()


def skeleton(logged: bool, shared: bool = True) -> tuple:
    """The control entries of a slot (and of its ``log/``), slot-relative."""
    return _SKELETONS[logged, shared]


_SKELETONS = {(logged, shared): tuple(
    (prefix + rel, *rest) for prefix in (("", "log/") if logged else ("",))
    for rel, *rest in (SKELETON if shared else PRIVATE_SKELETON))
    for logged in (False, True) for shared in (False, True)}


def _list_sub(dfd: int, name: str) -> list[str] | None:
    """Names in the slot's subdirectory ``name``; None when it is not a real directory."""
    try:
        fd = os.open(name, _DIR, dir_fd=dfd)
    except OSError:
        return None
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def _litter(prefix: str, names: list[str]) -> list[str]:
    """Our temp files among ``names``, as slot-relative paths."""
    return [prefix + n for n in names if n.endswith(TMP_SUFFIX) and n.startswith(".")]


def _skeleton_state(dfd: int, entries: tuple, gid: int) -> tuple[bool, str | None]:
    """(all as planned, the first entry of the wrong type or None).

    A missing entry or a wrong mode/owner is repaired in place; an entry of the wrong type
    (``supervise`` a file or symlink, ``control`` not a FIFO) needs a fresh slot.
    """
    ok = True
    for rel, mode, kind, shared in entries:
        try:
            st = os.stat(rel, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            ok = False
            continue
        except NotADirectoryError:
            return False, rel.rpartition("/")[0]
        if not kind(st.st_mode):
            return False, rel
        if stat.S_IMODE(st.st_mode) != mode or (st.st_uid, st.st_gid) != owner(gid, shared):
            ok = False
    return ok, None


def _read_pending(dfd: int) -> frozenset[str]:
    """The restarts recorded in ``<slot>/data/restart-pending`` (empty when none)."""
    try:
        content, _ = _read_file(dfd, PENDING) or (b"", 0)
    except (IsADirectoryError, NotADirectoryError):
        return frozenset()
    words = content.decode("ascii", "replace").split()
    return frozenset(w for w in words if w in PENDING_TOKENS)


def _from_cache(dfd: int, spec: SlotSpec, facts: SlotFacts, cache: SlotCache | None) -> bool:
    """Fill ``facts`` from ``spec`` when the cache vouches for the slot; else False.

    Vouched: every file and directory has the stat it had when a run found the slot exactly
    as ``spec`` (files, down marker, no litter, nothing pending), so the listings and bytes
    are still those.
    """
    if cache is None or not cache.known(spec.name):
        return False
    stats = _dir_stats(dfd, spec)
    if stats is None:
        return False
    for rel in spec.files:
        try:
            st = os.stat(rel, dir_fd=dfd, follow_symlinks=False)
        except OSError:
            return False  # missing or worse: the full read says what it is
        if not stat.S_ISREG(st.st_mode) or st.st_uid != _EUID:
            return False
        stats[rel] = st
    if not cache.matches(spec.name, slotcache.signature(spec, stats)):
        return False
    facts.files = spec.found()  # exactly the rendered files, never made here
    facts.down = spec.down
    return True


def _read_file(dfd: int, rel: str, stats: dict | None = None) -> tuple[bytes, int] | None:
    """``(bytes, mode)`` of our regular file ``rel``; ``(b"", -1)`` for anything else.

    ``stats`` collects the ``fstat`` of each of our regular files read.
    """
    try:
        fd = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise  # a parent is not a directory: structural
    except OSError:
        return (b"", -1)  # a symlink or unreadable: differs from anything we render
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(rel)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != _EUID:
            return (b"", -1)  # foreign owner or type: rewrite it as ours
        content = fsops.read_fd(fd, MAX_FILE, st.st_size)
        if stats is not None:
            stats[rel] = st
        return content, stat.S_IMODE(st.st_mode)
    finally:
        os.close(fd)
