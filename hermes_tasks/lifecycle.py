"""Creating and deleting profiles on the volume (SPEC §7 ``profile.*``)."""

from __future__ import annotations

import datetime
import os
import shutil

from . import control, fsops, profiles, registrar, state
from .errors import TaskError, UsageError
from .inventory import Settings
from .report import Row
from .s6 import S6, S6Error

SOUL = b"# SOUL\n\nThis profile was created by hermes-tasks. Describe its persona here.\n"


def _check_name(name: str) -> None:
    if not profiles.valid_name(name):
        raise UsageError(f"invalid profile name '{profiles.escape(name)}': "
                         "names match [a-z0-9][a-z0-9_-]{0,63}")


def create(cfg: Settings, name: str, start: bool, check: bool, diff: bool) -> list[Row]:
    """Make ``profiles/NAME/SOUL.md`` if missing (never overwriting) and register its slot."""
    _check_name(name)
    owner = (cfg.service_uid, cfg.service_gid)
    existed = profiles.profile_exists(cfg.hermes_home, name)
    if check:
        if existed:
            rows = registrar.converge(cfg, {name}, check=True, diff=diff)
        else:
            slot = profiles.SLOT_PREFIX + name
            rows = [Row(slot, name, None, "started" if start else "registered", "changed",
                        f"would create profiles/{name}/SOUL.md and publish {slot}")]
        return rows
    if name != profiles.DEFAULT:
        with fsops.opened_dir(cfg.hermes_home, ("profiles", name), create_mode=0o755,
                              owner=owner) as dfd:
            if not fsops.lexists(dfd, "SOUL.md"):
                fsops.write_new(dfd, "SOUL.md", SOUL, 0o644)
                if fsops.IS_ROOT:
                    os.chown("SOUL.md", *owner, dir_fd=dfd, follow_symlinks=False)
    if start:
        state.record_desired(cfg.hermes_home, name, "running", owner)
    rows = registrar.converge(cfg, {name}, diff=diff)
    if start and rows and rows[0].result != "failed":
        gw = control.target(cfg, name)
        started = control.act(cfg, gw, control.START, wait=False, timeout=30)
        if started.result == "failed":
            rows[0].result, rows[0].message = "failed", started.message
    if existed and rows and rows[0].result == "ok":
        rows[0].message = "profile already exists"
    elif not existed and rows and rows[0].result == "ok":
        rows[0].result = "changed"
    return rows


def delete(cfg: Settings, name: str, purge: bool, check: bool) -> list[Row]:
    """Stop and retire the slot, then move the profile to ``.trash`` (or purge it)."""
    _check_name(name)
    if name == profiles.DEFAULT:
        raise UsageError("the default profile is the root hermes_home and cannot be deleted")
    if not profiles.profile_exists(cfg.hermes_home, name):
        raise UsageError(f"no profile '{name}' under {cfg.hermes_home}/profiles")
    slot = profiles.SLOT_PREFIX + name
    path = os.path.join(cfg.scandir, slot)
    where = "deleted" if purge else "moved to .trash"
    if check:
        return [Row(slot, name, None, "removed", "changed", f"would stop {slot}, retire it; "
                    f"profile would be {where}")]
    s6 = S6(cfg.s6_bin_dir)
    if os.path.isdir(path) and s6.supervised(path):
        try:
            s6.svc(path, "-wD", "-D", wait_ms=10000)
        except S6Error as exc:
            raise TaskError(f"could not stop {slot}: {exc}") from None
    _dispose(cfg, name, purge)
    rows = registrar.converge(cfg, {name})
    for row in rows:
        if row.result != "failed":
            row.result, row.message = "changed", f"slot retired; profile {where}"
    return rows or [Row(slot, name, None, "removed", "changed", f"profile {where}")]


def _dispose(cfg: Settings, name: str, purge: bool) -> None:
    """Move ``profiles/NAME`` whole into ``.trash/profiles/NAME.<UTC stamp>`` (or delete)."""
    owner = (cfg.service_uid, cfg.service_gid)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    with fsops.opened_dir(cfg.hermes_home, ("profiles",)) as pfd, \
            fsops.opened_dir(cfg.hermes_home, (".trash", "profiles"), create_mode=0o700,
                             owner=owner) as tfd:
        target = f"{name}.{stamp}"
        os.rename(name, target, src_dir_fd=pfd, dst_dir_fd=tfd)
        if purge:
            shutil.rmtree(target, dir_fd=tfd)
