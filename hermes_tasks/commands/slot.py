"""Slots: render one without touching the scandir, or list the registered ones."""

from __future__ import annotations

import json as jsonlib
import os
import sys

from .. import fsops, profiles, redact, slots, workdir
from ..errors import UsageError
from ..render import Renderer
from ..s6 import S6
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
    redact.reveal(show_secrets)
    if not profiles.valid_name(name):
        raise UsageError(f"invalid profile name '{profiles.escape(name)}': "
                         "names match [a-z0-9][a-z0-9_-]{0,63}")
    spec = Renderer(settings(inventory, var, host)).gateway(name, autostart=not down)
    files = dict(spec.files)
    if dest and c.config.run.dry:  # --dry means check mode for every task: write nothing
        for rel in files:
            print(f"would write {os.path.join(dest, rel)}")
        return
    if not dest:
        for rel, f in files.items():
            sys.stdout.write(f"==> {spec.name}/{rel} (mode {f.mode:04o}) <==\n")
            sys.stdout.write(redact.text(f.content.decode()))
        if spec.down:
            sys.stdout.write(f"==> {spec.name}/down (mode 0644) <==\n")
        return
    dest = workdir.resolve(dest)  # as typed, though a root process now runs from /
    for rel, f in files.items():
        parent, base = os.path.split(os.path.join(dest, rel))
        os.makedirs(parent, 0o755, exist_ok=True)
        with fsops.opened_dir(parent) as dfd:
            fsops.write_atomic(dfd, base, f.content, f.mode, durable=False)
    down_path = os.path.join(dest, "down")
    if spec.down:
        open(down_path, "ab").close()
    elif os.path.lexists(down_path):
        os.unlink(down_path)
    print(f"wrote {len(files)} files of {spec.name} under {dest}")


@hermes_task(help={"json": "print {\"slots\": [...]} as JSON"})
def list_(c, json=False, inventory=None, var=None, host=None):
    """List the gateway slots registered in the scandir."""
    cfg = settings(inventory, var, host)
    # no scandir (no s6 here): nothing is registered, an empty list (hermes's list does too)
    names = slots.managed_names(cfg.scandir)[0] if os.path.isdir(cfg.scandir) else []
    s6 = S6(cfg.s6_bin_dir)
    rows = []
    for name in names:
        path = os.path.join(cfg.scandir, name)
        if not name.startswith(profiles.SLOT_PREFIX):
            continue
        rows.append({"slot": name, "profile": name[len(profiles.SLOT_PREFIX):],
                     "supervised": bool(s6.supervised(path)),
                     "down_marker": os.path.lexists(os.path.join(path, "down"))})
    if json:
        print(jsonlib.dumps({"slots": rows}))
        return
    for row in rows:
        state = "supervised" if row["supervised"] else "not supervised"
        marker = ", down marker" if row["down_marker"] else ""
        print(f"{row['slot']}  ({state}{marker})")
    if not rows:
        print(f"no gateway slots in {cfg.scandir}")
