"""The container's command decides its role, as in hermes-agent 0.19.0's image (SPEC §15).

Each boot is the simulated image (tests/bootsim.py) under a real s6-svscan, with stage 2 run
in its own PID namespace whose process tree carries the container's command the way
s6-overlay v2 (``/init <wrapper> <command…>`` as PID 1) or v3 (PID 1 s6-svscan, the command
on ``rc.init top <wrapper> <command…>``) does. The boot reads it from /proc like in the image.
"""

from __future__ import annotations

import json
import os

import bootsim
import pytest
import s6env
from test_boot_sim import SCRIPTS, check_populated_boot, populate, rcs

OVERLAYS = ["v2", "v3"]


def boot_log(sb) -> list[str]:
    try:
        lines = (sb.home / "logs" / "container-boot.log").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [line.split(" ", 1)[1] for line in lines]


def root_state(sb):
    try:
        return json.loads((sb.home / "gateway_state.json").read_text())
    except FileNotFoundError:
        return None


def fresh_volume(sb):
    s6env.give_tree(sb.home, sb.user)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_command_is_a_pure_supervisor(root_sandbox, overlay):
    populate(root_sandbox)
    with bootsim.Container(root_sandbox, command=[], overlay=overlay) as ctr:
        check_populated_boot(ctr, ctr.boot())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dashboard_container_publishes_no_gateway_slot(root_sandbox, overlay):
    sb = root_sandbox
    populate(sb)
    with bootsim.Container(sb, command=["dashboard", "--host", "0.0.0.0"],
                           overlay=overlay) as ctr:
        boot = ctr.boot()
        assert rcs(boot) == [(n, 0) for n in SCRIPTS], boot.console_text()
        assert boot.slots == []
        out = boot.script("02-reconcile-profiles")
        assert out.stdout.splitlines() == [
            "hermes-tasks-boot: dashboard container: no gateway slot published (the gateway "
            "container on this volume runs the gateways)"]
        assert out.stderr == ""
        assert boot_log(sb) == []
        assert [p for p in sb.scandir.iterdir() if not p.name.startswith(".")] == []


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("command", [["gateway", "run"], ["hermes", "gateway", "run", "-v"]])
def test_legacy_gateway_run_seeds_running_and_starts_default(root_sandbox, overlay, command):
    sb = root_sandbox
    fresh_volume(sb)
    with bootsim.Container(sb, command=command, overlay=overlay) as ctr:
        boot = ctr.boot()
        assert rcs(boot) == [(n, 0) for n in SCRIPTS], boot.console_text()
        assert "seeded" in boot.script("02-reconcile-profiles").stdout
        status = s6env.wait_up(ctr.slot("gateway-default"), 10)
        assert status["normallyup"] is True
        # The seed is read back once the gateway this boot started has recorded running:
        # it keeps the file as hermes does (read-modify-write), so the seed's keys are what
        # it found (read before, the file was the seed's or already the gateway's: a race).
        doc = s6env.wait_for(lambda: (d := root_state(sb)) and "pid" in d
                             and d["gateway_state"] == "running" and d, 10,
                             what="the default gateway's running record")
        assert doc["desired_state"] == "running"
        assert doc["migrated_from"] == "legacy-container-cmd"
        assert isinstance(doc["timestamp"], int)
        st = os.stat(sb.home / "gateway_state.json")
        assert (st.st_uid, st.st_gid) == (sb.user.uid, sb.user.gid)
        assert boot_log(sb) == ["profile=default prior_state=running action=started "
                                "result=changed"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_legacy_gateway_run_never_overrides_an_existing_state(root_sandbox, overlay):
    sb = root_sandbox
    s6env.make_profile(sb.home, "default", {"desired_state": "stopped"})
    fresh_volume(sb)
    before = (sb.home / "gateway_state.json").read_bytes()
    with bootsim.Container(sb, command=["gateway", "run"], overlay=overlay) as ctr:
        boot = ctr.boot()
        assert rcs(boot) == [(n, 0) for n in SCRIPTS], boot.console_text()
        assert (sb.home / "gateway_state.json").read_bytes() == before
        status = ctr.wait_all([], ["gateway-default"])
        assert status["gateway-default"]["up"] is False
        assert boot_log(sb) == ["profile=default prior_state=stopped action=registered "
                                "result=changed"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("command,env", [
    (["gateway", "run", "--no-supervise"], {}),
    (["gateway", "run"], {"HERMES_GATEWAY_NO_SUPERVISE": "1"}),
    (["gateway", "run"], {"HERMES_GATEWAY_NO_SUPERVISE": "Yes"}),
])
def test_no_supervise_opts_out_of_the_migration(root_sandbox, overlay, command, env):
    sb = root_sandbox
    fresh_volume(sb)
    with bootsim.Container(sb, command=command, overlay=overlay, env=env) as ctr:
        boot = ctr.boot()
        assert rcs(boot) == [(n, 0) for n in SCRIPTS], boot.console_text()
        assert root_state(sb) is None
        assert sorted(boot.slots) == ["gateway-default", bootsim.REGISTRAR]
        status = ctr.wait_all([], ["gateway-default"])
        assert status["gateway-default"]["up"] is False
        assert boot_log(sb) == ["profile=default prior_state=None action=registered "
                                "result=changed"]


def test_bootstrap_state_seeds_a_fresh_volume(root_sandbox):
    sb = root_sandbox
    fresh_volume(sb)
    with bootsim.Container(sb, env={"HERMES_GATEWAY_BOOTSTRAP_STATE": "running"}) as ctr:
        boot = ctr.boot()
        assert rcs(boot) == [(n, 0) for n in SCRIPTS], boot.console_text()
        doc = root_state(sb)
        assert doc["desired_state"] == doc["gateway_state"] == "running"
        assert "migrated_from" not in doc
        s6env.wait_up(ctr.slot("gateway-default"), 10)
        assert boot_log(sb) == ["profile=default prior_state=running action=started "
                                "result=changed"]


def test_bootstrap_state_never_overrides_an_existing_state(root_sandbox):
    sb = root_sandbox
    s6env.make_profile(sb.home, "default", {"gateway_state": "stopped"})
    fresh_volume(sb)
    with bootsim.Container(sb, env={"HERMES_GATEWAY_BOOTSTRAP_STATE": "running"}) as ctr:
        ctr.boot()
        assert root_state(sb) == {"gateway_state": "stopped"}
        assert ctr.wait_all([], ["gateway-default"])["gateway-default"]["up"] is False


@pytest.mark.parametrize("value,on", [
    ("1", True), ("true", True), ("TRUE", True), (" yes ", True), ("On", True),
    ("", False), ("0", False), ("false", False), ("off", False), (None, False),
])
def test_multiplex_registers_named_slots_down_only_when_on(sandbox, value, on):
    """The truthy rule, on reconcile's plan (no supervisor needed): alice runs on disk."""
    s6env.make_profile(sandbox.home, "default", {"desired_state": "running"})
    s6env.make_profile(sandbox.home, "alice", {"desired_state": "running"})
    s6env.make_profile(sandbox.home, "bob", {"desired_state": "stopped"})
    env = {} if value is None else {"GATEWAY_MULTIPLEX_PROFILES": value}
    res = s6env.run_tasks(sandbox, "reconcile", "--json", env=env)
    assert res.returncode == 0, res.stderr
    rows = {r["profile"]: r for r in json.loads(res.stdout)["results"]}
    assert rows["default"]["action"] == "started"
    assert rows["alice"]["action"] == ("registered" if on else "started")
    assert ("multiplex" in rows["alice"]["message"]) is on
    assert rows["bob"]["action"] == "registered" and "multiplex" not in rows["bob"]["message"]
    assert (sandbox.scandir / "gateway-alice" / "down").exists() is on


def test_multiplex_boot_and_an_explicit_start_that_warns(root_sandbox):
    sb = root_sandbox
    populate(sb)
    with bootsim.Container(sb, env={"GATEWAY_MULTIPLEX_PROFILES": "on"}, command=[]) as ctr:
        boot = ctr.boot()
        assert rcs(boot) == [(n, 0) for n in SCRIPTS], boot.console_text()
        status = ctr.wait_all(["gateway-default"], ["gateway-alice", "gateway-carol"])
        for slot in ("gateway-alice", "gateway-carol"):
            assert status[slot]["up"] is False and status[slot]["normallyup"] is False
        assert "profile=alice prior_state=running action=registered result=changed" in boot_log(sb)
        # a named gateway can still be started; it is told it duplicates the multiplexer
        res = ctr.exec_tasks("gateway.start", "-p", "alice", "--wait", "--timeout", "20")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "GATEWAY_MULTIPLEX_PROFILES is on" in res.stderr
        assert s6env.svstat(ctr.slot("gateway-alice"))["up"] is True
        # a runtime reconcile keeps it running (registered down for the next boot)
        res = ctr.exec_tasks("reconcile")
        assert res.returncode == 0, res.stdout + res.stderr
        assert s6env.svstat(ctr.slot("gateway-alice"))["up"] is True


def test_deliberate_differences_invalid_names_and_symlinked_profiles_are_skipped(root_sandbox):
    """README "Coming from hermes-agent's image": upstream aborted at an invalid name and
    followed a symlinked profile; here both are skipped with a warning, the rest published."""
    sb = root_sandbox
    s6env.make_profile(sb.home, "default", {"desired_state": "running"})
    s6env.make_profile(sb.home, "alice", {"desired_state": "running"})
    s6env.make_profile(sb.home, "Bad.Name", {"desired_state": "running"})
    elsewhere = sb.root / "elsewhere"
    s6env.make_profile(elsewhere, "linked", {"desired_state": "running"})
    os.symlink(elsewhere / "profiles" / "linked", sb.home / "profiles" / "linked")
    fresh_volume(sb)
    with bootsim.Container(sb, command=["gateway", "run"]) as ctr:
        boot = ctr.boot()
        assert rcs(boot) == [(n, 0) for n in SCRIPTS], boot.console_text()
        assert sorted(boot.slots) == ["gateway-alice", "gateway-default", bootsim.REGISTRAR]
        err = boot.script("02-reconcile-profiles").stderr
        assert "warning: skipping profile Bad.Name: invalid profile name" in err
        assert "warning: skipping profile linked: the profile directory is a symlink" in err
        log = boot_log(sb)
        assert "profile=Bad.Name prior_state=None action=skipped result=skipped" in log
        assert "profile=linked prior_state=None action=skipped result=skipped" in log
        ctr.wait_all(["gateway-default", "gateway-alice"], [])
