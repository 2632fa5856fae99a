"""The pure planner: intent + facts + desired slots -> one :class:`Step` per row, each with
its typed changes (:mod:`.changes`).

Nothing here touches the world, so ``--check``/``--dry``/``--diff`` are this plan, printed,
and a run carries out exactly this plan (check rows == run rows by construction). Each
decision adds a typed change to the row (or takes one back: a failed row records nothing),
so the changes are all the executor and the report ever see.

Files: "identical" follows copier (reference/conventions.md §5): same bytes and same mode;
the ``down`` marker and the shared ``supervise/``/``event/`` skeleton are compared too.
Runtime (SPEC §6): desired running but down (never started, or taken down through s6) →
brought up; desired not running but up → brought down; exited 0 or 78 (``finish`` kept it
down) → ``failed`` with its exit code and reason, until an explicit start or restart.
"""

from __future__ import annotations

from . import changes as ch
from . import intent as intents
from . import records, redact, slots
from .facts import Facts
from .facts.runtime import Runtime
from .intent import Intent
from .profiles import DEFAULT, SLOT_PREFIX, Profile
from .render import REGISTRAR, SlotSpec, as_rendered
from .slots import SlotFacts

# Files whose change must reach a running gateway (read at the next spawn).
GATEWAY_FILES = frozenset({"run", "finish"})
LOGGER_FILES = frozenset({"log/run"})


@records.record(frozen=True)
class Step:
    """One row of the plan: the slot (or skipped profile) it is about and its changes.

    ``changes`` is what the executor carries out for the row, in the order the row is worded
    (:mod:`.changes`); ``action`` is the reported word (started/registered/skipped/removed).
    ``skip``: the row is skipped, for this reason; ``failure``: it is known to fail before
    anything is done (its changes are still carried out: an over-capacity slot is retired);
    ``note``: the message of a row with nothing to do; ``standby``: the host a --wait'ed
    gateway runs on; ``remark``: said at the end of the row (SPEC §15).
    """

    slot: str | None
    profile: str
    prior_state: str | None
    action: str
    spec: SlotSpec | None = None
    changes: tuple[ch.Change, ...] = ()
    skip: str | None = None
    failure: str = ""
    note: str = ""
    standby: str | None = None
    remark: str = ""

    def get(self, kind):
        """The row's change of ``kind`` (a class or a tuple of classes), or None."""
        return next((c for c in self.changes if isinstance(c, kind)), None)

    def has(self, kind) -> bool:
        return self.get(kind) is not None

    @property
    def alters(self) -> bool:
        """Whether carrying the row out changes anything (files, state or processes)."""
        return any(c.alters for c in self.changes)

    @property
    def slot_files(self) -> bool:
        """Whether the slot directory changes (what --diff shows)."""
        return any(c.slot_files for c in self.changes)

    @property
    def in_place(self) -> bool:
        return any(c.in_place for c in self.changes)


# The order a row's message words its changes in (the report reads them in this order).
_ORDER = (ch.CreateProfile, ch.Publish, ch.Replace, ch.Retire, ch.WriteFiles, ch.SetMarker,
          ch.RepairSkeleton, ch.RemoveLitter, ch.OwedRestarts, ch.RecordState, ch.Rescan,
          ch.AskOwner, ch.SweepStale, ch.BringDown, ch.BringUp, ch.RestartGateway,
          ch.RestartLogger, ch.DisposeProfile)
# An existing slot's update in place, and the logger restart it owes.
_UPDATE = (ch.WriteFiles, ch.SetMarker, ch.RepairSkeleton, ch.RemoveLitter, ch.OwedRestarts,
           ch.RestartLogger)


def _with(step: Step, *add: ch.Change, drop: tuple[type, ...] = (), **fields) -> Step:
    """``step`` with the changes ``add``, without those of the kinds ``drop`` and with
    ``fields`` replaced; its changes kept in the order its message words them."""
    kept = [c for c in step.changes if not isinstance(c, drop)]
    return records.replace(step, changes=tuple(sorted(
        kept + list(add), key=lambda c: _ORDER.index(type(c)))), **fields)


def plan_slot(spec: SlotSpec, facts: SlotFacts | None, profile: str,
              prior_state: str | None) -> Step:
    """One desired slot against what is on disk, as a row (see :func:`_slot_changes`)."""
    action = "registered" if spec.down else "started"
    return Step(spec.name, profile, prior_state, action, spec, _slot_changes(spec, facts))


