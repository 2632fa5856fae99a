"""One output envelope (SPEC §8): with --json every task and every error prints exactly one
JSON object on stdout; an error's object holds ``error`` and ``code`` (the exit code)."""

from __future__ import annotations

import json
import subprocess

import pytest
import s6env
from control_helpers import make_profile


def one_object(res: subprocess.CompletedProcess) -> dict:
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.stdout  # exactly one object, nothing else on stdout
    doc = json.loads(lines[0])
    assert isinstance(doc, dict)
    assert "Traceback" not in res.stderr, res.stderr
    return doc


@pytest.mark.parametrize("args", [
    ("reconcile", "--json", "--var", "nosuch=1"),            # unknown --var (usage error)
    ("gateway.start", "--json", "-p", "default", "--var", "lock_timeout=abc"),  # wrong type
    ("gateway.status", "-p", "nosuch", "--json"),            # no such profile
    ("gateway.stop", "-p", "nosuch", "--json"),
    ("profile.create", "NOT VALID", "--json"),               # bad name
    ("profile.delete", "default", "--json"),                 # refused
    ("gateway.restart", "-p", "a", "--all", "--json"),       # both
    ("reconcile", "--json", "--no-such-flag"),               # Invoke's own parse error
    ("gateway.start", "--json", "--timeout", "soon"),
])
def test_every_usage_error_is_one_json_object(sandbox, args):
    res = s6env.run_tasks(sandbox, *args)
    assert res.returncode == 1, (res.stdout, res.stderr)
    doc = one_object(res)
    assert doc["code"] == 1 and doc["error"], doc
    assert doc["results"] == [] and doc["stats"]["failed"] == 0


# (slot.list without a scandir is an empty list, exit 0: SPEC §15, tests/test_upstream_compat.py)
@pytest.mark.parametrize("task", ["gateway.status", "reconcile", "gateway.stop"])
def test_a_missing_scandir_is_one_json_object(sandbox, task):
    args = [task, "--json", *s6env.inventory_args(sandbox),
            "--var", f"scandir={sandbox.root / 'nowhere'}"]  # the last --var wins
    if task == "gateway.stop":
        args += ["--all"]
    res = s6env.run_tasks(sandbox, *args, inventory_vars=False)
    assert res.returncode == 1, (res.stdout, res.stderr)
    doc = one_object(res)
    assert "nowhere" in doc["error"] and doc["code"] == 1
    # the one-line error on stderr says the same
    assert res.stderr.strip() == f"hermes-tasks: error: {doc['error']}"


def test_a_failed_single_target_is_its_rows_with_the_error(sandbox):
    """No supervisor: gateway.start -p alice cannot start it; the rows, error and code 1."""
    make_profile(sandbox.home, "alice")
    assert s6env.run_tasks(sandbox, "reconcile").returncode == 0
    res = s6env.run_tasks(sandbox, "gateway.start", "-p", "alice", "--json")
    assert res.returncode == 1, (res.stdout, res.stderr)
    doc = one_object(res)
    assert doc["code"] == 1 and "gateway-alice" in doc["error"]
    assert [r["result"] for r in doc["results"]] == ["failed"]


def test_a_closed_pipe_stays_quiet(sandbox):
    make_profile(sandbox.home, "alice")
    python, extra = s6env.python_for(None)
    cmd = [python, "-m", "hermes_tasks", "reconcile", "--json", "--var",
           "nosuch=1", *s6env.inventory_args(sandbox)]
    for argv in (cmd, cmd[:5] + cmd[7:]):  # an error and a run, stdout closed at once
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=s6env.tool_env(sandbox, extra), cwd=sandbox.root)
        proc.stdout.close()
        err = proc.stderr.read().decode()
        code = proc.wait(60)
        assert "Traceback" not in err and "Broken pipe" not in err, err
        assert code in (0, 1), (code, err)
