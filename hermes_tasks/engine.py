"""Reconcile: facts -> plan -> apply -> report rows, under the scandir lock.

Tasks call :func:`reconcile` (all profiles, or ``only`` some slots); it never prints, it
returns rows and warns through the callback it is given.
"""

from __future__ import annotations

import os

from . import bootlog, fsops, lock, placement, plan, profiles, slots
from .apply import Applier
from .errors import TaskError
from .inventory import Settings
from .render import REGISTRAR, Renderer
from .rendercache import RenderCache
from .report import Row
from .s6 import S6

# What a run needs from s6_bin_dir while a supervisor watches the scandir: the rescan
# tool, and the shebang of every run script.
NEEDED_TOOLS = ("s6-svscanctl", "with-contenv")


def _require_tools(settings: Settings) -> None:
    """Refuse, in check mode too, to publish slots a running s6-svscan could never be told of.

    Without a supervisor (boot before stage 2, unit tests) the tools are not needed yet.
    """
    if not S6.scanner_running(settings.scandir):
        return
    missing = [t for t in NEEDED_TOOLS if not os.access(settings.tool(t), os.X_OK)]
    if missing:
        raise TaskError(f"s6 tools missing from s6_bin_dir {settings.s6_bin_dir} "
                        f"({', '.join(missing)}) while s6-svscan runs on {settings.scandir}: "
                        "set s6_bin_dir to the directory holding them (/command in the image)")


def reconcile(settings: Settings, *, check: bool = False, diff: bool = False,
              only: set[str] | None = None, manage_registrar: bool | None = None,
              warn=None) -> tuple[list[Row], Row | None]:
    """Converge the slots with the profiles on disk; return (rows, registrar row).

    ``only`` limits the run to those profile names (and never removes other slots).
    ``manage_registrar`` defaults to "running as root"; the registrar's own reconcile
    passes False so it never restarts itself. Rows are one per profile, skipped
    directory and retired slot, in report order.
    """
    from .report import warn as default_warn

    warn = warn or default_warn
    scandir = settings.scandir
    if not os.path.isdir(scandir):
        raise TaskError(f"scandir {scandir} does not exist or is not a directory "
                        "(is s6 set up? set scandir in the inventory or with --var)")
    _require_tools(settings)
    if manage_registrar is None:
        manage_registrar = fsops.IS_ROOT and only is None
    cache = RenderCache.load(scandir)
    renderer = Renderer(settings, cache)

    def make_plan():
        # Profiles and their states are read here, under the lock: gateway.* records
        # desired_state under the same lock, so a plan never acts on a state read before
        # another task changed it (it would put back a down marker just removed).
        found, skipped = profiles.discover(settings.hermes_home, warn)
        found, unplaced = placement.split(found, settings.gateway_profiles)
        if only is not None:
            found = [p for p in found if p.name in only]
            unplaced = [p for p in unplaced if p.name in only]
            skipped = []
        not_here = placement.reason(settings.host_id)
        skipped += [profiles.Skipped(p.name, not_here) for p in unplaced]
        desired = [(p, renderer.gateway(p.name, p.autostart)) for p in found]
        if manage_registrar:
            desired.append((None, renderer.registrar()))
        existing, stale = slots.managed_names(scandir)
        if only is not None:
            existing = [n for n in existing if n[len(profiles.SLOT_PREFIX):] in only]
        facts = {spec.name: slots.read(scandir, spec, settings.service_gid) for _, spec in desired}
        steps = plan.build(desired, facts, skipped, existing)
        for step in steps:  # a slot of a profile placed elsewhere: say so, not "no profile"
            if step.op == plan.REMOVE and step.profile in {p.name for p in unplaced}:
                step.reason = not_here
        return steps, stale

    if check:  # no lock, no write, no signal, no boot-log line: the plan, reported
        steps, _ = make_plan()
        return _rows(steps, {}, {}, diff, check=True)
    with lock.held(scandir, settings.lock_timeout, "reconcile"):
        steps, stale = make_plan()
        applier = Applier(settings)
        applier.run(steps, stale)
        if only is None:  # a partial run's renders would evict the others' from the cache
            cache.save()
        rows, registrar = _rows(steps, applier.errors, applier.notes, diff, check=False)
        bootlog.append(settings.hermes_home,
                       [(r.profile, r.prior_state, r.action, r.result) for r in rows],
                       settings.boot_log_rotate_bytes,
                       (settings.service_uid, settings.service_gid), warn,
                       name=bootlog.file_name(settings.shared_volume and settings.host_id))
    for slot, message in applier.errors.items():
        if slot not in {s.slot for s in steps}:
            warn(message)
    return rows, registrar


def _rows(steps: list[plan.Step], errors: dict[str, str], notes: dict[str, list[str]],
          diff: bool, check: bool) -> tuple[list[Row], Row | None]:
    rows, registrar = [], None
    for step in steps:
        if step.op == plan.SKIP:
            result = "skipped"
        elif step.slot in errors:
            result = "failed"
        else:
            result = "changed" if step.changes else "ok"
        row = Row(step.slot, step.profile, step.prior_state, step.action, result,
                  errors.get(step.slot) or describe(step, check, notes.get(step.slot, ())),
                  plan.diff(step) if diff and step.changes else "")
        if step.slot == REGISTRAR:
            registrar = row
        else:
            rows.append(row)
    return rows, registrar


def describe(step: plan.Step, check: bool, done: list[str] | tuple = ()) -> str:
    """One line saying what changed (or, in check mode, what would), for the report."""
    if step.op == plan.SKIP:
        return step.reason
    if step.op == plan.OK:
        return ""
    if step.op == plan.CREATE:
        return "would be published" if check else "published"
    if step.op == plan.SWAP:
        return f"{'would be ' if check else ''}replaced: {step.reason}"
    if step.op == plan.REMOVE:
        return f"{'would be ' if check else ''}retired: {step.reason}"
    parts = []
    if step.write:
        parts.append(("would rewrite " if check else "rewrote ") + ", ".join(step.write))
    if step.set_down is not None:
        verb = ("would add" if step.set_down else "would remove") if check else (
            "added" if step.set_down else "removed")
        parts.append(f"{verb} the down marker")
    if step.fix_skeleton:
        parts.append(("would repair" if check else "repaired") + " supervise/event permissions")
    if step.litter:
        parts.append(("would remove" if check else "removed") + " temp files left by an "
                     "interrupted run: " + ", ".join(step.litter))
    if step.pending:
        parts.append(("would finish" if check else "finished")
                     + " a restart an earlier run left pending")
    if check:
        if step.bring_up:
            parts.append("would bring the gateway back up")
        elif step.restart_gateway:
            parts.append("would restart the gateway if up")
        if step.restart_logger:
            parts.append("would restart the logger")
    else:
        parts.extend(done)
    return "; ".join(parts)
