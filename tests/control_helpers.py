"""Shared helpers for the gateway.*/profile.* tests against a real s6 tree."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import s6env

make_profile, own = s6env.make_profile, s6env.own


def state_file(home: Path, name: str) -> dict:
    d = home if name == "default" else home / "profiles" / name
    return json.loads((d / "gateway_state.json").read_text())


def tasks(sb: s6env.Sandbox, task: str, *args: str, user=None, ok: bool = True,
          env=None) -> subprocess.CompletedProcess:
    """Run a task; with ``ok`` assert it exited 0 (showing its output when not)."""
    res = s6env.run_tasks(sb, task, *args, user=user, env=env)
    if ok:
        assert res.returncode == 0, f"{task} {args}: rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    return res


def status(sb: s6env.Sandbox, *args: str, user=None) -> dict[str, dict]:
    """``gateway.status --json`` as a dict by profile name."""
    doc = json.loads(tasks(sb, "gateway.status", "--json", *args, user=user).stdout)
    return {g["profile"]: g for g in doc["gateways"]}


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert a clean expected failure: exit 1, one stderr line holding every needle."""
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("hermes-tasks: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def supervised_slots(sb: s6env.Sandbox, name: str, timeout: float = 5.0) -> dict:
    """Wait until the slot of ``name`` has its status file; return its svstat fields."""
    s6env.wait_status_file(sb.slot(name), timeout)
    return s6env.svstat(sb.slot(name))
