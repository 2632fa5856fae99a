#!/usr/bin/env python3
"""Reliability records: tests write them, this script renders RELIABILITY.md from them.

Every reliability/security test module declares ``CASES = {case_id: "what is tried"}``.
When a case has passed its assertions the test calls :func:`record` with how many times it
was tried, the outcome seen and any measured figures; one JSON file per case lands in the
results directory (``$HERMES_RELIABILITY_RESULTS``, default ``<repo>/.reliability/``).

``python tests/reliability_report.py`` renders ``RELIABILITY.md`` from the declared cases and
the latest records (``--check`` only verifies that the file lists every declared case).
``tests/test_reliability_doc.py`` fails when a declared case is missing from the file.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
DOC = REPO_ROOT / "RELIABILITY.md"
MODULE_GLOBS = ("test_reliability_*.py", "test_security_*.py", "test_injection.py",
                "test_privilege_audit.py")


def results_dir() -> Path:
    return Path(os.environ.get("HERMES_RELIABILITY_RESULTS") or REPO_ROOT / ".reliability")


def record(case: str, tries: int, outcome: str, test: str = "", **measures) -> None:
    """Write the record of a passed case (called after its assertions held).

    ``outcome`` is one sentence stating what happened every time; ``measures`` are figures
    worth printing (durations, counts). Records never claim a traceback or lost data: a test
    that saw one fails before it gets here.
    """
    directory = results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    doc = {
        "case": case, "tries": int(tries), "outcome": outcome,
        "test": test or os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
        "measures": measures, "traceback": False, "data_lost": False,
        "recorded_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    tmp = directory / f".{case}.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
    os.replace(tmp, directory / f"{case}.json")


def test_modules() -> list[str]:
    names = set()
    for pattern in MODULE_GLOBS:
        names.update(p.stem for p in TESTS_DIR.glob(pattern))
    return sorted(names)


def declared_cases() -> dict[str, tuple[str, str]]:
    """``{case_id: (description, module)}`` from every module's ``CASES``."""
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    out: dict[str, tuple[str, str]] = {}
    for name in test_modules():
        module = importlib.import_module(name)
        for case, text in getattr(module, "CASES", {}).items():
            if case in out:
                raise ValueError(f"case {case} declared twice ({out[case][1]}, {name})")
            out[case] = (text, name)
    return out


def load_results() -> dict[str, dict]:
    out = {}
    directory = results_dir()
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            try:
                doc = json.loads(path.read_text())
            except ValueError:
                continue
            out[doc.get("case", path.stem)] = doc
    return out


def _measures(doc: dict) -> str:
    items = doc.get("measures") or {}
    parts = []
    for key, value in items.items():
        if isinstance(value, float):
            value = f"{value:.3g}"
        parts.append(f"{key}={value}")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# What these tests found, and what was done about it (kept by hand: a finding is history).
FINDINGS = [
    ("crash.points.profile", "a crash between creating SOUL.md and writing it left an empty "
     "SOUL.md that every later `profile.create` took for the user's",
     "SOUL.md is now written to a temp file and hard-linked into place "
     "(`fsops.write_exclusive`): whole or absent, never replacing one"),
    ("crash.points.reconcile", "a crash after a slot's `run` was rewritten but before the "
     "restart (or between its down and up) left the gateway on the old script, or down; the "
     "next reconcile saw identical files and did nothing",
     "restarts owed are recorded first in `<slot>/data/restart-pending` and finished by the "
     "next run (apply.py/slots.py)"),
    ("concurrency.storm.root", "reconcile read the profiles' states before taking the lock, so "
     "a `gateway.stop`/`restart` recorded meanwhile was undone by a stale plan (a down marker "
     "put back under `desired_state: running`)",
     "profiles are discovered under the lock, with the slot facts (engine.py)"),
    ("concurrency.storm.root", "`profile.delete` skipped its reconcile when it had seen no "
     "slot; a `profile.create` publishing one meanwhile left a slot with no profile",
     "delete always reconciles (under the lock) after moving the profile (lifecycle.py)"),
    ("growth.boot_log.10000_runs", "rotating only once the file was *at or above* the limit let "
     "`container-boot.log` + `.1` reach twice the limit plus two runs",
     "the log rotates before a run's lines would take it past the limit; a torn last line "
     "is closed before appending; the log is fsynced"),
    ("security.hardlink.boot_log", "root appended to whatever inode the boot-log name held and "
     "chowned a file it had only checked, not created, to the service user",
     "the log is created with O_EXCL before any chown; a hard-linked log is moved aside to "
     "`.1`, never appended to"),
    ("input.inventory.deep", "inventories nested too deeply, holding an impossible date, "
     "naming a FIFO, with children that are not mappings, `lock_timeout: .nan`, or uids past "
     "32 bits ended in a traceback, a hang, or an unbounded wait",
     "inventory.py turns each into a one-line error naming the file and key"),
    ("input.state.long_value", "a state value of any length was copied into every report and "
     "boot-log line", "values over 64 characters count as no state, with a warning"),
    ("input.scandir.missing", "`profile.create` created the profile before finding the "
     "scandir missing; `slot.list` reported an empty list", "both now stop first with "
     "one line naming the scandir (registrar.py, commands/slot.py)"),
]


