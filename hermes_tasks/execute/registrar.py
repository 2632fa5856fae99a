"""The executor for a caller who may not change slots (the service user, SPEC §10/§13.9).

It does what that user may: create or move profile directories, record ``desired_state``,
and tell s6 to bring gateways up or down through the shared control FIFOs (``-U``/``-D``:
s6-supervise, as root, keeps the down marker in step). Anything that changes a slot's files
it asks of the root registrar, whose reconcile carries no intent of the caller's (it
converges everything with root's settings); then it checks its own intent against what it
observes, bounded by ``registrar_timeout``.
"""

from __future__ import annotations

import os
import time

from .. import engine, facts, plan, readiness, registrar, rendercache
from ..errors import TaskError
from ..intent import RECONCILE, Intent
from ..inventory import Settings
from ..profiles import profile_exists
from ..render import Renderer
from ..rendercache import RenderCache
from ..report import Row, rows_from
from ..s6 import S6
from . import planned_stop, signals, volume


def execute(settings: Settings, intent: Intent, warn) -> list[Row]:
    """Carry out ``intent`` through the registrar; the rows of what was observed."""
    if intent.task == RECONCILE:
        doc = registrar.request(settings, "reconcile")
        return [_row(r) for r in doc.get("results", [])]
    renderer = Renderer(settings, RenderCache.load(rendercache.location(settings)))
    steps, known = engine.make_plan(settings, intent, renderer, False, warn)
    errors: dict[str, str] = {}
    notes: dict[str, list[str]] = {}
    live = [s for s in steps if s.changes and not s.failure]
    needs_root = [s for s in live if _slot_work(s)]
    if needs_root:
        registrar.check_available(settings, _what(needs_root))
    s6 = S6(settings.s6_bin_dir)
    path = {s.slot: os.path.join(settings.scandir, s.slot) for s in steps if s.slot}
    previous: dict[str, str | None] = {}
    for step in live:
        if step.create_profile:
            volume.create_profile(settings, step.profile)
        if step.record:
            previous[step.slot] = volume.recorded(settings, step.profile)
            volume.record(settings, step.profile, step.record)
    for step in live:
        if step.sweep is not None:
            removed = volume.sweep(settings, step.sweep, path[step.slot])
            if removed:
                notes.setdefault(step.slot, []).append("removed stale " + ", ".join(removed))
    going = [s for s in live if s.dispose and s.op == plan.REMOVE]
    for p, why in signals.down(s6, [path[s.slot] for s in going], "-D").items():
        errors[_slot(p)] = why
    for step in going:
        if step.slot not in errors:
            moved = volume.dispose(settings, step.profile, intent.purge)
            notes.setdefault(step.slot, []).append(
                "profile deleted" if intent.purge else f"profile moved to .trash/profiles/{moved}")
    if needs_root:
        _ask(settings, needs_root, errors, intent)
    marker = [s for s in live if s.slot not in errors and not s.dispose
              and (s.runtime or s.set_down is not None or s.op == plan.CREATE)]
    before: dict[str, readiness.Target] = {}
    _signal(s6, marker, path, errors, notes, before, settings.hermes_home)
    if intent.wait:
        targets = [s for s in steps if s.spec is not None and s.slot not in errors
                   and not s.failure and s.slot.startswith("gateway-") and not s.standby]
        for goal in ("up", "down"):
            chosen = [path[s.slot] for s in targets if (goal == "down") == s.spec.down]
            for p, why in signals.wait(chosen, goal, intent.timeout, settings,
                                       before).items():
                errors.setdefault(_slot(p), f"{_slot(p)}: {why}")
    for step in live:
        if step.dispose and step.slot not in errors:
            continue  # the profile is gone (moved to .trash): nothing left to record in
        if step.slot in errors and step.slot in previous:
            volume.record(settings, step.profile, previous[step.slot])
        elif step.record and volume.recorded(settings, step.profile) != step.record:
            # the gateway's own shutdown write dropped it (SPEC §7): write it again
            volume.record(settings, step.profile, step.record)
        if step.create_profile and step.slot in errors:
            volume.remove_new_profile(settings, step.profile)
    return rows_from(steps, errors, notes, False, check=False)


