"""The s6 layer maps every failure to a named error, and tasks turn those into one line.

Unit tests use a fake tool directory (tiny scripts exiting as measured on s6 2.11);
the last tests use the real tools and a real s6-svscan.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

import pytest
import s6env
from control_helpers import make_profile, one_line_error, tasks

from hermes_tasks import supervision
from hermes_tasks.s6 import S6, NoSuchSlot, NotSupervised, PermissionDenied, S6Error, Timeout


def fake_tool(bin_dir: Path, name: str, rc: int = 0, stderr: str = "", stdout: str = "",
              sleep: float = 0) -> Path:
    """A shell script standing in for an s6 tool; it appends its argv to ``calls.log``."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(
        "#!/bin/sh\n"
        f'echo "{name} $*" >> {shlex.quote(str(bin_dir / "calls.log"))}\n'
        + (f"sleep {sleep}\n" if sleep else "")
        + (f"printf '%s\\n' {shlex.quote(stdout)}\n" if stdout else "")
        + (f"printf '%s\\n' {shlex.quote(stderr)} >&2\n" if stderr else "")
        + f"exit {rc}\n")
    path.chmod(0o755)
    return path


def calls(bin_dir: Path) -> list[str]:
    try:
        return (bin_dir / "calls.log").read_text().splitlines()
    except FileNotFoundError:
        return []


@pytest.fixture
def slot(tmp_path):
    path = tmp_path / "scan" / "gateway-x"
    path.mkdir(parents=True)
    return path


CASES = [
    # tool, rc, stderr (as measured), call, expected error, words in its message
    ("s6-svc", 100, "s6-svc: fatal: unable to control {slot}: supervisor not listening",
     "svc", NotSupervised, "no s6-supervise is listening"),
    ("s6-svc", 111, "s6-svc: fatal: unable to control {slot}: Permission denied",
     "svc", PermissionDenied, "permission denied"),
    ("s6-svc", 99, "s6-svlisten1: fatal: timed out", "svc_wait", Timeout, "timed out"),
    ("s6-svc", 111, "s6-svlisten1: fatal: unable to s6_svstatus_read: No such file or directory",
     "svc_wait", NotSupervised, "s6_svstatus_read"),
    ("s6-svc", 111, ("s6-svlisten1: fatal: unable to subscribe to events for {slot}: "
     "Permission denied"), "svc_wait", PermissionDenied, "subscribe"),
    ("s6-svc", 100, "s6-svc: usage: s6-svc [ -wu ] ...", "svc", S6Error, "usage"),
    ("s6-svscanctl", 100, ("s6-svscanctl: fatal: unable to control {scan}: "
     "supervisor not listening"), "svscanctl", NotSupervised, "no s6-svscan is listening"),
    ("s6-svscanctl", 111, "s6-svscanctl: fatal: unable to control {scan}: Permission denied",
     "svscanctl", PermissionDenied, "permission denied"),
]


def call(s6: S6, how: str, slot: Path):
    if how == "svc":
        return s6.svc(str(slot), "-u")
    if how == "svc_wait":
        return s6.svc(str(slot), "-wu", "-u", wait_ms=100)
    return s6.svscanctl(str(slot.parent), "-a")


@pytest.mark.parametrize("tool, rc, stderr, how, error, words", CASES)
def test_exit_codes_map_to_named_errors(tmp_path, slot, tool, rc, stderr, how, error, words):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, tool, rc, stderr.format(slot=slot, scan=slot.parent))
    with pytest.raises(S6Error) as info:
        call(S6(str(bin_dir)), how, slot)
    assert type(info.value) is error
    assert words in str(info.value)
    assert str(slot.parent) in str(info.value)  # names the path it was about
    assert "\n" not in str(info.value)
    assert len(calls(bin_dir)) == 1


def test_arguments_and_parsing(tmp_path, slot):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "s6-svc")
    s6 = S6(str(bin_dir))
    s6.svc(str(slot), "-wD", "-d", wait_ms=2500)
    assert calls(bin_dir) == [f"s6-svc -T2500 -wD -d {slot}"]


def test_a_hanging_tool_times_out(tmp_path, slot):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "s6-svc", sleep=5)
    s6 = S6(str(bin_dir))
    s6.call_timeout = 0.3
    started = time.monotonic()
    with pytest.raises(Timeout, match="did not answer within 0.3 s"):
        s6.svc(str(slot), "-u")
    assert time.monotonic() - started < 3


def test_missing_slot_runs_nothing(tmp_path):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "s6-svc")
    s6 = S6(str(bin_dir))
    missing = str(tmp_path / "scan" / "gateway-none")
    with pytest.raises(NoSuchSlot, match="no slot at"):
        s6.svc(missing, "-u")
    assert calls(bin_dir) == []


def test_missing_or_unexecutable_tool(tmp_path, slot):
    with pytest.raises(S6Error, match=r"not found: is s6_bin_dir \(/nonexistent\) right"):
        S6("/nonexistent").svc(str(slot), "-u")
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "s6-svc").chmod(0o644)  # not even root executes it
    with pytest.raises(PermissionDenied, match="cannot execute"):
        S6(str(bin_dir)).svc(str(slot), "-u")


# ---------------------------------------------------------------- through a task


