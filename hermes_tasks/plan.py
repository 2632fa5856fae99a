"""The pure planner: facts + desired slots -> the list of steps that converge them.

Nothing here touches the world, so ``--check`` and ``--diff`` are this plan, printed.
"""

from __future__ import annotations

import dataclasses
import difflib

from .profiles import SLOT_PREFIX, Profile, Skipped
from .render import SlotSpec
from .slots import SlotFacts

# Files whose change must reach a running gateway (read at the next spawn).
GATEWAY_FILES = {"run", "finish"}
LOGGER_FILES = {"log/run"}

OK, CREATE, UPDATE, SWAP, REMOVE, SKIP = "ok", "create", "update", "swap", "remove", "skip"


@dataclasses.dataclass
class Step:
    """One slot's planned change.

    ``op`` is what apply does (``ok`` = nothing); ``action`` is the reported word
    (started/registered/skipped/removed). ``before`` keeps the old bytes of every file in
    ``write`` for ``--diff``.
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
    before: dict[str, bytes | None] = dataclasses.field(default_factory=dict)
    sweep: tuple[str, ...] | None = None  # profile dir parts whose stale files to sweep

    @property
    def changes(self) -> bool:
        return self.op not in (OK, SKIP)


def plan_slot(spec: SlotSpec, facts: SlotFacts | None, profile: str,
              prior_state: str | None) -> Step:
    """Compare one desired slot with what is on disk."""
    action = "registered" if spec.down else "started"
    step = Step(spec.name, profile, prior_state, action, OK, spec)
    if facts is None:
        step.op = CREATE
        step.write = tuple(spec.files)
        step.before = dict.fromkeys(spec.files)
        return step
    if facts.structural:
        step.op, step.reason = SWAP, f"{spec.name} {facts.structural}"
        step.write = tuple(spec.files)
        step.before = {rel: (facts.files.get(rel) or (None,))[0] for rel in spec.files}
        return step
    changed = tuple(rel for rel, f in spec.files.items()
                    if facts.files.get(rel) != (f.content, f.mode))
    if changed:
        step.write = changed
        step.before = {rel: (facts.files.get(rel) or (None,))[0] for rel in changed}
        step.restart_gateway = bool(GATEWAY_FILES.intersection(changed))
        step.restart_logger = bool(LOGGER_FILES.intersection(changed))
    if facts.down != spec.down:
        step.set_down = spec.down
    step.fix_skeleton = not facts.skeleton_ok
    if changed or step.set_down is not None or step.fix_skeleton:
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
        step = plan_slot(spec, facts.get(spec.name), label, profile.prior_state if profile else None)
        if profile:
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


def diff(step: Step) -> str:
    """Unified diff of every file the step writes (``--- before`` / ``+++ after``)."""
    if step.spec is None:
        return ""
    out = []
    for rel in step.write:
        old = step.before.get(rel)
        new = step.spec.files[rel].content
        old_lines = [] if old is None else old.decode("utf-8", "replace").splitlines(True)
        new_lines = new.decode("utf-8", "replace").splitlines(True)
        path = f"{step.slot}/{rel}"
        out.extend(difflib.unified_diff(old_lines, new_lines, f"before: {path}", f"after: {path}"))
        if out and not out[-1].endswith("\n"):
            out.append("\n")
    if step.set_down is not None:
        out.append(f"{'+' if step.set_down else '-'} {step.slot}/down\n")
    return "".join(out)