def _slot_work(step: plan.Step) -> bool:
    """Does carrying out ``step`` need root (slot files written, published or retired)?"""
    if step.op in (plan.CREATE, plan.SWAP, plan.REMOVE):
        return True
    return step.op == plan.UPDATE and bool(step.write or step.fix_skeleton or step.litter
                                           or step.pending)


def _what(steps: list[plan.Step]) -> str:
    step = steps[0]
    verb = {plan.CREATE: "publishing", plan.REMOVE: "removing"}.get(step.op, "changing")
    return f"{verb} {step.slot}"


def _ask(settings: Settings, steps: list[plan.Step], errors: dict[str, str],
         intent: Intent) -> None:
    """Ask the registrar to converge, then check each slot is there (or gone) and supervised."""
    doc = registrar.request(settings, _what(steps))
    reported = {r["slot"]: r for r in doc.get("results", [])}
    deadline = time.monotonic() + settings.registrar_timeout
    for step in steps:
        path = os.path.join(settings.scandir, step.slot)
        row = reported.get(step.slot)
        if row and row.get("result") == "failed":
            errors[step.slot] = f"could not register {step.slot}: {row.get('message', '')}"
        elif step.op == plan.REMOVE:
            # A profile created again meanwhile (another task) keeps its new slot.
            if os.path.lexists(path) and not profile_exists(settings.hermes_home, step.profile):
                errors[step.slot] = f"the registrar did not remove {step.slot}"
        elif not os.path.isdir(path):
            errors[step.slot] = f"could not register {step.slot}"
        elif S6.scanner_running(settings.scandir) is not False and signals.supervised(
                [path], max(0.0, deadline - time.monotonic())):
            errors[step.slot] = f"{step.slot} is not supervised after the registrar published it"


def _signal(s6: S6, steps: list[plan.Step], path: dict[str, str], errors: dict[str, str],
            notes: dict[str, list[str]], before: dict[str, readiness.Target], home: str) -> None:
    """Runtime changes through s6 itself: down (``-D``) together, then up (``-U``) together."""
    want_down = [s for s in steps if s.spec is not None and s.spec.down or s.runtime == "down"]
    restart = [s for s in steps if s.runtime == "restart"]
    want_up = [s for s in steps if s not in want_down and (s.runtime in ("up", "restart")
                                                         or s.set_down is False)]
    stopping = [(s.profile, path[s.slot]) for s in want_down if s.slot.startswith("gateway-")]
    marked = planned_stop.mark(home, stopping, None)  # hermes's marker, as ourselves
    failed = signals.down(s6, [path[s.slot] for s in want_down], "-D")
    planned_stop.clear(home, [p for p, sp in stopping if p in marked and sp in failed])
    failed.update(signals.down(s6, [path[s.slot] for s in restart], "-d"))
    coming = [path[s.slot] for s in want_up if path[s.slot] not in failed]
    before.update(signals.snapshot(coming, home))
    failed.update(signals.up(s6, coming, "-U"))
    for step in [*want_down, *want_up]:
        if path[step.slot] in failed:
            errors.setdefault(step.slot, failed[path[step.slot]])
        elif step.runtime:
            notes.setdefault(step.slot, []).append(
                {"up": "brought up", "down": "brought down",
                 "restart": "restarted the gateway"}[step.runtime])


def _slot(path: str) -> str:
    return os.path.basename(path)


def _row(doc: dict) -> Row:
    return Row(doc["slot"], doc["profile"], doc["prior_state"], doc["action"], doc["result"],
               doc.get("message", ""))


__all__ = ["execute", "TaskError", "facts"]