def _slot_changes(spec: SlotSpec, facts: SlotFacts | None,
                  first: bool = False) -> tuple[ch.Change, ...]:
    """Compare one desired slot with what is on disk.

    * absent → :class:`~.changes.Publish` (staging dir + one rename);
    * not updatable in place (``facts.structural``) → :class:`~.changes.Replace`
      (sequence B′);
    * otherwise → an update of exactly the differing files / marker / skeleton, with the
      restarts their change owes, or nothing when all is identical.

    ``first``: default or the registrar, published and supervised before the rest.
    """
    if facts is None:
        return (ch.Publish(spec, first),)
    marker = spec.down if facts.down != spec.down else None
    if facts.structural:
        before = {rel: facts.files.get(rel) for rel in spec.files}
        return (ch.Replace(spec, f"{spec.name} {facts.structural}", before, marker, first),)
    changed = () if as_rendered(facts.files, spec.files) else tuple(
        rel for rel, f in spec.files.items() if facts.files.get(rel) != (f.content, f.mode))
    out: list[ch.Change] = []
    if changed:
        out.append(ch.WriteFiles(changed, {rel: facts.files.get(rel) for rel in changed}))
    if marker is not None:
        out.append(ch.SetMarker(marker))
    if not facts.skeleton_ok:
        out.append(ch.RepairSkeleton())
    if facts.litter:
        out.append(ch.RemoveLitter(facts.litter))
    gateway = bool(GATEWAY_FILES.intersection(changed)) or bool(
        facts.pending & {"gateway", "gateway-up"})
    logger = spec.logged and (bool(LOGGER_FILES.intersection(changed))
                              or "logger" in facts.pending)
    if facts.pending or gateway or logger:
        out.append(ch.OwedRestarts(facts.pending, gateway))
    if logger:
        out.append(ch.RestartLogger())
    return tuple(out)


def scope(intent: Intent, facts: Facts) -> list[Profile]:
    """The profiles whose slots this intent renders, in report order, with their autostart.

    reconcile: every profile. gateway.*: the named one, or every registered gateway's
    profile (``--all``); start/restart want it up, stop down. profile.create: the named
    one (a new one starts from no state). profile.delete: none (its slot is retired).
    """
    if intent.task == intents.RECONCILE:
        # a blocked gateway's slot is registered down (it must not start), and so is a
        # multiplexed one (the default gateway serves it, SPEC §15)
        return [records.replace(p, autostart=False)
                if p.name in facts.blocked or p.name in facts.multiplexed else p
                for p in facts.profiles if p.name not in facts.unplaced]
    if intent.task == intents.DELETE:
        return []
    if intent.all:
        registered = set(slots.gateway_profiles(facts.existing))
        chosen = [p for p in facts.profiles if p.name in registered]
    else:
        chosen = [facts.profile(n) or Profile(n, ("profiles", n), None, False)
                  for n in sorted(intent.names or ())]
    chosen = [p for p in chosen if p.name not in facts.unplaced]
    chosen = [records.replace(p, autostart=False) if p.name in facts.blocked else p
              for p in chosen]
    desired = intent.desired
    if desired is None:
        return chosen
    if intent.task == intents.RESTART and intent.all:
        # --all restarts what is up or desired running; a deliberately stopped one stays so.
        return [records.replace(p, autostart=True) if _restartable(p, facts) else p
                for p in chosen]
    return [records.replace(p, autostart=desired == "running" and p.name not in facts.blocked)
            for p in chosen]


def scope_needs_runtime(intent: Intent) -> bool:
    """True when :func:`scope` reads runtime facts (restart --all: what is up now)."""
    return intent.task == intents.RESTART and bool(intent.all)


def _restartable(profile: Profile, facts: Facts) -> bool:
    rt = facts.runtime.get(profile.slot)
    return profile.autostart or bool(rt and rt.up)


def build(intent: Intent, facts: Facts, desired: list[tuple[Profile | None, SlotSpec]],
          max_slots: int) -> list[Step]:
    """The whole plan, in report order (default, named profiles by name, skipped, retired).

    ``desired`` pairs each profile of :func:`scope` with its rendered slot (plus the
    registrar, whose profile is None). Steps past ``max_slots`` gateway slots fail.
    """
    allowed = _within_capacity(facts, desired, max_slots)
    steps = [_slot_step(intent, facts, profile, spec, spec.name in allowed, max_slots)
             for profile, spec in desired]
    return steps + _other_steps(intent, facts, {spec.name for _, spec in desired})