def render(cases: dict[str, tuple[str, str]], results: dict[str, dict]) -> str:
    groups: dict[str, list[str]] = {}
    for case in sorted(cases):
        groups.setdefault(cases[case][1], []).append(case)
    total_tries = sum(results[c]["tries"] for c in cases if c in results)
    lines = [
        "# Reliability and security: what was tried, and what happened",
        "",
        "Generated by `python tests/reliability_report.py` from the records the tests in",
        "`tests/test_reliability_*.py`, `tests/test_security_*.py` and `tests/test_injection.py`",
        "write when a case passes (`.reliability/<case>.json`). `tests/test_reliability_doc.py`",
        "fails when a case declared by a test is missing here. Every row is a passed test: no",
        "case ended in a Python traceback or in lost data; a case that did would fail its test",
        "and leave no record.",
        "",
        f"Cases: {len(cases)}; recorded: {sum(c in results for c in cases)}; "
        f"total tries: {total_tries}.",
        "",
        "How: `tests/reliability_kit.py` holds the checks every attack ends with (visible slots "
        "complete, no supervisor on anything staged or incomplete, every gateway attached to "
        "its logger, profile data byte-identical outside what hermes-tasks owns) and the "
        "crash-point driver (`reliability_kit.py crash K -- TASK…` runs the real CLI and "
        "SIGKILLs itself before its K-th file-system or s6 operation). Reproduce a random "
        "run with the `seed` shown (`HT_CRASH_SEED`, `HT_STORM_SEED`).",
        "",
        "## Found and fixed",
        "",
        "| found by | problem | fix |",
        "|---|---|---|",
        *(f"| `{c}` | {_cell(p)} | {_cell(f)} |" for c, p, f in FINDINGS),
        "",
    ]
    for module in sorted(groups):
        lines += [f"## `tests/{module}.py`", "",
                  "| case | what is tried | tries | outcome | measured |",
                  "|---|---|---:|---|---|"]
        for case in groups[module]:
            text = cases[case][0]
            doc = results.get(case)
            if doc is None:
                lines.append(f"| `{case}` | {_cell(text)} | – | not recorded yet | |")
                continue
            lines.append(f"| `{case}` | {_cell(text)} | {doc['tries']} | "
                         f"{_cell(doc['outcome'])} | {_cell(_measures(doc))} |")
        lines.append("")
    return "\n".join(lines)


def missing_from_doc(cases, text: str) -> list[str]:
    return sorted(c for c in cases if f"`{c}`" not in text)


def main(argv: list[str]) -> int:
    cases = declared_cases()
    if "--check" in argv:
        missing = missing_from_doc(cases, DOC.read_text() if DOC.exists() else "")
        for case in missing:
            print(f"RELIABILITY.md does not list {case}", file=sys.stderr)
        return 1 if missing else 0
    results = load_results()
    DOC.write_text(render(cases, results))
    unrecorded = [c for c in cases if c not in results]
    print(f"wrote {DOC} ({len(cases)} cases, {len(unrecorded)} without a record)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    raise SystemExit(main(sys.argv[1:]))
