"""Ansible-style output: one line per item, a recap, or one JSON object (SPEC §8)."""

from __future__ import annotations

import dataclasses
import json
import sys

from .profiles import escape

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
    return f"{_WORD[row.result]}: [{target}] => {text}"


def recap_line(rows: list[Row], host: str = "localhost") -> str:
    s = stats(rows)
    counters = [("ok", s["ok"]), ("changed", s["changed"]), ("unreachable", 0),
                ("failed", s["failed"]), ("skipped", s["skipped"]), ("rescued", 0), ("ignored", 0)]
    return f"{host:<26} : " + " ".join(f"{k}={v:<4}" for k, v in counters).rstrip()


def emit(rows: list[Row], as_json: bool, title: str, check: bool = False, extra: dict | None = None,
         aside: list[Row] = (), out=None) -> None:
    """Print the rows for humans (with diffs and a recap) or as one JSON object.

    ``aside`` rows (the registrar) are printed for humans but not counted in the recap;
    in JSON they belong in ``extra``.
    """
    out = out or sys.stdout
    if as_json:
        doc = {"results": [r.as_json() for r in rows], "stats": stats(rows)}
        if check:
            doc["check"] = True
        doc.update(extra or {})
        out.write(json.dumps(doc) + "\n")
        return
    banner = f"TASK [{title}]" + (" [CHECK MODE]" if check else "")
    out.write(banner + " " + "*" * max(3, 79 - len(banner)) + "\n")
    for row in [*rows, *aside]:
        out.write(row.diff)
        out.write(item_line(row) + "\n")
    out.write("\nPLAY RECAP " + "*" * 68 + "\n" + recap_line(rows) + "\n")
    if check:
        out.write("DRY RUN: nothing was changed\n")


def warn(message: str) -> None:
    sys.stderr.write(f"hermes-tasks: warning: {message}\n")
