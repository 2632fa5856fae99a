"""Creating and deleting profiles on the volume (SPEC §7 ``profile.*``).

Slot changes go through :mod:`registrar` (directly as root, through the registrar slot
otherwise); both tasks check up front that such a change can happen, so they never leave
a profile half-created or half-deleted because of missing rights.
"""

from __future__ import annotations

import datetime
import os
import shutil

from . import control, fsops, ownership, placement, profiles, registrar, state
from .errors import TaskError, UsageError
from .inventory import Settings
from .report import Row
from .s6 import S6, S6Error, Timeout

SOUL = b"# SOUL\n\nThis profile was created by hermes-tasks. Describe its persona here.\n"
DOWN_WAIT_MS = 10000


def _check_name(name: str) -> None:
    if not profiles.valid_name(name):
        raise UsageError(f"invalid profile name '{profiles.escape(name)}': "
                         "names match [a-z0-9][a-z0-9_-]{0,63}")


def create(cfg: Settings, name: str, start: bool, check: bool, diff: bool) -> list[Row]:
    """Make ``profiles/NAME/SOUL.md`` if missing (never overwriting) and register its slot.

    The slot is registered as the profile's recorded state says (down for a new profile);
    ``start`` then starts it like ``gateway.start``, which records ``running``.
    """
    _check_name(name)
    slot = profiles.SLOT_PREFIX + name
    existed = profiles.profile_exists(cfg.hermes_home, name)
    here = placement.placed(name, cfg.gateway_profiles)
    if check and not here:
        return [_unplaced_row(cfg, name, existed, check)]
    if check:
        if existed:
            return registrar.converge(cfg, {name}, check=True, diff=diff)
        return [Row(slot, name, None, "started" if start else "registered", "changed",
                    f"would create profiles/{name}/SOUL.md and publish {slot}")]
    what = f"publishing {slot}"
    if here:
        registrar.check_available(cfg, what)
    if not existed:
        owner = (cfg.service_uid, cfg.service_gid)
        try:
            with fsops.opened_dir(cfg.hermes_home, ("profiles", name), create_mode=0o755,
                                  owner=owner) as dfd:
                # Appears whole or not at all, never replacing one (a crash mid-write must not
                # leave an empty SOUL.md that the next create takes for the user's).
                fsops.write_exclusive(dfd, "SOUL.md", SOUL, 0o644, owner=owner)
        except FileNotFoundError:  # a concurrent profile.delete took the directory away
            raise TaskError(f"no profile '{name}' left: it was deleted while being created; "
                            f"run `hermes-tasks profile.create {name}` again") from None
    if not here:  # SPEC §13.3: the directory, but no slot on this host
        return [_unplaced_row(cfg, name, existed, check)]
    rows = registrar.converge(cfg, {name}, diff=diff, what=what)
    if not rows and not profiles.profile_exists(cfg.hermes_home, name):
        raise TaskError(f"no profile '{name}' left: it was deleted while being created; "
                        f"run `hermes-tasks profile.create {name}` again")
    row = rows[0] if rows else Row(slot, name, None, "registered", "failed",
                                   "the reconcile published no slot for it")
    if not existed and row.result != "failed":
        row.result, row.message = "changed", f"created profiles/{name}; {row.message}"
    elif row.result == "ok":
        row.message = "profile already exists"
    if start and row.result != "failed":
        gw = control.target(cfg, name)
        control.await_supervisor(cfg, gw, 30)
        started = control.act(cfg, gw, control.START, wait=False, timeout=30)
        row.action = "started"
        if started.result != "ok":
            row.result = started.result
            row.message = started.message if started.result == "failed" else \
                f"{row.message}; started"
    return [row]


def _unplaced_row(cfg: Settings, name: str, existed: bool, check: bool) -> Row:
    """profile.create's row on a host that does not supervise ``name``."""
    why = f"{placement.reason(cfg.host_id)}: no slot registered here"
    if existed:
        return Row(None, name, None, "skipped", "skipped", why)
    verb = "would create" if check else "created"
    return Row(None, name, None, "skipped", "changed", f"{verb} profiles/{name}; {why}")


