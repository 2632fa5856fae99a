"""Profiles on the volume and their persisted state (SPEC §4).

Reading only: :func:`discover` lists profiles and skipped entries with the state that
decides whether each gateway auto-starts. The state file itself is :mod:`state`'s.
"""

from __future__ import annotations

import os
import stat

from . import fsops, records, state
from .names import DEFAULT, SLOT_PREFIX, escape, valid_name
from .names import profile_parts as profile_parts  # profiles.profile_parts, for callers
from .state import STATE_FILE

STALE_FILES = ("gateway.pid", "processes.json")


@records.record(frozen=True)
class Profile:
    """A profile that gets a slot.

    ``parts`` locate its directory below ``hermes_home`` (empty for ``default``);
    ``prior_state`` is the state value that decided, verbatim, or None.
    """

    name: str
    parts: tuple[str, ...]
    prior_state: str | None
    autostart: bool
    # Stale runtime files (STALE_FILES) seen in its directory, for the sweep to consider.
    stale: bool = records.field(default=False, compare=False)
    # The recorded desired_state (None when the state was decided by gateway_state or absent).
    recorded: str | None = records.field(default=None, compare=False)

    @property
    def slot(self) -> str:
        return SLOT_PREFIX + self.name


@records.record(frozen=True)
class Skipped:
    """A directory that looks like a profile but gets no slot, and why."""

    label: str  # raw (unescaped) name as shown in reports, e.g. "profiles/default"
    reason: str


def read_state(home: str, parts: tuple[str, ...], warn, dfd: int | None = None,
               stats: dict | None = None) -> tuple[str | None, bool, str | None]:
    """Read a profile's state without following symlinks; problems become warnings.

    ``dfd``, when given, is the profile directory already opened (discovery's hot path);
    ``stats``, a dict, then receives the state file's ``fstat``.
    Returns (prior_state, autostart, the recorded desired_state or None).
    """
    if dfd is not None:
        doc = state.read_at(dfd, stats)
    else:
        try:
            with fsops.opened_dir(home, parts) as fd:
                doc = state.read_at(fd)
        except FileNotFoundError:
            doc = state.NONE
        except OSError as exc:
            doc = state.GatewayState(problem=str(exc.strerror or exc), unreadable=True)
    if doc.problem:
        where = escape(os.path.join(home, *parts, STATE_FILE))
        if doc.unreadable:
            warn(f"could not read {where}: {doc.problem}; treating as no prior state")
        else:
            warn(f"{where} {doc.problem}; treating as no prior state")
    return doc.prior_state, doc.autostart, None if doc.problem else doc.desired_state


def discover(home: str, warn, each=None, cache=None) -> tuple[list[Profile], list[Skipped]]:
    """All profiles (``default`` first, then named ones by name) and skipped entries.

    ``warn(message)`` receives one line per skipped or unreadable thing. Entries of
    ``profiles/`` without a ``SOUL.md`` are ignored silently. ``each(name, dfd)``, when
    given, is called for every profile with its directory open, to read more of it
    without opening it again. ``cache`` (a :class:`.volcache.VolumeCache`) vouches
    for profiles an earlier run read, unchanged since: they are not read again;
    ``each`` is then called as ``each(name, dfd, entry)`` with the profile's
    :class:`.volcache.Entry` (to take its own part from, or note it there).
    """
    try:
        with fsops.opened_dir(home) as hfd:
            entry = cache.open("", hfd) if cache is not None else None
            profiles = [_profile(home, DEFAULT, (), hfd, warn, entry)]
            _each(each, DEFAULT, hfd, entry, cache)
    except FileNotFoundError:  # no volume yet: the default slot still registers, down
        return [Profile(DEFAULT, (), None, False)], []
    skipped: list[Skipped] = []
    try:
        pfd = fsops.open_dir(home, ("profiles",))
    except FileNotFoundError:
        return profiles, skipped
    except OSError as exc:
        warn(f"{escape(os.path.join(home, 'profiles'))}: {exc.strerror}; no named profiles read")
        return profiles, skipped
    try:
        with os.scandir(pfd) as it:
            entries = sorted((e.name, e.is_symlink()) for e in it)
        for name, is_link in entries:
            reason, dfd, entry = _open_profile(pfd, name, is_link, cache)
            try:
                if reason == "":
                    continue  # not a profile at all
                if reason is None and name == DEFAULT:
                    reason = "collides with the reserved root-profile slot gateway-default"
                    name = "profiles/default"
                elif reason is None and not valid_name(name):
                    reason = "invalid profile name (must match [a-z0-9][a-z0-9_-]{0,63})"
                if reason:
                    warn(f"skipping profile {escape(name)}: {reason}")
                    skipped.append(Skipped(name, reason))
                    continue
                profiles.append(_profile(home, name, ("profiles", name), dfd, warn, entry))
                _each(each, name, dfd, entry, cache)
            finally:
                if dfd is not None:
                    os.close(dfd)
    finally:
        os.close(pfd)
    return profiles, skipped