def _other_steps(intent: Intent, facts: Facts, wanted: set[str]) -> list[Step]:
    """Rows without a desired slot: skipped directories, profiles placed elsewhere, slots
    to retire (reconcile, profile.delete), and gateway slots whose profile is gone (--all)."""
    steps: list[Step] = []
    if intent.task == intents.RECONCILE:
        for skip in facts.skipped:
            steps.append(Step(None, skip.label, None, "skipped", skip=skip.reason))
        # §12: placed elsewhere → a skipped row, even when its slot here is retired below
        for name, why in facts.unplaced.items():
            steps.append(Step(None, name, None, "skipped", skip=why))
        for name in facts.existing:
            if name.startswith(SLOT_PREFIX) and name not in wanted:
                profile = name[len(SLOT_PREFIX):]
                why = facts.unplaced.get(profile, "its profile no longer exists")
                steps.append(Step(name, profile, None, "removed", changes=(ch.Retire(why),)))
    elif intent.names:  # a named target placed on another host (§13.3)
        for name in sorted(set(intent.names) & set(facts.unplaced)):
            why = facts.unplaced[name]
            if intent.gateway:
                steps.append(Step(SLOT_PREFIX + name, name, None, _word(intent, None), skip="",
                                  failure=why))
            elif intent.task == intents.CREATE:  # the profile, but no slot here
                why = f"{why}: no slot registered here"
                if facts.profile(name) is None:
                    steps.append(Step(None, name, None, "skipped", note=why,
                                      changes=(ch.CreateProfile(name),)))
                else:
                    steps.append(Step(None, name, None, "skipped", skip=why))
    if intent.task == intents.DELETE:
        for name in sorted(intent.names or ()):
            slot = SLOT_PREFIX + name
            out: list[ch.Change] = []
            if slot in facts.existing:
                out.append(ch.Retire("its profile is deleted"))
                known = facts.profile(name)
                if known and known.autostart:
                    # §13.1: a standby on another host that takes the lock once this gateway
                    # stops re-reads desired_state, and must find it stopped
                    out.append(ch.RecordState("stopped"))
            out.append(ch.DisposeProfile(intent.purge))
            steps.append(Step(slot, name, None, "removed", changes=tuple(out)))
    elif intent.all:
        for name in facts.existing:  # gateway slots whose profile is gone: runtime only
            if name.startswith(SLOT_PREFIX) and name not in wanted:
                step = Step(name, name[len(SLOT_PREFIX):], None, _word(intent, None))
                steps.append(_runtime(step, intent, facts, None))
    return steps


