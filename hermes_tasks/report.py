"""Ansible-style output: one line per item, a recap, or one JSON object (SPEC §8)."""

from __future__ import annotations

import json
import sys

from . import records
from .changes import AskOwner, CreateProfile, RecordState
from .profiles import escape
from .volfile import shown

RESULTS = ("ok", "changed", "skipped", "failed")
_WORD = {"ok": "ok", "changed": "changed", "skipped": "skipping", "failed": "failed"}


@records.record
class Row:
    """One item of a run: a slot (or a skipped profile) and what happened to it."""

    slot: str | None
    profile: str
    prior_state: str | None
    action: str
    result: str
    message: str = ""
    diff: str = ""  # unified diff shown before the item line with --diff

    def as_json(self) -> dict:
        doc = {"slot": self.slot, "profile": escape(self.profile),
               "prior_state": self.prior_state, "action": self.action,
               "result": self.result, "message": self.message}
        if self.diff:  # only with --diff (SPEC §8: the diff goes into the item's row)
            doc["diff"] = self.diff
        return doc


def stats(rows: list[Row]) -> dict[str, int]:
    return {name: sum(r.result == name for r in rows) for name in RESULTS}


def exit_code(rows: list[Row], multi: bool) -> int:
    """0 when nothing failed; 2 for a multi-item run with a failure, else 1."""
    if any(r.result == "failed" for r in rows):
        return 2 if multi else 1
    return 0


def item_line(row: Row) -> str:
    label = row.profile if row.profile.startswith("profiles/") else f"profiles/{row.profile}"
    target = escape(row.slot or label)
    text = row.action + (f": {row.message}" if row.message else "")
    return f"{_WORD[row.result]}: [{target}] => {shown(text, None)}"  # one line, always


def recap_line(rows: list[Row], host: str = "localhost") -> str:
    s = stats(rows)
    counters = [("ok", s["ok"]), ("changed", s["changed"]), ("unreachable", 0),
                ("failed", s["failed"]), ("skipped", s["skipped"]), ("rescued", 0), ("ignored", 0)]
    return f"{host:<26} : " + " ".join(f"{k}={v:<4}" for k, v in counters).rstrip()


def emit(rows: list[Row], as_json: bool, title: str, check: bool = False, extra: dict | None = None,
         aside: list[Row] = (), out=None, error: str | None = None) -> None:
    """Print the rows for humans (with diffs and a recap) or as one JSON object.

    ``aside`` rows (the registrar) are not among the JSON ``results`` nor its ``stats``
    (they belong in ``extra``); for humans one that is not ok is printed and counted in the
    recap, so ``changed=N`` is every changed line. ``error`` (a failed single target) goes
    into the JSON object; for humans the caller prints it as the one-line error.
    """
    out = out or sys.stdout
    counted = [*rows, *(r for r in aside if r.result != "ok")]
    if as_json:
        doc = {"results": [r.as_json() for r in rows], "stats": stats(rows)}
        if check:
            doc["check"] = True
        if error is not None:
            doc["error"] = error
        doc.update(extra or {})
        out.write(json.dumps(doc) + "\n")
        return
    banner = f"TASK [{title}]" + (" [CHECK MODE]" if check else "")
    parts = [banner + " " + "*" * max(3, 79 - len(banner)) + "\n"]
    for row in counted:
        parts += [row.diff, item_line(row) + "\n"]
    parts.append("\nPLAY RECAP " + "*" * 68 + "\n" + recap_line(counted) + "\n")
    if check:
        parts.append("DRY RUN: nothing was changed\n")
    # One write: stdout is unbuffered in the image (PYTHONUNBUFFERED), and 1000 rows were
    # 2000 system calls.
    out.write("".join(parts))


def warn(message: str) -> None:
    sys.stderr.write(f"hermes-tasks: warning: {shown(message, None)}\n")


def rows_from(steps, errors: dict[str, str], notes: dict[str, list[str]], diff: bool,
              check: bool, show_secrets: bool = False) -> list[Row]:
    """One row per planned step: its result from the plan and what the executor observed."""
    from . import plan

    rows = []
    for step in steps:
        if step.failure:
            result, message = "failed", step.failure
        elif step.slot in errors:
            result, message = "failed", errors[step.slot]
        else:
            result = "skipped" if step.skip is not None else (
                "changed" if step.alters else "ok")
            message = describe(step, check, notes.get(step.slot, ()))
        rows.append(Row(step.slot, step.profile, step.prior_state, step.action, result,
                        message,
                        plan.diff(step, show_secrets) if diff and step.slot_files else ""))
    return rows


def describe(step, check: bool, done: list[str] | tuple = ()) -> str:
    """One line saying what changed (or, in check mode, what would), for the report.

    Each change words itself (:meth:`changes.Change.describe`); in the run, an observed
    change is worded by the executor as it happened (``done``, in the order it happened).
    """
    if step.skip is not None:
        return step.skip
    parts = [text for c in step.changes if not c.observed and not isinstance(c, AskOwner)
             if (text := c.describe(check))]
    if step.standby:
        parts.append(f"standby: running on {step.standby}")
    if asked := step.get(AskOwner):  # SPEC §14.3: the host that runs it acts on the intent
        parts.append(asked.describe(check))
    if check:
        parts += [c.describe(True) for c in step.changes if c.observed]
    else:
        parts.extend(done)
    if step.note and (not parts or step.has(RecordState)):
        parts = [step.note]
    elif step.note and step.has(CreateProfile):  # a profile made on a host not placing it (§13.3)
        parts.append(step.note)
    if step.remark:
        parts.append(step.remark)
    return "; ".join(parts)