def _each(each, name: str, dfd: int, entry, cache) -> None:
    if cache is None:
        if each:
            each(name, dfd)
        return
    if each:
        each(name, dfd, entry)
    cache.done(entry)


def _profile(home: str, name: str, parts: tuple[str, ...], dfd: int, warn,
             entry=None) -> Profile:
    """A profile read through its open directory: state, and whether stale files lie there
    (from ``entry`` when the cache vouches for it, else read and noted there)."""
    if entry is not None and entry.hit:
        stale, value, autostart, recorded = entry.record[2]
        return Profile(name, parts, value, autostart, stale=stale, recorded=recorded)
    if entry is not None:
        warn = _noting(entry, warn)
    stale = any(fsops.lexists(dfd, n) for n in STALE_FILES)
    value, autostart, recorded = read_state(home, parts, warn, dfd,
                                            entry.files if entry is not None else None)
    if entry is not None:
        entry.profile = [stale, value, autostart, recorded]
    return Profile(name, parts, value, autostart, stale=stale, recorded=recorded)


def _noting(entry, warn):
    """``warn`` that also marks ``entry`` as read with a warning (never recorded)."""
    def noted(message: str) -> None:
        entry.clean = False
        warn(message)
    return noted


def _open_profile(pfd: int, name: str, is_link: bool,
                  cache=None) -> tuple[str | None, int | None, object]:
    """(None, the open dir fd, its cache entry or None) for a usable profile dir;
    ("", None, None) for "not a profile"; (a skip reason, None, None) otherwise. The
    caller closes the fd. A directory the cache vouches for holds the same ``SOUL.md``."""
    if is_link:
        return "the profile directory is a symlink; not followed", None, None
    try:
        dfd = os.open(name, fsops.DIR_FLAGS, dir_fd=pfd)
    except OSError:
        return "", None, None  # a plain file or vanished: not a profile
    entry = None
    if cache is not None:
        try:
            entry = cache.open("profiles/" + name, dfd)
        except BaseException:
            os.close(dfd)
            raise
        if entry.hit:
            return None, dfd, entry
    try:
        st = os.stat("SOUL.md", dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        reason = ""
    except OSError as exc:
        reason = f"cannot inspect SOUL.md: {exc.strerror}"
    else:
        reason = None if stat.S_ISREG(st.st_mode) else "SOUL.md is not a regular file"
    if reason is not None:
        os.close(dfd)
        return reason, None, None
    return None, dfd, entry


def _soul_problem(pfd: int, name: str, is_link: bool) -> str | None:
    """None for a usable profile dir, "" for "not a profile", else a skip reason."""
    reason, dfd, _ = _open_profile(pfd, name, is_link)
    if dfd is not None:
        os.close(dfd)
    return reason


def profile_exists(home: str, name: str) -> bool:
    """True for ``default`` and for a named profile directory holding a regular SOUL.md."""
    if name == DEFAULT:
        return True
    try:
        with fsops.opened_dir(home, ("profiles",)) as pfd:
            return _soul_problem(pfd, name, os.path.islink(os.path.join(home, "profiles", name))) is None
    except OSError:
        return False