def _slot_step(intent: Intent, facts: Facts, profile: Profile | None, spec: SlotSpec,
               allowed: bool, max_slots: int) -> Step:
    """The row of one desired slot: files, intent to record, runtime, or why it fails."""
    label = profile.name if profile else spec.name
    prior = profile.prior_state if profile else None
    word = _word(intent, spec)
    if not allowed and facts.slots.get(spec.name) is None:
        return Step(spec.name, label, prior, word, spec, skip="",
                    failure=f"over capacity: not published: max_slots ({max_slots}) gateway "
                    "slots reached; s6-overlay's s6-svscan supervises at most 500 services "
                    "(raise max_slots only with s6-svscan -c)")
    if not allowed:
        # SPEC §14.7: an existing slot past max_slots is retired (the last by priority:
        # default first, then by name), so what stays fits what s6-svscan supervises
        return Step(spec.name, label, prior, word, changes=(ch.Retire("over capacity"),),
                    failure=f"over capacity: its slot is retired: max_slots ({max_slots}) "
                    "gateway slots reached (default first, then by name)")
    if intent.task == intents.RESTART and intent.all and profile and not profile.autostart:
        return Step(spec.name, label, prior, word, spec,
                    skip="stopped (desired_state not running): left stopped")
    if intent.task == intents.CREATE and intent.start and facts.scanner is False:
        # It could be published but never started: refuse before creating anything.
        return Step(spec.name, label, prior, word, spec, skip="",
                    failure=_unsupervised(spec.name, facts))
    if (profile and profile.name in facts.blocked and intent.desired != "stopped"
            and _up(facts, spec.name)):
        # SPEC §14.5: failed before it is restarted; it keeps running as it is (its files
        # untouched: nothing it runs now changes)
        why = facts.blocked[profile.name].replace("not started: ", "not restarted: ", 1)
        return Step(spec.name, label, prior, word, spec, skip="",
                    failure=f"{why}; it keeps running on its current ports")
    first = profile is None or profile.name == DEFAULT
    step = Step(spec.name, label, prior, word, spec,
                _slot_changes(spec, facts.slots.get(spec.name), first))
    if intent.task == intents.STOP and step.has(ch.Publish):
        # stop registers nothing: it records the intent for when the slot appears
        step = _with(step, drop=(ch.Publish,), note="no slot registered; recorded stopped")
    if profile and profile.stale and not _up(facts, spec.name):
        step = _with(step, ch.SweepStale(profile.parts))
    if intent.task == intents.CREATE:
        if facts.profile(label) is None:
            step = _with(step, ch.CreateProfile(label))
        if not step.alters:
            step = _with(step, note="profile already exists")
    if intent.desired and profile and profile.recorded != intent.desired:
        step = _with(step, ch.RecordState(intent.desired))
    step = _runtime(step, intent, facts, spec)
    if ((intent.wait or intent.gateway) and not spec.down and profile
            and profile.name in facts.elsewhere):
        step = _with(step, standby=facts.elsewhere[profile.name])
    if (intent.task in (intents.STOP, intents.RESTART) and profile
            and profile.name in facts.elsewhere and not step.failure):
        step = _elsewhere(step, intent, facts.elsewhere[profile.name])
    if facts.scanner is False and step.slot != REGISTRAR and not spec.down:
        step = _with(step, remark=f"not supervised: no s6-svscan runs on "
                     f"{facts.settings.scandir}, so nothing starts it until one does")
    rt = facts.runtime.get(spec.name)
    if (rt and rt.logger and not step.has(ch.RestartLogger) and not step.failure
            and not step.has((ch.Publish, ch.Replace))):
        # nothing it prints is kept (SPEC §15)
        step = _with(step, failure=f"{spec.name}: {rt.logger}")
    if profile and intent.task == intents.RECONCILE and profile.name in facts.multiplexed:
        # one started explicitly keeps running (gateway.stop it): not brought down
        step = _with(step, drop=(ch.BringDown,), remark="multiplex: registered down, the "
                     "default gateway serves this profile (GATEWAY_MULTIPLEX_PROFILES)")
    if profile and profile.name in facts.blocked:
        # registered down and failed before it is started; brought down if up (by hand)
        record = step.get(ch.RecordState)
        running = record is not None and record.state == "running"
        step = _with(step, drop=(ch.RecordState,) if running else (),
                     failure=facts.blocked[profile.name])
    return step


def _elsewhere(step: Step, intent: Intent, host: str) -> Step:
    """SPEC §14.3: the gateway runs on ``host``. A stop is the recorded intent (this host's
    standby goes down too); a restart is a one-shot request that host's agent consumes,
    and this host's standby is left alone. Either way ``host`` acts on it."""
    restart = intent.task == intents.RESTART
    return _with(step, ch.AskOwner(host, restart),
                 drop=(ch.RestartGateway,) if restart else (), standby=None)


def _unsupervised(slot: str, facts: Facts) -> str:
    if facts.scanner is False:  # reconcile cannot help: nothing would supervise the slot
        return (f"{slot} is not supervised: no s6-svscan runs on {facts.settings.scandir} "
                f"(start one there, e.g. `s6-svscan {facts.settings.scandir}`, then retry)")
    return (f"{slot} is not supervised: no s6-supervise listens on it (is s6-svscan running "
            f"on {facts.settings.scandir}? run `hermes-tasks reconcile` as root, then retry)")


def _word(intent: Intent, spec: SlotSpec | None) -> str:
    if intent.gateway:
        return intents.WORDS[intent.task]
    return "registered" if spec is not None and spec.down else "started"


def _up(facts: Facts, slot: str) -> bool:
    rt = facts.runtime.get(slot)
    return bool(rt and rt.up)


def _within_capacity(facts: Facts, desired, max_slots: int) -> set[str]:
    """Slot names within ``max_slots``: default first, then every profile by name."""
    names = {p.slot for p in facts.profiles if p.name not in facts.unplaced}
    names.update(spec.name for p, spec in desired if p is not None)
    return {*by_priority(names)[:max_slots], REGISTRAR}


def by_priority(slots) -> list[str]:
    """Gateway slot names in capacity order: default first, then by name. Past
    ``max_slots`` the last ones are not published, or retired (SPEC §14.7)."""
    return sorted(set(slots), key=lambda n: (n != SLOT_PREFIX + DEFAULT, n))


