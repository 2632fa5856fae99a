"""Ansible-style output: one line per item, a recap, or one JSON object (SPEC §8)."""

from __future__ import annotations

import dataclasses
import json
import sys

from .profiles import escape
from .volfile import shown

RESULTS = ("ok", "changed", "skipped", "failed")
_WORD = {"ok": "ok", "changed": "changed", "skipped": "skipping", "failed": "failed"}


@dataclasses.dataclass
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
            result = "skipped" if step.op == plan.SKIP else (
                "changed" if step.changes else "ok")
            message = describe(step, check, notes.get(step.slot, ()))
        rows.append(Row(step.slot, step.profile, step.prior_state, step.action, result,
                        message,
                        plan.diff(step, show_secrets) if diff and step.file_changes else ""))
    return rows


_WOULD = {"up": "would bring up", "down": "would bring down",
          "restart": "would restart the gateway"}


def describe(step, check: bool, done: list[str] | tuple = ()) -> str:
    """One line saying what changed (or, in check mode, what would), for the report."""
    from . import plan

    if step.op == plan.SKIP:
        return step.reason
    parts = []
    if step.create_profile:
        parts.append(("would create " if check else "created ") + f"profiles/{step.profile}")
    if step.op == plan.CREATE:
        parts.append("would be published" if check else "published")
    elif step.op == plan.SWAP:
        parts.append(f"{'would be ' if check else ''}replaced: {step.reason}")
    elif step.op == plan.REMOVE:
        parts.append(f"{'would be ' if check else ''}retired: {step.reason}")
    if step.write and step.op == plan.UPDATE:
        parts.append(("would rewrite " if check else "rewrote ") + ", ".join(step.write))
    if step.set_down is not None and step.op == plan.UPDATE:
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
    if step.record:
        parts.append(("would record" if check else "recorded") + f" {step.record}")
    if step.rescan:
        parts.append("not supervised: would rescan" if check else "not supervised: rescanned")
    if step.standby:
        parts.append(f"standby: running on {step.standby}")
    if step.owner:  # SPEC §14.3: the host that runs it acts on the intent
        what = "to restart it" if step.request else "to stop it"
        parts.append(f"{'would ask' if check else 'asked'} {step.owner}, which runs the "
                     f"gateway, {what}")
    if check:
        if step.sweep is not None:
            parts.append("would remove stale runtime files")
        if step.runtime:
            parts.append(_WOULD[step.runtime])
        if step.restart_logger:
            parts.append("would restart the logger")
        if step.dispose:
            parts.append("would delete the profile" if step.purge
                         else "would move the profile to .trash")
    else:
        parts.extend(done)
    if step.note and (not parts or step.record):
        parts = [step.note]
    elif step.note and step.create_profile:  # a profile made on a host not placing it (§13.3)
        parts.append(step.note)
    if step.remark:
        parts.append(step.remark)
    return "; ".join(parts)
