"""A newcomer's first hour (issue 20, item 9): set-up, the CLI's errors and list, the demo."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import s6env

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hermes_tasks", *args], capture_output=True,
                          text=True, timeout=60, cwd="/")


def test_mistyped_task_gets_one_line_with_a_suggestion():
    res = cli("gateway.stauts")
    assert res.returncode == 1
    assert res.stderr == ("hermes-tasks: no task 'gateway.stauts' — did you mean "
                          "'gateway.status'? (hermes-tasks --list)\n")
    res = cli("frobnicate")
    assert (res.returncode, res.stderr) == (1, "hermes-tasks: no task 'frobnicate' "
                                               "(hermes-tasks --list)\n")


def test_mistyped_flag_gets_one_line_with_a_suggestion():
    res = cli("gateway.status", "--jsn")
    assert res.returncode == 1
    assert res.stderr == ("hermes-tasks: gateway.status has no flag '--jsn' — did you mean "
                          "'--json'? (hermes-tasks --help gateway.status)\n")
    res = cli("--lst")
    assert res.returncode == 1
    assert res.stderr.startswith("hermes-tasks: no option '--lst' — did you mean '--list'?")
    assert "Traceback" not in res.stderr


def test_list_shows_every_summary_whole():
    """Each task's summary in --list is a complete sentence (Invoke shows the first line)."""
    res = cli("--list")
    assert res.returncode == 0
    summaries: dict[str, str] = {}
    name = None
    for line in res.stdout.splitlines()[1:]:
        m = re.match(r"^  (\S+)\s+(.*)$", line)
        if m:
            name = m.group(1)
            summaries[name] = m.group(2)
        elif name and line.strip():
            summaries[name] += " " + line.strip()
    assert "gateway.status" in summaries and len(summaries) == 10
    for task, text in summaries.items():
        assert text.endswith((".", ")")) and not text.endswith(","), (task, text)


def test_setup_installs_every_program_the_tests_call():
    """Each external program a test runs by name or path has its package in scripts/setup.sh."""
    setup = (REPO / "scripts" / "setup.sh").read_text()
    for package, program in (("iproute2", "/usr/sbin/ip"), ("util-linux", "unshare"),
                             ("openssh-server", "/usr/sbin/sshd"), ("openssh-client", "ssh-keygen"),
                             ("mount", "mount"), ("passwd", "useradd"), ("s6", "s6-svscan"),
                             ("execline", "execlineb"), ("shellcheck", "shellcheck")):
        assert f"{package}:{program}" in setup, (package, program)
    tests = "\n".join(p.read_text() for p in (REPO / "tests").glob("*.py"))
    assert "/usr/sbin/ip" in tests  # the ports test's network namespace (why iproute2)


def test_reconcile_without_a_supervisor_says_nothing_starts_the_gateways(sandbox):
    """No s6-svscan on the scandir: a started slot's row says it is not supervised."""
    s6env.make_profile(sandbox.home, "default", {"desired_state": "running"})
    s6env.make_profile(sandbox.home, "bob", {"desired_state": "stopped"})
    res = s6env.run_tasks(sandbox, "reconcile")
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if "[gateway-default]" in x)
    assert f"not supervised: no s6-svscan runs on {sandbox.scandir}" in line, line
    bob = next(x for x in res.stdout.splitlines() if "[gateway-bob]" in x)
    assert "not supervised" not in bob and "registered" in bob
    check = s6env.run_tasks(sandbox, "reconcile", "--check")
    assert "not supervised: no s6-svscan runs on" in check.stdout


def test_gateway_stop_without_a_supervisor_says_what_to_start(sandbox):
    """The hint names the missing s6-svscan, not a reconcile that cannot help."""
    s6env.make_profile(sandbox.home, "default", {"desired_state": "running"})
    assert s6env.run_tasks(sandbox, "reconcile").returncode == 0
    res = s6env.run_tasks(sandbox, "gateway.stop")
    assert res.returncode == 1
    assert res.stderr == (f"hermes-tasks: error: gateway-default is not supervised: no "
                          f"s6-svscan runs on {sandbox.scandir} (start one there, e.g. "
                          f"`s6-svscan {sandbox.scandir}`, then retry)\n")