def _runtime(step: Step, intent: Intent, facts: Facts, spec: SlotSpec | None) -> Step:
    """What must happen to the process (SPEC §6), from the runtime facts alone.

    Nothing is signalled without a supervisor: at boot s6 starts what the down marker says.
    A gateway task on an unsupervised slot fails (nothing is recorded); reconcile rescans.
    """
    # A new or replaced slot starts as its down marker says; the registrar is root's own.
    if (step.slot is None or step.slot == REGISTRAR or step.skip is not None
            or step.has((ch.Publish, ch.Replace, ch.Retire))):
        return step
    rt: Runtime | None = facts.runtime.get(step.slot)
    if rt is None or rt.supervised is None:  # may not tell: leave it to s6
        return step
    explicit = intent.gateway or (intent.task == intents.CREATE and intent.start)
    if rt.supervised is False:
        if explicit:
            return _with(step, drop=_UPDATE + (ch.RecordState,),
                         failure=_unsupervised(step.slot, facts))
        return _with(step, ch.Rescan()) if facts.scanner else step
    owed = step.get(ch.OwedRestarts) or ch.OwedRestarts()
    up_owed = "gateway-up" in owed.pending  # an earlier restart took it down: bring it up
    want_up = spec is not None and not spec.down
    if spec is None:  # a slot whose profile is gone, under gateway.*--all
        want_up = intent.desired == "running" and rt.up
    if not want_up:
        return _with(step, ch.BringDown()) if rt.up or rt.status.wanted_up else step
    if rt.up:
        if owed.gateway or (intent.task == intents.RESTART and (not intent.all or want_up)):
            return _with(step, ch.RestartGateway())
        return step
    if rt.held and not explicit and not rt.hold_lifted and not owed.gateway and not up_owed:
        return _with(step, failure=rt.hold_text())  # SPEC §14.6: until a start or a fix
    if rt.exited and not explicit and not up_owed:
        return _with(step, failure=rt.exit_text())
    if rt.status.wanted_up and not explicit and not up_owed:
        return step  # s6 is bringing it back itself (the 1 s restart delay)
    return _with(step, ch.BringUp())


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def _lines(text: str | None) -> list[str]:
    return [] if text is None else text.splitlines(True)


def diff(step: Step, show_secrets: bool = False) -> str:
    """Unified diff of everything the step changes, one per file.

    Files are labelled ``--- before: <slot>/<file>`` / ``+++ after: <slot>/<file>`` (as
    Ansible's ``--diff``); a mode change is shown in the labels, a ``down`` marker as an
    absent/present pair, a retired slot as present/absent. Secret-looking values are
    masked (:mod:`redact`).
    """
    import difflib  # only for --diff: not on the boot path

    if step.has(ch.Retire):
        return f"--- before: {step.slot} (present)\n+++ after: {step.slot} (absent)\n"
    if step.spec is None or not step.alters:
        return ""
    out: list[str] = []
    changed = step.get((ch.Publish, ch.Replace, ch.WriteFiles))
    files = tuple(step.spec.files) if isinstance(changed, (ch.Publish, ch.Replace)) else (
        changed.files if changed else ())
    before = getattr(changed, "before", {})
    for rel in files:
        old = before.get(rel)
        new = step.spec.files[rel]
        path = f"{step.slot}/{rel}"
        old_label = f"before: {path}" + (" (absent)" if old is None else "")
        new_label = f"after: {path}"
        if old is not None and old[1] != new.mode:
            old_label += f" (mode {_mode(old[1])})"
            new_label += f" (mode {new.mode:04o})"
        old_text, new_text = _text(old and old[0]), _text(new.content)
        chunk = list(difflib.unified_diff(
            _lines(None if old_text is None else redact.text(old_text, show=show_secrets)),
            _lines(redact.text(new_text, before=old_text, show=show_secrets)), old_label,
            new_label))
        if not chunk:  # same bytes: only the mode differs (or an empty file appears)
            chunk = [f"--- {old_label}\n", f"+++ {new_label}\n"]
        out.extend(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in chunk)
    marker = step.get((ch.Publish, ch.Replace, ch.SetMarker))
    down = marker.down if isinstance(marker, ch.SetMarker) else getattr(marker, "marker", None)
    if down is not None:
        state = ("absent", "present") if down else ("present", "absent")
        out.append(f"--- before: {step.slot}/down ({state[0]})\n"
                   f"+++ after: {step.slot}/down ({state[1]})\n")
    return "".join(out)


def _mode(mode: int) -> str:
    return "unknown (not a regular file of ours)" if mode < 0 else f"{mode:04o}"
