"""gateway.* and profile.* against a real s6-svscan (everything as the current user)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re

import s6env
import standin
from control_helpers import make_profile, one_line_error, state_file, status, tasks

# Keys the stand-in gateway keeps but never writes itself (it rewrites gateway_state, pid…).
OTHER_KEYS = {"platforms": {"telegram": {"state": "ok"}}, "active_agents": 2}


def setup_home(sb, sup):
    """default running, alice stopped (with runtime keys to keep), bob running."""
    make_profile(sb.home, "default", {"gateway_state": "running"})
    make_profile(sb.home, "alice", {"desired_state": "stopped", **OTHER_KEYS})
    make_profile(sb.home, "bob", {"desired_state": "running"})
    tasks(sb, "reconcile")
    for name in ("default", "bob"):
        s6env.wait_up(sb.slot(name))
    s6env.wait_down(sb.slot("alice"))


def wait_recorded(sb, name, pid):
    """Wait until the stand-in started as ``pid`` recorded itself; it must be the only one."""
    s6env.wait_for(lambda: standin.live_pids(sb.home, name) == [pid], 5,
                   what=f"{name} running as pid {pid} only")


def kept_other_keys(sb, name="alice"):
    doc = state_file(sb.home, name)
    return {k: doc[k] for k in OTHER_KEYS} == OTHER_KEYS


def test_start_stop_restart_change_s6_and_state(sandbox, supervisor):
    sb = sandbox
    setup_home(sb, supervisor)

    res = tasks(sb, "gateway.start", "-p", "alice", "--wait")
    assert "changed: [gateway-alice] => started" in res.stdout
    # bob already runs as recorded: ok, nothing changed, same process
    bob = s6env.svstat(sb.slot("bob"))["pid"]
    res = tasks(sb, "gateway.start", "-p", "bob", "--wait")
    assert "ok: [gateway-bob] => started" in res.stdout
    assert s6env.svstat(sb.slot("bob"))["pid"] == bob
    st = s6env.svstat(sb.slot("alice"))
    assert st["up"] and st["wantedup"] and st["normallyup"] and st["pid"] > 0
    assert not (sb.slot("alice") / "down").exists()
    assert state_file(sb.home, "alice")["desired_state"] == "running" and kept_other_keys(sb)
    first = st["pid"]
    wait_recorded(sb, "alice", first)

    tasks(sb, "gateway.restart", "-p", "alice", "--wait")
    st = s6env.svstat(sb.slot("alice"))
    assert st["up"] and st["pid"] not in (first, None)
    wait_recorded(sb, "alice", st["pid"])
    standin.assert_never_overlapping(standin.events(sb.home, "alice"))

    tasks(sb, "gateway.stop", "-p", "alice", "--wait")
    st = s6env.svstat(sb.slot("alice"))
    assert not st["up"] and not st["wantedup"] and not st["normallyup"]
    assert (sb.slot("alice") / "down").exists()
    assert standin.live_pids(sb.home, "alice") == []
    assert state_file(sb.home, "alice")["desired_state"] == "stopped" and kept_other_keys(sb)

    # restart brings a stopped gateway up (and records running)
    tasks(sb, "gateway.restart", "-p", "alice", "--wait")
    assert s6env.svstat(sb.slot("alice"))["up"]
    assert state_file(sb.home, "alice")["desired_state"] == "running" and kept_other_keys(sb)

    # the default profile is the target without -p; its state lives at the home root
    tasks(sb, "gateway.stop", "--wait")
    assert not s6env.svstat(sb.slot("default"))["up"]
    doc = state_file(sb.home, "default")
    # the gateway's own shutdown write kept the intent written before the signal
    assert doc["desired_state"] == "stopped" and doc["kind"] == "hermes-gateway"
    # the recorded intent survives a reconcile: nothing changes
    again = tasks(sb, "reconcile", "--json")
    assert '"changed": 0' in again.stdout and '"failed": 0' in again.stdout


def test_without_wait_s6_gets_there(sandbox, supervisor):
    sb = sandbox
    setup_home(sb, supervisor)
    tasks(sb, "gateway.start", "-p", "alice")
    s6env.wait_up(sb.slot("alice"))
    tasks(sb, "gateway.stop", "-p", "alice")
    s6env.wait_down(sb.slot("alice"))
    assert state_file(sb.home, "alice")["desired_state"] == "stopped"


def test_restart_works_for_a_daemon_that_exits_0_on_sigterm(sandbox, supervisor):
    sb = sandbox
    standin.write_behaviour(sb.home, term_exit=0)
    setup_home(sb, supervisor)
    first = s6env.svstat(sb.slot("bob"))["pid"]
    tasks(sb, "gateway.restart", "-p", "bob", "--wait")
    st = s6env.svstat(sb.slot("bob"))
    assert st["up"] and st["pid"] != first
    stops = [e for e in standin.events(sb.home, "bob") if e["event"] == "stop"]
    assert [e["code"] for e in stops] == [0]
    # without --wait too: it must come back on its own
    tasks(sb, "gateway.restart", "-p", "bob")
    second = st["pid"]
    s6env.wait_for(lambda: (s := s6env.svstat(sb.slot("bob")))["up"] and s["pid"] != second, 10,
                   what="bob back up with a new pid")
    standin.assert_never_overlapping(standin.events(sb.home, "bob"))


def test_all_stops_and_restarts_every_slot(sandbox, supervisor):
    sb = sandbox
    setup_home(sb, supervisor)
    res = tasks(sb, "gateway.stop", "--all", "--wait")
    for name in ("default", "alice", "bob"):
        assert f"[gateway-{name}] => stopped" in res.stdout
        assert not s6env.svstat(sb.slot(name))["up"]
        assert state_file(sb.home, name)["desired_state"] == "stopped"
    assert "failed=0" in res.stdout
    # restart --all never starts a deliberately stopped gateway (SPEC §7)
    res = tasks(sb, "gateway.restart", "--all", "--wait", "--json")
    assert json.loads(res.stdout)["stats"] == {"ok": 0, "changed": 0, "skipped": 3, "failed": 0}
    for name in ("default", "alice", "bob"):
        assert not s6env.svstat(sb.slot(name))["up"]
        assert state_file(sb.home, name)["desired_state"] == "stopped"
    # ... and restarts exactly those up or desired running
    tasks(sb, "gateway.start", "-p", "bob", "--wait")
    first = s6env.svstat(sb.slot("bob"))["pid"]
    res = tasks(sb, "gateway.restart", "--all", "--wait")
    assert "changed: [gateway-bob] => restarted" in res.stdout
    assert s6env.svstat(sb.slot("bob"))["pid"] not in (first, None)
    for name in ("default", "alice"):
        assert f"skipping: [gateway-{name}]" in res.stdout
        assert not s6env.svstat(sb.slot(name))["up"]
    assert kept_other_keys(sb)


def test_all_reports_each_failure_and_exits_2(sandbox, supervisor):
    sb = sandbox
    setup_home(sb, supervisor)
    # a slot nobody supervises (published by hand, no rescan) fails; the others are stopped
    s6env.publish_test_slot(sb.scandir, "gateway-zed", "#!/bin/sh\nexec sleep 100\n")
    res = tasks(sb, "gateway.stop", "--all", ok=False)
    assert res.returncode == 2, res.stderr
    assert re.search(r"failed: \[gateway-zed\] => stopped: .*not supervised", res.stdout)
    # alice was already stopped, as recorded: ok, not changed
    assert "ok: [gateway-alice] => stopped" in res.stdout
    assert re.search(r"ok=1 +changed=2 +unreachable=0 +failed=1", res.stdout)
    for name in ("default", "alice", "bob"):
        assert not s6env.svstat(sb.slot(name))["wantedup"]


def test_all_with_no_slots_is_a_clean_error(sandbox, supervisor):
    res = tasks(sandbox, "gateway.restart", "--all", ok=False)
    one_line_error(res, "no gateway slots", str(sandbox.scandir))


PORT_KEYS = ["api_server_port", "api_server_enabled", "webhook_port", "webhook_enabled"]
# The keys of the first gateway.status JSON (SPEC §7); §14.8 added more (tests/test_status_s6.py)
OLD_KEYS = {"profile", "slot", "registered", "up", "wanted_up", "normally_up", "pid",
            "desired_state", "supervised", "ready", "exit_code", "reason", "owner", "standby"}


def test_status_json(sandbox, supervisor):
    sb = sandbox
    setup_home(sb, supervisor)
    make_profile(sb.home, "carol")  # a profile without a slot yet
    gws = status(sb)
    # every profile on the volume appears (SPEC §14.7), carol with no slot yet
    assert list(gws) == ["default", "alice", "bob", "carol"]
    assert gws["carol"]["registered"] is False and gws["carol"]["why_kind"] == "stopped"
    gws.pop("carol")
    for name, doc in gws.items():
        assert list(doc)[:8] == ["profile", "slot", "registered", "up", "wanted_up",
                                 "normally_up", "pid", "desired_state"]  # then new keys
        assert list(doc)[-len(PORT_KEYS):] == list(PORT_KEYS)
        assert doc["supervised"] is True
        assert doc["standby"] is False  # one host: every gateway up here is its owner
        assert doc["slot"] == f"gateway-{name}" and doc["registered"] is True
        for key in ("up", "wanted_up", "normally_up"):
            assert isinstance(doc[key], bool)
    assert gws["bob"]["up"] and gws["bob"]["wanted_up"] and gws["bob"]["normally_up"]
    assert gws["bob"]["pid"] == s6env.svstat(sb.slot("bob"))["pid"]
    assert gws["bob"]["desired_state"] == "running"
    assert gws["default"]["desired_state"] is None  # only gateway_state recorded
    # ports (SPEC §11): hermes's defaults for default, allocations for the named ones, all off
    assert [gws[n]["api_server_port"] for n in gws] == [8642, 8650, 8651]
    assert [gws[n]["webhook_port"] for n in gws] == [8644, 9100, 9101]
    assert not any(gws[n][k] for n in gws for k in ("api_server_enabled", "webhook_enabled"))
    gws = {n: {k: v for k, v in d.items() if k in OLD_KEYS} for n, d in gws.items()}
    assert gws["alice"] == {"profile": "alice", "slot": "gateway-alice", "registered": True,
                            "up": False, "wanted_up": False, "normally_up": False, "pid": None,
                            "desired_state": "stopped", "supervised": True, "ready": False,
                            "exit_code": None, "reason": None, "owner": None, "standby": False}
    carol = {n: {k: v for k, v in d.items() if k in OLD_KEYS}
             for n, d in status(sb, "-p", "carol").items()}
    assert carol == {"carol": {"profile": "carol", "slot": "gateway-carol", "registered": False,
                               "up": False, "wanted_up": False, "normally_up": False,
                               "pid": None, "desired_state": None, "supervised": False,
                               "ready": False, "exit_code": None, "reason": None,
                               "owner": None, "standby": False}}
    human = tasks(sb, "gateway.status").stdout
    assert f"gateway-bob: up (pid {gws['bob']['pid']})" in human
    assert "gateway-alice: down" in human


def test_start_registers_the_missing_slot_of_an_existing_profile(sandbox, supervisor):
    sb = sandbox
    setup_home(sb, supervisor)
    make_profile(sb.home, "carol", {"gateway_state": "stopped", "served_profiles": ["x"]})
    # stop of an unregistered profile only records the intent
    res = tasks(sb, "gateway.stop", "-p", "carol")
    assert "no slot registered; recorded stopped" in res.stdout
    assert not sb.slot("carol").exists()
    assert state_file(sb.home, "carol")["desired_state"] == "stopped"
    tasks(sb, "gateway.start", "-p", "carol", "--wait")
    st = s6env.svstat(sb.slot("carol"))
    assert st["up"] and st["normallyup"]
    assert state_file(sb.home, "carol")["served_profiles"] == ["x"]
    assert state_file(sb.home, "carol")["desired_state"] == "running"
    wait_recorded(sb, "carol", st["pid"])
    # restart registers too
    make_profile(sb.home, "dave")
    tasks(sb, "gateway.restart", "-p", "dave", "--wait")
    assert s6env.svstat(sb.slot("dave"))["up"]


def test_unknown_or_invalid_profile_is_one_line(sandbox, supervisor):
    sb = sandbox
    setup_home(sb, supervisor)
    for task in ("gateway.start", "gateway.stop", "gateway.restart", "gateway.status"):
        res = tasks(sb, task, "-p", "nosuch", ok=False)
        one_line_error(res, "'nosuch'", "profile.create nosuch")
    assert not sb.slot("nosuch").exists()
    one_line_error(tasks(sb, "gateway.start", "-p", "Bad.Name", ok=False), "invalid profile name")
    one_line_error(tasks(sb, "gateway.stop", "-p", "alice", "--all", ok=False), "not both")


def test_create_then_start(sandbox, supervisor):
    sb = sandbox
    setup_home(sb, supervisor)
    res = tasks(sb, "profile.create", "carol")
    assert "changed: [gateway-carol] => registered" in res.stdout
    assert (sb.home / "profiles" / "carol" / "SOUL.md").is_file()
    s6env.wait_status_file(sb.slot("carol"))
    assert not s6env.svstat(sb.slot("carol"))["up"]
    assert (sb.slot("carol") / "down").exists()
    tasks(sb, "gateway.start", "-p", "carol", "--wait")
    assert s6env.svstat(sb.slot("carol"))["up"]
    # creating again changes nothing and never overwrites SOUL.md
    (sb.home / "profiles" / "carol" / "SOUL.md").write_text("mine\n")
    res = tasks(sb, "profile.create", "carol")
    assert "ok: [gateway-carol]" in res.stdout
    assert (sb.home / "profiles" / "carol" / "SOUL.md").read_text() == "mine\n"
    assert s6env.svstat(sb.slot("carol"))["up"]
    # --start registers it up
    tasks(sb, "profile.create", "dave", "--start")
    s6env.wait_up(sb.slot("dave"))
    assert state_file(sb.home, "dave")["desired_state"] == "running"
    one_line_error(tasks(sb, "profile.create", "Bad.Name", ok=False), "invalid profile name")


def test_delete_leaves_no_supervisor_and_no_directory(sandbox, supervisor):
    sb = sandbox
    setup_home(sb, supervisor)
    (sb.home / "profiles" / "bob" / "notes.txt").write_text("keep me\n")
    slot = sb.slot("bob")
    pids = s6env.supervise_pids(slot)
    assert len(pids) == 2
    gateway_pid = s6env.svstat(slot)["pid"]
    res = tasks(sb, "profile.delete", "bob")
    assert "changed: [gateway-bob] => removed" in res.stdout
    assert not slot.exists()
    assert [n for n in os.listdir(sb.scandir) if "bob" in n] == []
    live = {p.pid for p in s6env.processes()}
    assert not live & {*pids, gateway_pid}
    assert not (sb.home / "profiles" / "bob").exists()
    trash = list((sb.home / ".trash" / "profiles").iterdir())
    assert len(trash) == 1 and re.fullmatch(r"bob\.\d{8}T\d{6}(\.\d+)?Z", trash[0].name)
    assert (trash[0] / "notes.txt").read_text() == "keep me\n"
    assert (trash[0] / "SOUL.md").is_file()
    # other gateways are untouched
    assert s6env.svstat(sb.slot("default"))["up"]
    # the trashed profile is not rediscovered
    again = tasks(sb, "reconcile", "--json")
    assert '"bob"' not in again.stdout and not slot.exists()

    alice_pids = s6env.supervise_pids(sb.slot("alice"))
    tasks(sb, "profile.delete", "alice", "--purge")
    assert not sb.slot("alice").exists() and not (sb.home / "profiles" / "alice").exists()
    assert len(list((sb.home / ".trash" / "profiles").iterdir())) == 1
    assert not {p.pid for p in s6env.processes()} & set(alice_pids)

    one_line_error(tasks(sb, "profile.delete", "default", ok=False), "default", "cannot be deleted")
    one_line_error(tasks(sb, "profile.delete", "nosuch", ok=False), "nosuch")


def test_stopped_supervisor_is_a_clean_error(sandbox, supervisor):
    sb = sandbox
    setup_home(sb, supervisor)
    supervisor.stop()
    before = state_file(sb.home, "alice")
    for task in ("gateway.start", "gateway.stop", "gateway.restart"):
        res = tasks(sb, task, "-p", "alice", ok=False)
        one_line_error(res, "gateway-alice", "not supervised", "s6-svscan")
    assert state_file(sb.home, "alice") == before  # nothing recorded: s6 accepted nothing
    gws = status(sb)
    assert not any(g["up"] for g in gws.values())
    res = tasks(sb, "gateway.stop", "--all", ok=False)
    assert res.returncode == 2 and "failed=3" in res.stdout
    # profile.create --start could publish the slot but never start it: one line, exit 1,
    # and a failed create leaves nothing behind
    res = tasks(sb, "profile.create", "carol", "--start", ok=False)
    one_line_error(res, "gateway-carol is not supervised")
    assert not sb.slot("carol").exists()
    assert not (sb.home / "profiles" / "carol").exists()


def test_missing_scandir_is_a_clean_error(sandbox):
    os.rmdir(sandbox.scandir)
    for task in ("gateway.stop", "gateway.status"):
        one_line_error(tasks(sandbox, task, "--all" if task == "gateway.stop" else "--json",
                             ok=False), str(sandbox.scandir))


def test_concurrent_starts_and_stops_end_consistent(sandbox, supervisor):
    """s6 command and record happen under the scandir lock: the last one wins in both."""
    sb = sandbox
    setup_home(sb, supervisor)
    actions = ["gateway.start", "gateway.stop"] * 4
    with concurrent.futures.ThreadPoolExecutor(len(actions)) as pool:
        results = list(pool.map(lambda t: tasks(sb, t, "-p", "alice"), actions))
    assert all(r.returncode == 0 for r in results)
    desired = state_file(sb.home, "alice")["desired_state"]
    st = s6env.svstat(sb.slot("alice"))
    assert st["wantedup"] is st["normallyup"] is (desired == "running")
    assert (sb.slot("alice") / "down").exists() is (desired == "stopped")
    check = tasks(sb, "reconcile", "--check", "--json")
    assert '"changed": 0' in check.stdout, check.stdout
