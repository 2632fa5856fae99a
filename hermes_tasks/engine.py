"""The one engine every task runs through: intent + facts → plan → execute → rows.

``run()`` never prints; it returns a :class:`Result` and warns through the callback it is
given. ``check`` stops after the plan, so the rows of ``--check``/``--dry`` are the rows of
the run that would follow, by construction. Root (or the scandir's owner) executes the plan
itself (:mod:`.execute.local`); anyone else sends the intent to the root registrar, which
runs it through this same function as root and answers with the rows (:mod:`.channel`,
:mod:`.registrar`).
"""

from __future__ import annotations

from . import changes, channel, facts, lock, plan, preflight, records, rendercache
from .errors import TaskError
from .intent import CREATE, RECONCILE, Intent
from .inventory import Settings
from .render import REGISTRAR, Renderer
from .rendercache import RenderCache
from .report import Row
from .s6 import S6
from .slotcache import SlotCache


@records.record
class Result:
    """What a run reports: its rows, and the registrar's row kept aside."""

    rows: list[Row]
    registrar: Row | None = None


def run(settings: Settings, intent: Intent, *, check: bool = False, diff: bool = False,
        manage_registrar: bool | None = None, warn=None, executor=None,
        show_secrets: bool = False) -> Result:
    """Carry out ``intent`` (or, with ``check``, only plan it) and return the rows.

    ``manage_registrar`` defaults to "running as root, reconciling everything"; the
    registrar's own reconcile passes False so it never restarts itself. ``executor`` is
    the class that carries out the plan (default :class:`execute.local.Applier`; a
    recorder in tests): every write and signal of a run is one of its changes
    (:mod:`.changes`), carried out under the lock.
    """
    from .report import warn as default_warn

    warn = warn or default_warn
    facts.require_scandir(settings)
    if manage_registrar is None:
        from . import fsops

        manage_registrar = fsops.IS_ROOT and intent.task == RECONCILE
    if not channel.may_change_slots(settings):
        return _through_registrar(settings, intent, check, diff, warn, show_secrets)
    if not check or S6.scanner_running(settings.scandir):
        # --check too while a supervisor runs: its run would be refused, so is the plan
        preflight.check(settings)
    cache = RenderCache.load(rendercache.location(settings))
    renderer = Renderer(settings, cache)
    if check:  # no lock, no write, no signal, no boot-log line: the plan, reported
        steps, _ = make_plan(settings, intent, renderer, manage_registrar, warn)
        return _result(steps, {}, {}, diff, check=True, show_secrets=show_secrets)
    from .execute.local import Applier

    what = intent.task if intent.task == RECONCILE else f"{intent.task} {sorted(intent.names or [])}"
    with lock.held(settings.scandir, settings.lock_timeout, what):
        # Facts are read under the lock: gateway.* records desired_state under the same
        # lock, so a plan never acts on a state read before another task changed it.
        steps, known = make_plan(settings, intent, renderer, manage_registrar, warn,
                                 for_run=True)
        # What the run needs of the facts, taken now: the rest (every profile's, slot's and
        # gateway's facts) is let go before anything is carried out (issue 24: memory).
        allocation, uid_allocation = known.allocation, known.uid_allocation
        stale, scanner, slot_cache = known.stale, known.scanner, known.slot_cache
        volume_cache = known.volume_cache
        present = frozenset({*known.existing, *(s.slot for s in steps)})
        exits = {s.slot: prior_exit(known, s.slot) for s in steps} \
            if intent.task == RECONCILE else {}
        del known
        applier = (executor or Applier)(settings, warn=warn)
        if allocation is not None:
            applier.apply(changes.AllocatePorts(allocation))
        if uid_allocation is not None:  # before any tree is converted (the run scripts)
            applier.apply(changes.AllocateUids(uid_allocation, {
                s.profile: s.slot for s in steps if s.slot}))
        applier.run(steps, stale, scanner, (intent.wait, intent.timeout))
        applier.apply(changes.SaveCaches(cache if intent.task == RECONCILE else None,
                                         slot_cache, present, volume_cache))
        result = _result(steps, applier.errors, applier.notes, diff, check=False,
                         show_secrets=show_secrets)
        if intent.task == RECONCILE:
            applier.apply(changes.AppendBootLog(
                tuple(result.rows), {r.slot: exits[r.slot] for r in result.rows}))
        applier.apply(changes.UndoFailedCreates(tuple(steps)))
    for slot, message in applier.errors.items():
        if slot not in {s.slot for s in steps}:
            warn(message)
    return result