def delete(cfg: Settings, name: str, purge: bool, check: bool) -> list[Row]:
    """Stop and retire the slot, then move the profile whole to ``.trash`` (or purge it).

    The gateway is brought down and waited for before its directory moves; the slot is
    then removed with the safe sequence (down, dot-rename, ``-an``, wait, delete).
    """
    _check_name(name)
    if name == profiles.DEFAULT:
        raise UsageError("the default profile is the root hermes_home and cannot be deleted")
    if not profiles.profile_exists(cfg.hermes_home, name):
        raise UsageError(f"no profile '{name}' under {cfg.hermes_home}/profiles")
    slot = profiles.SLOT_PREFIX + name
    path = os.path.join(cfg.scandir, slot)
    where = "deleted" if purge else f"moved to {cfg.hermes_home}/.trash/profiles/"
    if check:
        return [Row(slot, name, None, "removed", "changed",
                    f"would stop and retire {slot}; profile would be {where}")]
    elsewhere = ownership.held_elsewhere(cfg.hermes_home, name, cfg.host_id)
    if elsewhere:
        raise TaskError(f"profile '{name}' is running on {elsewhere}: delete it there, or stop "
                        "it there first")
    registered = os.path.isdir(path)
    what = f"removing {slot}"
    if registered:
        registrar.check_available(cfg, what)
        # A standby on another host that takes the lock now must stay down (SPEC §13.1).
        if profiles.read_state(cfg.hermes_home, ("profiles", name), lambda _: None)[1]:
            state.record_desired(cfg.hermes_home, name, "stopped",
                                 (cfg.service_uid, cfg.service_gid))
        _stop(cfg, control.Gateway(name, slot, path))
    moved = _dispose(cfg, name, purge)
    where = "deleted" if purge else f"moved to {cfg.hermes_home}/.trash/profiles/{moved}"
    # Converge even when no slot was seen above: a concurrent profile.create may have
    # published one since, and only a reconcile under the lock can tell (no orphan slot).
    converge = registered or os.path.lexists(path) or registrar.may_change_slots(cfg)
    rows = registrar.converge(cfg, {name}, what=what) if converge else []
    for row in rows:
        if row.result != "failed":
            row.result, row.message = "changed", f"slot retired; profile {where}"
    return rows or [Row(slot, name, None, "removed", "changed", f"profile {where}")]


def _stop(cfg: Settings, gw: control.Gateway) -> None:
    """Bring the gateway down and wait (SIGKILL after 10 s), so nothing writes the profile."""
    s6 = S6(cfg.s6_bin_dir)
    if not s6.supervised(gw.path):
        return
    try:
        try:
            s6.svc(gw.path, "-wD", "-d", wait_ms=DOWN_WAIT_MS)
        except Timeout:
            s6.svc(gw.path, "-wD", "-k", wait_ms=DOWN_WAIT_MS)
    except S6Error as exc:
        raise TaskError(control.explain(exc, cfg, gw, control.STOP, DOWN_WAIT_MS / 1000)) from None


def _dispose(cfg: Settings, name: str, purge: bool) -> str:
    """Move ``profiles/NAME`` whole into ``.trash/profiles/NAME.<UTC stamp>`` (then purge).

    Returns the name it got in the trash. The rename comes first even with ``purge``, so
    the profile disappears at once and an interrupted purge leaves nothing rediscoverable.
    """
    owner = (cfg.service_uid, cfg.service_gid)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = f"{name}.{stamp}"
    with fsops.opened_dir(cfg.hermes_home, ("profiles",)) as pfd, \
            fsops.opened_dir(cfg.hermes_home, (".trash", "profiles"), create_mode=0o700,
                             owner=owner) as tfd:
        try:
            os.rename(name, target, src_dir_fd=pfd, dst_dir_fd=tfd)
        except FileNotFoundError:
            raise UsageError(f"no profile '{name}' under {cfg.hermes_home}/profiles "
                             "(deleted meanwhile)") from None
        if purge:
            shutil.rmtree(target, dir_fd=tfd)
    return target
