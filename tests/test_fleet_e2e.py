"""One owner per profile with the REAL gateway (hermes-agent 0.19.0): two hosts, one volume.

Two supervisors ("hosts") with their own scandirs share one ``hermes_home``; the real
gateway of one profile runs on exactly one of them, and moves to the other after the
owner's supervision tree ends (SPEC §12, §13.1).
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest
import s6env
from test_e2e_hermes import GATEWAY_TIMEOUT, hermes_bin  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e


def run(sb, hermes, home, host_id, task, *args):
    res = s6env.run_tasks(sb, None, argv=[
        "python", "-m", "hermes_tasks", task, *args, *s6env.inventory_args(sb),
        "--var", f"hermes_bin={hermes}", "--var", f"hermes_home={home}",
        "--var", f"host_id={host_id}", "--var", "shared_volume=true",
        "--var", "gateway_profiles=[alice]",
        # hermes's own respawn-storm breaker would refuse the many starts of a test run.
        "--var", "extra_env={HERMES_GATEWAY_MAX_STARTS: '0'}"])
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 0, f"{task} {args}: {res.stdout}\n{res.stderr}"
    return res


def gateways(hermes, home) -> list[int]:
    """Pids of every real gateway process of alice on ``home`` (not data/own shells; other
    test sessions on this machine run gateways of their own)."""
    return [p.pid for p in s6env.processes()
            if len(p.cmdline) > 2 and p.cmdline[1] == str(hermes) and p.cwd == str(home)
            and p.cmdline[2:] == ("-p", "alice", "gateway", "run", "--replace")]


def running_pid(home) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        doc = json.loads((home / "profiles" / "alice" / "gateway_state.json").read_text())
        if doc.get("gateway_state") == "running":
            return doc.get("pid")
    return None


@pytest.fixture
def second_root_sandbox():
    sb = s6env.make_sandbox(service_user=True)
    yield sb
    sb.cleanup()


def test_real_gateway_runs_on_one_host_and_hands_over(root_sandbox, second_root_sandbox,
                                                       hermes_bin):  # noqa: F811
    a_sb, b_sb, home = root_sandbox, second_root_sandbox, root_sandbox.home
    s6env.make_profile(home, "alice", {"desired_state": "running"})
    s6env.own(a_sb, home)
    run(a_sb, hermes_bin, home, "host-a", "reconcile")
    a = s6env.Supervisor(a_sb).start()
    b = None
    try:
        s6env.wait_for(lambda: running_pid(home) and running_pid(home) == s6env.svstat(
            a_sb.slot("alice"))["pid"], GATEWAY_TIMEOUT, interval=0.2, what="alice on host-a")
        owner_pid = running_pid(home)
        run(b_sb, hermes_bin, home, "host-b", "reconcile")
        b = s6env.Supervisor(b_sb).start()
        s6env.wait_up(b_sb.slot("alice"), 10)
        end = time.monotonic() + 4
        while time.monotonic() < end:
            assert gateways(hermes_bin, home) == [owner_pid]
            time.sleep(0.05)
        doc = json.loads(run(b_sb, hermes_bin, home, "host-b", "gateway.status", "--json").stdout)
        alice = {g["profile"]: g for g in doc["gateways"]}["alice"]  # default: not placed
        assert alice["standby"] is True and alice["owner"]["host_id"] == "host-a"
        assert (alice["why_kind"], alice["host"]) == ("standby", "host-a")

        a.svscanctl("-t")  # host a goes away

        def b_runs():
            assert len(gateways(hermes_bin, home)) <= 1  # never two real gateways at once
            pid = running_pid(home)
            return pid if pid and pid != owner_pid and pid == s6env.svstat(
                b_sb.slot("alice"))["pid"] else None

        new_pid = s6env.wait_for(b_runs, GATEWAY_TIMEOUT, interval=0.05,
                                 what="alice running on host-b")
        record = json.loads((home / "profiles" / "alice" / ".gateway-owner.json").read_text())
        assert (record["host_id"], record["pid"]) == ("host-b", new_pid)
        assert gateways(hermes_bin, home) == [new_pid]
    finally:
        # b first: its gateway works in a's volume, where a's cleanup would count it.
        killed = b.stop() if b is not None else []
        killed += a.stop()
    assert killed == []