def prior_exit(known: facts.Facts, slot: str | None) -> int | None:
    """The exit code of the gateway's last run, when s6 knows it (a slot that ran and is
    down now); None otherwise (never ran here, up, or a fresh boot's empty scandir)."""
    rt = known.runtime.get(slot) if slot else None
    if rt is None or not rt.supervised or rt.up:
        return None
    st = rt.status
    if st.signal is not None:
        return 256  # what finish is given for a killed run (s6-supervise)
    if st.exit_code == 0 and not st.normally_up:
        return None  # a slot with a down marker that never ran reads "exit 0" too
    return st.exit_code


def _through_registrar(settings: Settings, intent: Intent, check: bool, diff: bool,
                       warn, show_secrets: bool = False) -> Result:
    """A caller who may not change slots sends its intent to root's registrar (SPEC §14.1).

    Root plans and runs it with root's settings; these are root's rows. Settings the caller
    named that root lacks are refused (they would be dropped silently).
    """
    channel.refuse_named(settings, channel.root_settings(settings), intent.task)
    return Result(*channel.ask(settings, intent, check, diff, warn, show_secrets))


def make_plan(settings: Settings, intent: Intent, renderer: Renderer, manage_registrar: bool,
              warn, *, for_run: bool = False) -> tuple[list[plan.Step], facts.Facts]:
    """Gather the facts and plan the intent against them (``for_run``: under the lock, for
    real: the facts then carry the port allocation the run records)."""
    new = intent.names or () if intent.task == CREATE else ()
    starting = intent.names or () if intent.desired == "running" else ()
    known = facts.gather(settings, warn, intent.names or (), for_run=for_run, new=new,
                         starting=starting)
    if intent.task != RECONCILE:
        known.skipped = []
    known.slot_cache = SlotCache.load(settings.scandir)
    targets = [n for n in known.existing if n != REGISTRAR]
    if plan.scope_needs_runtime(intent):  # restart --all: the runtime decides the scope
        facts.read_slots(known, [], targets)
    scoped = plan.scope(intent, known)
    if intent.wait or (intent.gateway and settings.shared_volume):
        # §14.3: a gateway another host runs is asked of that host's agent
        facts.owners(known, [p.name for p in scoped if p.autostart or intent.gateway], warn)
    desired = [(p, renderer.gateway(p.name, p.autostart, _exports(known, p.name),
                                    known.uids.get(p.name)))
               for p in scoped]
    if manage_registrar:
        desired.append((None, renderer.registrar()))
    facts.read_slots(known, [spec for _, spec in desired], targets)
    return plan.build(intent, known, desired, settings.max_slots), known


def _exports(known: facts.Facts, name: str):
    gw = known.ports.get(name)
    return gw.exports if gw else None


def _result(steps, errors, notes, diff, check, show_secrets: bool = False) -> Result:
    from .report import rows_from

    rows = rows_from(steps, errors, notes, diff, check, show_secrets)
    registrar = next((r for r in rows if r.slot == REGISTRAR), None)
    return Result([r for r in rows if r.slot != REGISTRAR], registrar)


def single_failure(rows: list[Row]) -> str | None:
    """The message of a single-target task's failed row (its exit-1 error line), or None."""
    failed = [r for r in rows if r.result == "failed"]
    if not failed:
        return None
    row = failed[0]
    return row.message if row.slot and row.slot in row.message else f"{row.slot}: {row.message}"


__all__ = ["Result", "run", "single_failure", "TaskError"]
