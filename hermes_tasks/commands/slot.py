"""Slots: render one without touching the scandir, or list the registered ones."""

from __future__ import annotations

import contextlib
import json as jsonlib
import os
import sys

from .. import fsops, profiles, redact, slots, supervision, workdir
from ..errors import UsageError
from ..render import Renderer
from .common import SECRETS_HELP, hermes_task, settings


@hermes_task(help={
    "name": "profile name (`default` is the root profile)",
    "dest": "write the files with DEST as the slot directory instead of printing them",
    "down": "render it as registered down (a down marker) instead of started",
    **SECRETS_HELP,
})
def render(c, name, dest=None, down=False, inventory=None, var=None, show_secrets=False,
           host=None):
    """Print every file of a profile's slot, or write them under --dest; touches nothing else.

    Printed, secret-looking values are masked (unless --show-secrets); written under
    --dest, files hold the real values and the modes a slot has (run 0750).
    """
    if not profiles.valid_name(name):
        raise UsageError(f"invalid profile name '{profiles.escape(name)}': "
                         "names match [a-z0-9][a-z0-9_-]{0,63}")
    cfg = settings(c, inventory, var, host)
    spec = Renderer(cfg).gateway(name, autostart=not down, uid=_uid(cfg, name))
    files = dict(spec.files)
    if dest and c.config.run.dry:  # --dry means check mode for every task: write nothing
        for rel in files:
            print(f"would write {os.path.join(dest, rel)}")
        return
    if not dest:
        for rel, f in files.items():
            sys.stdout.write(f"==> {spec.name}/{rel} (mode {f.mode:04o}) <==\n")
            sys.stdout.write(redact.text(f.content.decode(), show=show_secrets))
        if spec.down:
            sys.stdout.write(f"==> {spec.name}/down (mode 0644) <==\n")
        return
    dest = workdir.resolve(dest, workdir.origin(c))  # as typed, though a root process now runs from /
    try:
        _write_under(dest, files, spec.down)
    except fsops.UnsafeDirectory as exc:
        raise UsageError(f"--dest {dest}: {exc.filename} can be written by another user, who "
                         "could redirect what is written there; choose a directory only you "
                         "(or root) can write") from None
    print(f"wrote {len(files)} files of {spec.name} under {dest}")


def _uid(cfg, name: str) -> int | None:
    """The uid reconcile would render for ``name`` (SPEC §16), read only: nothing recorded."""
    from .. import uids

    owners = {}
    with contextlib.suppress(OSError):
        with fsops.opened_dir(cfg.hermes_home, ("profiles", name)) as dfd:
            owners[name] = os.fstat(dfd).st_uid
    found, _, _ = uids.for_settings(cfg, [name], owners, lambda m: sys.stderr.write(
        f"hermes-tasks: warning: {m}\n"))
    return found.get(name)


def _write_under(dest: str, files: dict, down: bool) -> None:
    """Write the slot's files below ``dest`` through directory fds, never following a
    symlink, and only where no other user can write (fsops.open_private_path)."""
    with contextlib.ExitStack() as stack:
        top = fsops.open_private_path(dest)
        stack.callback(os.close, top)
        dirs = {"": top}
        for rel in files:  # every directory checked before anything is written
            parent = rel.rpartition("/")[0]
            if parent not in dirs:
                dirs[parent] = fsops.open_private_path(parent, start=top)
                stack.callback(os.close, dirs[parent])
        for rel, f in files.items():
            parent, _, base = rel.rpartition("/")
            fsops.write_atomic(dirs[parent], base, f.content, f.mode, durable=False)
        if down:
            fsops.write_atomic(top, "down", b"", 0o644, durable=False)
        else:
            fsops.unlink_if_present(top, "down")


@hermes_task(help={"json": "print {\"slots\": [...]} as JSON"})
def list_(c, json=False, inventory=None, var=None, host=None):
    """List the gateway slots registered in the scandir, and every profile without one (why)."""
    cfg = settings(c, inventory, var, host)
    # no scandir (no s6 here): nothing is registered, an empty list (hermes's list does too)
    if not os.path.isdir(cfg.scandir):
        print(jsonlib.dumps({"slots": []}) if json else f"no gateway slots in {cfg.scandir}")
        return
    names = slots.managed_names(cfg.scandir)[0]
    rows = []
    for name in names:
        path = os.path.join(cfg.scandir, name)
        if not name.startswith(profiles.SLOT_PREFIX):
            continue
        rows.append({"slot": name, "profile": name[len(profiles.SLOT_PREFIX):],
                     "supervised": bool(supervision.supervised(path)),
                     "down_marker": os.path.lexists(os.path.join(path, "down")),
                     "registered": True, "reason": None})
    rows += _unregistered(cfg, {r["profile"] for r in rows})
    if json:
        print(jsonlib.dumps({"slots": rows}))
        return
    for row in rows:
        if not row["registered"]:
            print(f"{row['slot']}  (no slot: {row['reason']})")
            continue
        state = "supervised" if row["supervised"] else "not supervised"
        marker = ", down marker" if row["down_marker"] else ""
        print(f"{row['slot']}  ({state}{marker})")
    if not rows:
        print(f"no gateway slots in {cfg.scandir}")


def _unregistered(cfg, registered: set[str]) -> list[dict]:
    """A row for each profile on the volume without a slot here, saying why (SPEC §14.7)."""
    from .. import placement
    from ..plan import by_priority

    found, _ = profiles.discover(cfg.hermes_home, lambda _msg: None)
    placed = [p.name for p in found if placement.placed(p.name, cfg.gateway_profiles)]
    fits = set(by_priority(profiles.SLOT_PREFIX + n for n in placed)[:cfg.max_slots])
    rows = []
    for p in found:
        if p.name in registered:
            continue
        slot = profiles.SLOT_PREFIX + p.name
        if p.name not in placed:
            why = placement.reason(cfg.host_id)
        elif slot not in fits:
            why = f"over capacity: max_slots ({cfg.max_slots}) gateway slots reached"
        else:
            why = "not registered yet: run `hermes-tasks reconcile`"
        rows.append({"slot": slot, "profile": p.name, "supervised": False,
                     "down_marker": False, "registered": False, "reason": why})
    return rows
