"""The pure planner: facts + desired slots -> the list of steps that converge them.

Nothing here touches the world, so ``--check`` and ``--diff`` are this plan, printed.
"Identical" follows copier (reference/conventions.md §5): same bytes and same mode; the
``down`` marker and the shared ``supervise/``/``event/`` skeleton are compared too.
"""

from __future__ import annotations

import dataclasses

from . import redact
from .profiles import SLOT_PREFIX, Profile, Skipped
from .render import SlotSpec
from .slots import SlotFacts

# Files whose change must reach a running gateway (read at the next spawn).
GATEWAY_FILES = frozenset({"run", "finish"})
LOGGER_FILES = frozenset({"log/run"})

OK, CREATE, UPDATE, SWAP, REMOVE, SKIP = "ok", "create", "update", "swap", "remove", "skip"

FileFact = tuple[bytes, int] | None  # (content, mode) as found, None when missing


@dataclasses.dataclass
class Step:
    """One slot's planned change.

    ``op`` is what apply does (``ok`` = nothing); ``action`` is the reported word
    (started/registered/skipped/removed). ``before`` keeps the old bytes and mode of every
    file in ``write`` for ``--diff``; ``had_down`` whether the old slot had a ``down`` marker.
    """

    slot: str | None
    profile: str
    prior_state: str | None
    action: str
    op: str
    spec: SlotSpec | None = None
    write: tuple[str, ...] = ()
    set_down: bool | None = None
    fix_skeleton: bool = False
    restart_gateway: bool = False
    restart_logger: bool = False
    reason: str = ""
    before: dict[str, FileFact] = dataclasses.field(default_factory=dict)
    had_down: bool | None = None
    pending: frozenset[str] = frozenset()  # restarts an earlier run left owed
    bring_up: bool = False  # an earlier restart took the gateway down: bring it back up
    litter: tuple[str, ...] = ()  # temp files an interrupted run left in the slot
    sweep: tuple[str, ...] | None = None  # profile dir parts whose stale files to sweep

    @property
    def changes(self) -> bool:
        return self.op not in (OK, SKIP)


def plan_slot(spec: SlotSpec, facts: SlotFacts | None, profile: str,
              prior_state: str | None) -> Step:
    """Compare one desired slot with what is on disk.

    * absent → ``create`` (staging dir + one rename);
    * not updatable in place (``facts.structural``) → ``swap`` (sequence B′);
    * otherwise → ``update`` of exactly the differing files / marker / skeleton, with the
      restart handlers their change needs, or ``ok`` when all is identical.
    """
    action = "registered" if spec.down else "started"
    step = Step(spec.name, profile, prior_state, action, OK, spec)
    if facts is None:
        step.op = CREATE
        step.write = tuple(spec.files)
        step.before = dict.fromkeys(spec.files)
        step.had_down = False
        step.set_down = spec.down or None
        return step
    step.had_down = facts.down
    if facts.structural:
        step.op, step.reason = SWAP, f"{spec.name} {facts.structural}"
        step.write = tuple(spec.files)
        step.before = {rel: facts.files.get(rel) for rel in spec.files}
        if facts.down != spec.down:
            step.set_down = spec.down
        return step
    changed = tuple(rel for rel, f in spec.files.items()
                    if facts.files.get(rel) != (f.content, f.mode))
    if changed:
        step.write = changed
        step.before = {rel: facts.files.get(rel) for rel in changed}
    step.pending = facts.pending
    step.bring_up = "gateway-up" in facts.pending
    step.restart_gateway = bool(GATEWAY_FILES.intersection(changed)) or bool(
        facts.pending & {"gateway", "gateway-up"})
    step.restart_logger = spec.logged and (bool(LOGGER_FILES.intersection(changed))
                                           or "logger" in facts.pending)
    if facts.down != spec.down:
        step.set_down = spec.down
    step.fix_skeleton = not facts.skeleton_ok
    step.litter = facts.litter
    if (changed or step.set_down is not None or step.fix_skeleton or facts.pending
            or facts.litter):
        step.op = UPDATE
    return step


def build(desired: list[tuple[Profile | None, SlotSpec]], facts: dict[str, SlotFacts | None],
          skipped: list[Skipped], existing: list[str], remove_unknown: bool = True) -> list[Step]:
    """The whole reconcile plan, in report order.

    ``desired`` is default first, then named profiles by name (plus the registrar, whose
    profile is None); ``existing`` lists the visible slot names in the scandir. With
    ``remove_unknown``, ``gateway-*`` slots with no profile are retired.
    """
    steps: list[Step] = []
    wanted = set()
    for profile, spec in desired:
        wanted.add(spec.name)
        label = profile.name if profile else spec.name
        prior = profile.prior_state if profile else None
        step = plan_slot(spec, facts.get(spec.name), label, prior)
        if profile and profile.stale:
            step.sweep = profile.parts
        steps.append(step)
    for skip in skipped:
        steps.append(Step(None, skip.label, None, "skipped", SKIP, reason=skip.reason))
    if remove_unknown:
        for name in existing:
            if name.startswith(SLOT_PREFIX) and name not in wanted:
                steps.append(Step(name, name[len(SLOT_PREFIX):], None, "removed", REMOVE,
                                  reason="its profile no longer exists"))
    return steps


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def _lines(text: str | None) -> list[str]:
    return [] if text is None else text.splitlines(True)


def diff(step: Step) -> str:
    """Unified diff of everything the step changes, one per file.

    Files are labelled ``--- before: <slot>/<file>`` / ``+++ after: <slot>/<file>`` (as
    Ansible's ``--diff``); a mode change is shown in the labels, a ``down`` marker as an
    absent/present pair, a retired slot as present/absent. Secret-looking values are
    masked (:mod:`redact`).
    """
    import difflib  # only for --diff: not on the boot path

    if step.op == REMOVE:
        return f"--- before: {step.slot} (present)\n+++ after: {step.slot} (absent)\n"
    if step.spec is None or not step.changes:
        return ""
    out: list[str] = []
    for rel in step.write:
        old = step.before.get(rel)
        new = step.spec.files[rel]
        path = f"{step.slot}/{rel}"
        old_label = f"before: {path}" + (" (absent)" if old is None else "")
        new_label = f"after: {path}"
        if old is not None and old[1] != new.mode:
            old_label += f" (mode {_mode(old[1])})"
            new_label += f" (mode {new.mode:04o})"
        old_text, new_text = _text(old and old[0]), _text(new.content)
        chunk = list(difflib.unified_diff(
            _lines(None if old_text is None else redact.text(old_text)),
            _lines(redact.text(new_text, before=old_text)), old_label, new_label))
        if not chunk:  # same bytes: only the mode differs (or an empty file appears)
            chunk = [f"--- {old_label}\n", f"+++ {new_label}\n"]
        out.extend(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in chunk)
    if step.set_down is not None:
        state = ("absent", "present") if step.set_down else ("present", "absent")
        out.append(f"--- before: {step.slot}/down ({state[0]})\n"
                   f"+++ after: {step.slot}/down ({state[1]})\n")
    return "".join(out)


def _mode(mode: int) -> str:
    return "unknown (not a regular file of ours)" if mode < 0 else f"{mode:04o}"