def listening(slot: Path):
    """Hold the slot's control FIFO open for reading: it now looks supervised."""
    (slot / "supervise").mkdir(exist_ok=True)
    fifo = slot / "supervise" / "control"
    if not fifo.exists():
        os.mkfifo(fifo)
    return os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)


@pytest.mark.parametrize("rc, stderr, words, kept", [
    (111, "s6-svc: fatal: unable to control {slot}: Permission denied",
     ["gateway-default: permission denied", "run this as root or as the service user"], False),
    (100, "s6-svc: fatal: unable to control {slot}: supervisor not listening",
     ["gateway-default is not supervised", "hermes-tasks reconcile"], False),
    # s6 accepted, but no s6-svscan runs here: --wait fails at once, the intent stays
    (0, "", ["gateway-default cannot be ready: no s6-svscan runs on"], True),
])
def test_a_failing_s6_is_one_line(sandbox, rc, stderr, words, kept):
    """gateway.start --wait with a fake s6-svc: one line, exit 1, no traceback.

    desired_state is written before s6 is told, and put back when s6 refuses (a failed
    wait still counts as accepted).
    """
    sb = sandbox
    make_profile(sb.home, "default", {"gateway_state": "stopped"})
    s6env.run_tasks(sb, "reconcile")  # no supervisor: the slot is published, down
    slot = sb.slot("default")
    bin_dir = sb.root / "fakebin"
    bin_dir.mkdir()
    for tool in sb.cmd_dir.iterdir():
        (bin_dir / tool.name).symlink_to(tool)
    (bin_dir / "s6-svc").unlink()
    fake_tool(bin_dir, "s6-svc", rc, stderr.format(slot=slot))
    fd = listening(slot)
    try:
        # the last --var wins: the fake tools replace the sandbox's s6_bin_dir
        res = s6env.run_tasks(sb, None, argv=[
            "python", "-m", "hermes_tasks", "gateway.start", "--wait", "--timeout", "1",
            *s6env.inventory_args(sb), "--var", f"s6_bin_dir={bin_dir}"])
    finally:
        os.close(fd)
    one_line_error(res, *words)
    assert "Traceback" not in res.stderr
    assert calls(bin_dir)[:1] == [f"s6-svc -U {slot}"]  # up, and the marker away
    doc = json.loads((sb.home / "gateway_state.json").read_text())
    assert doc.get("desired_state") == ("running" if kept else None)
    assert doc["gateway_state"] == "stopped"


# ---------------------------------------------------------------- real s6


def test_real_tools_without_a_supervisor(sandbox):
    sb = sandbox
    slot = s6env.publish_test_slot(sb.scandir, "gateway-x", "#!/bin/sh\nexec sleep 100\n")
    s6 = S6(str(sb.cmd_dir))
    for fn in (lambda: s6.svc(str(slot), "-u"),
               lambda: s6.svc(str(slot), "-wu", "-u", wait_ms=200),
               lambda: s6.svscanctl(str(sb.scandir), "-a")):
        with pytest.raises(NotSupervised):
            fn()
    assert supervision.supervised(str(slot)) is False
    assert s6.scanner_running(str(sb.scandir)) is False


def test_real_tools_wait_timeout(sandbox, supervisor):
    sb = sandbox
    slot = s6env.publish_test_slot(sb.scandir, "gateway-x", "#!/bin/sh\nexec sleep 100\n",
                                   down=True)
    supervisor.rescan()
    s6env.wait_status_file(slot)
    s6 = S6(str(sb.cmd_dir))
    with pytest.raises(Timeout):
        s6.svc(str(slot), "-wu", "-d", wait_ms=200)


def test_real_tools_permission_denied(root_sandbox, supervisor):
    """A slot that was not pre-seeded: s6 refuses the service user (exit 111)."""
    sb = root_sandbox
    slot = s6env.publish_test_slot(sb.scandir, "gateway-x", "#!/bin/sh\nexec sleep 100\n")
    supervisor.rescan()
    s6env.wait_up(slot)
    probe = ("import sys\nfrom hermes_tasks.s6 import S6\ns6 = S6(sys.argv[1])\n"
             "for fn in (lambda: s6.svc(sys.argv[2], '-d'),\n"
             "           lambda: s6.svscanctl(sys.argv[3], '-a')):\n"
             "    try:\n        fn()\n    except Exception as exc:\n"
             "        print(type(exc).__name__)\n")
    res = s6env.run_tasks(sb, None, argv=["python", "-c", probe, str(sb.cmd_dir), str(slot),
                                          str(sb.scandir)], user=sb.user)
    assert res.stdout.split() == ["PermissionDenied"] * 2, res.stdout + res.stderr
    assert s6env.svstat(slot)["up"]


def test_real_status_of_an_unsupervised_slot_reads_down(sandbox):
    make_profile(sandbox.home, "alice", {"desired_state": "running"})
    tasks(sandbox, "reconcile")  # published, nobody supervises it
    res = tasks(sandbox, "gateway.status", "--json", "-p", "alice")
    [doc] = json.loads(res.stdout)["gateways"]
    assert doc["registered"] is True and doc["up"] is False and doc["pid"] is None
    assert doc["desired_state"] == "running"
    one_line_error(tasks(sandbox, "gateway.restart", "-p", "alice", ok=False),
                   "gateway-alice is not supervised")
