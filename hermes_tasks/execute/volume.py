"""Changes on the volume: a new profile directory, a deleted one, the recorded intent.

The volume is hostile input when root runs this (SPEC §10): directory descriptors opened
without following links, files created ``O_EXCL``/``O_NOFOLLOW``, owned by the service user.
"""

from __future__ import annotations

import datetime
import os

from .. import fsops, state, volfile
from ..errors import TaskError, UsageError
from ..inventory import Settings
from ..profiles import escape

SOUL = b"# SOUL\n\nThis profile was created by hermes-tasks. Describe its persona here.\n"


def owner(cfg: Settings, name: str | None = None) -> tuple[int, int]:
    """Who a file root writes belongs to: the service user, or in an isolated profile
    (SPEC §16) the uid its directory belongs to (only root gives one of that range)."""
    service = (cfg.service_uid, cfg.service_gid)
    if name is None or not cfg.profile_isolation or name == "default":
        return service
    from ..uids import DEFAULT_LIMIT

    try:
        with fsops.opened_dir(cfg.hermes_home, ("profiles", name)) as dfd:
            uid = os.fstat(dfd).st_uid
    except OSError:
        return service
    return (uid, uid) if cfg.profile_uid_base <= uid <= DEFAULT_LIMIT else service


def create_profile(cfg: Settings, name: str) -> None:
    """Make ``profiles/NAME/SOUL.md``; it appears whole or not at all, never replacing one."""
    try:
        with fsops.opened_dir(cfg.hermes_home, ("profiles", name), create_mode=0o755,
                              owner=owner(cfg)) as dfd:
            fsops.write_exclusive(dfd, "SOUL.md", SOUL, 0o644, owner=owner(cfg))
    except FileNotFoundError:  # a concurrent profile.delete took the directory away
        raise TaskError(f"no profile '{name}' left: it was deleted while being created; "
                        f"run `hermes-tasks profile.create {name}` again") from None


def remove_new_profile(cfg: Settings, name: str, warn=None) -> None:
    """Undo :func:`create_profile` after a failure: a failed create leaves nothing behind.

    The service user may have filled the new directory meanwhile: removed iteratively,
    never following a link; what cannot be removed is named (the next create or delete
    of the same name sees it) rather than raised.
    """
    try:
        with fsops.opened_dir(cfg.hermes_home, ("profiles",)) as pfd:
            fsops.remove_tree_at(pfd, name)
    except OSError as exc:
        if warn:
            warn(f"could not undo the creation of {cfg.hermes_home}/profiles/{name}: "
                 f"{volfile.why(exc)}; remove it by hand or with `hermes-tasks profile.delete "
                 f"{name} --purge`")


def dispose(cfg: Settings, name: str, purge: bool) -> str:
    """Move ``profiles/NAME`` whole into ``.trash/profiles/NAME.<UTC stamp>`` (then purge).

    Returns the name it got in the trash. The rename comes first even with ``purge``, so
    the profile disappears at once and an interrupted purge leaves nothing rediscoverable.
    """
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = f"{name}.{stamp}"
    with fsops.opened_dir(cfg.hermes_home, ("profiles",)) as pfd, \
            fsops.opened_dir(cfg.hermes_home, (".trash", "profiles"), create_mode=0o700,
                             owner=owner(cfg)) as tfd:
        try:
            os.rename(name, target, src_dir_fd=pfd, dst_dir_fd=tfd)
        except FileNotFoundError:
            raise UsageError(f"no profile '{name}' under {cfg.hermes_home}/profiles "
                             "(deleted meanwhile)") from None
        from .. import uids
        from ..report import warn

        uids.retire(cfg, name, warn)  # SPEC §16: never handed out again, even to NAME
        if purge:
            try:
                fsops.remove_tree_at(tfd, target)
            except OSError as exc:  # deleted already: what is left stays in the trash
                raise TaskError(
                    f"profile '{name}' was moved to {cfg.hermes_home}/.trash/profiles/{target} "
                    f"but could not be purged: {volfile.why(exc)}"
                    + (f" at {escape(exc.filename)}" if isinstance(exc.filename, str) else "")
                    + "; it stays in the trash (remove it by hand)") from None
    return target


def sweep(cfg: Settings, parts: tuple[str, ...], slot_path: str) -> list[str]:
    """Delete the previous container's gateway.pid/processes.json unless the gateway is up
    here (SPEC §4) or any host holds the profile's ownership lock (SPEC §13.2); return the
    names removed. Never follows a symlink."""
    from .. import ownership, svstatus
    from ..profiles import STALE_FILES

    try:
        with fsops.opened_dir(cfg.hermes_home, parts) as dfd:
            present = [n for n in STALE_FILES if fsops.lexists(dfd, n)]
            try:
                up = svstatus.read(slot_path).running
            except (OSError, ValueError):
                up = False
            if not present or up:
                return []
            if not ownership.lock_free(dfd):  # a gateway runs it, here or on another host
                return []
            for name in present:
                fsops.unlink_if_present(dfd, name)
    except FileNotFoundError:
        return []
    return present


def record(cfg: Settings, name: str, desired: str | None) -> None:
    """Record ``desired_state`` (None removes it) in the profile's gateway_state.json.

    A profile deleted meanwhile (its directory gone) is a one-line error naming it.
    """
    try:
        state.record_desired(cfg.hermes_home, name, desired, owner(cfg, name))
    except FileNotFoundError:
        raise TaskError(f"no profile '{name}' left under {cfg.hermes_home}/profiles: it was "
                        "deleted meanwhile") from None


def recorded(cfg: Settings, name: str) -> str | None:
    return state.read_desired(cfg.hermes_home, name)
