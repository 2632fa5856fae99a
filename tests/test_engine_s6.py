"""The one engine under real s6: runtime convergence, exits kept down, capacity, preflight,
and the small promises of SPEC §8 (JSON on every outcome, closed pipes, --timeout, --dry)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import s6env
import standin
from control_helpers import make_profile, one_line_error, state_file, status, tasks


def rows_of(res) -> dict[str, dict]:
    return {r["profile"]: r for r in json.loads(res.stdout)["results"]}


def reconcile_json(sb, *args, ok_codes=(0,)):
    res = s6env.run_tasks(sb, "reconcile", "--json", *args)
    assert res.returncode in ok_codes, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    return res, rows_of(res)


def key(rows: dict[str, dict]) -> dict[str, tuple]:
    return {p: (r["slot"], r["action"], r["result"]) for p, r in rows.items()}


def exited(sb, name, code, reason=None):
    """Make ``name``'s stand-in exit ``code`` at its next start, with a reason in its state."""
    conf = {"exit_at_start": code, **({"exit_reason": reason} if reason else {})}
    standin.write_behaviour(sb.home, profiles={name: conf})


def wait_ready(sb, name):
    """Until the stand-in s6 runs for ``name`` has written ``running`` (its state file settled)."""
    pid = s6env.wait_up(sb.slot(name))["pid"]
    s6env.wait_for(lambda: standin.running_at(sb.home, name, pid), 10,
                   what=f"{name} wrote running")


def wait_exited(sb, name, code):
    def done():
        st = s6env.svstat(sb.slot(name), ("up", "wantedup", "exitcode"))
        return not st["up"] and not st["wantedup"] and st["exitcode"] == code
    s6env.wait_for(done, 10, what=f"{name} exited {code} and kept down")


# desired state (in gateway_state.json) × what s6 shows → action, result, message (SPEC §6)
def never_started(sb, name):
    """Registered down and never run: the desired state then flips to running."""


def taken_down(sb, name):
    subprocess.run([s6env.S6_BIN / "s6-svc", "-wD", "-T5000", "-d", sb.slot(name)], check=True)


def exited_78(sb, name):
    exited(sb, name, 78, "Port 8642 already in use")
    subprocess.run([s6env.S6_BIN / "s6-svc", "-r", sb.slot(name)], check=True)
    wait_exited(sb, name, 78)


def exited_0(sb, name):
    exited(sb, name, 0)
    subprocess.run([s6env.S6_BIN / "s6-svc", "-r", sb.slot(name)], check=True)
    wait_exited(sb, name, 0)


def left_up(sb, name):
    """Up; its desired state then flips to stopped."""


TABLE = [
    # (name, desired first, how it is made to look, desired at reconcile, action, result,
    #  message holds, up afterwards)
    ("never-started", "stopped", never_started, "running", "started", "changed", "brought up",
     True),
    ("taken-down", "running", taken_down, "running", "started", "changed", "brought up", True),
    ("exit-78", "running", exited_78, "running", "started", "failed",
     "exited 78: Port 8642 already in use", False),
    ("exit-0", "running", exited_0, "running", "started", "failed", "exited 0", False),
    ("up-but-stopped", "running", left_up, "stopped", "registered", "changed", "brought down",
     False),
    ("up-and-running", "running", left_up, "running", "started", "ok", "", True),
]


@pytest.mark.parametrize("case", TABLE, ids=[c[0] for c in TABLE])
def test_runtime_convergence_table(sandbox, supervisor, case):
    _, first, arrange, desired, action, result, message, up_after = case
    sb = sandbox
    make_profile(sb.home, "default", {"desired_state": "stopped"})
    make_profile(sb.home, "alice", {"desired_state": first})
    reconcile_json(sb)
    if first == "running":
        s6env.wait_up(sb.slot("alice"))
    else:
        s6env.wait_status_file(sb.slot("alice"))
    arrange(sb, "alice")
    make_profile(sb.home, "alice", {**state_file(sb.home, "alice"), "desired_state": desired})
    code = 2 if result == "failed" else 0
    check, crows = reconcile_json(sb, "--check", ok_codes=(code,))
    res, rows = reconcile_json(sb, ok_codes=(code,))
    assert key(crows) == key(rows)  # --check said exactly what the run did
    row = rows["alice"]
    assert (row["action"], row["result"]) == (action, result), row
    assert message in row["message"], row
    assert rows["default"]["result"] == "ok"
    if up_after:
        s6env.wait_up(sb.slot("alice"))
    else:
        s6env.wait_down(sb.slot("alice"))
    # converged (or failed the same way, on every run until an explicit start)
    again, rows = reconcile_json(sb, ok_codes=(code,))
    assert rows["alice"]["result"] == ("failed" if result == "failed" else "ok")
    if result == "failed":
        assert message in rows["alice"]["message"]
        log = (sb.home / "logs" / "container-boot.log").read_text().splitlines()
        # prior_exit: how it last exited, as s6 knows it (SPEC §15)
        exit_code = 78 if "78" in message else 0
        assert log[-1].endswith("profile=alice prior_state=running action=started "
                                f"result=failed prior_exit={exit_code}"), log[-1]


def test_exit_78_fails_start_wait_naming_code_and_reason_until_fixed(sandbox, supervisor):
    sb = sandbox
    make_profile(sb.home, "default", {"desired_state": "running"})
    reconcile_json(sb)
    s6env.wait_up(sb.slot("default"))
    exited(sb, "default", 78, "Port 8642 already in use")
    res = tasks(sb, "gateway.restart", "--wait", "--timeout", "10", ok=False)
    line = one_line_error(res, "gateway-default", "exited 78: Port 8642 already in use",
                          "Port 8642 already in use")
    assert "; last log lines: " in line and "fake-gateway: started" in line  # SPEC §14.8
    res = tasks(sb, "gateway.start", "--wait", "--json", ok=False)
    doc = json.loads(res.stdout)  # JSON even for a failed single target
    assert doc["stats"]["failed"] == 1 and "exited 78: Port 8642 already in use" in doc["error"]
    assert doc["results"][0]["result"] == "failed"
    _, rows = reconcile_json(sb, "--wait", ok_codes=(2,))
    assert rows["default"]["result"] == "failed" and "exited 78" in rows["default"]["message"]
    # fixed: an explicit start brings it back; reconcile is then ok
    standin.write_behaviour(sb.home)
    tasks(sb, "gateway.start", "--wait", "--timeout", "2.5")
    assert s6env.svstat(sb.slot("default"))["up"]
    _, rows = reconcile_json(sb)
    assert rows["default"]["result"] == "ok"


def test_capacity_unsupervised_slots_fail_and_default_never_does(sandbox):
    sb = sandbox
    names = ["default", *(f"p{i:02d}" for i in range(6))]
    for name in names:
        make_profile(sb.home, name, {"desired_state": "running"})
    with s6env.Supervisor(sb, capacity=4):
        res, rows = reconcile_json(sb, ok_codes=(2,))
        assert rows["default"]["result"] == "changed"
        failed = {p for p, r in rows.items() if r["result"] == "failed"}
        assert failed and "default" not in failed
        for p in failed:
            assert "not supervised" in rows[p]["message"]
        gws = status(sb)
        unsupervised = {p for p, g in gws.items() if not g["supervised"]}
        assert unsupervised == failed  # every unsupervised slot is reported failed
        assert gws["default"]["supervised"] and gws["default"]["up"]
        listed = json.loads(tasks(sb, "slot.list", "--json").stdout)["slots"]
        assert {s["profile"] for s in listed if not s["supervised"]} == failed
        # and on every following run too
        _, rows = reconcile_json(sb, ok_codes=(2,))
        assert {p for p, r in rows.items() if r["result"] == "failed"} == failed


def test_max_slots_fails_the_profiles_past_it_by_name(sandbox, supervisor):
    sb = sandbox
    for name in ("default", "alice", "bob", "carol"):
        make_profile(sb.home, name, {"desired_state": "stopped"})
    _, rows = reconcile_json(sb, "--var", "max_slots=2", ok_codes=(2,))
    assert {p: r["result"] for p, r in rows.items()} == {
        "default": "changed", "alice": "changed", "bob": "failed", "carol": "failed"}
    assert "max_slots (2)" in rows["bob"]["message"] and "s6-overlay" in rows["bob"]["message"]
    assert not sb.slot("bob").exists() and not sb.slot("carol").exists()


def test_preflight_stops_before_any_slot_is_rewritten(sandbox):
    sb = sandbox
    make_profile(sb.home, "alice", {"desired_state": "running"})
    tasks(sb, "reconcile")
    before = (sb.slot("alice") / "run").read_text()
    (sb.cmd_dir / "s6-notifyoncheck").unlink()
    res = tasks(sb, "reconcile", "--var", 'extra_env={HT_X: "1"}', ok=False)
    one_line_error(res, "preflight", "s6-notifyoncheck")
    assert (sb.slot("alice") / "run").read_text() == before
    (sb.cmd_dir / "s6-notifyoncheck").symlink_to(s6env.S6_BIN / "s6-notifyoncheck")
    res = s6env.run_tasks(sb, None, argv=["python", "-m", "hermes_tasks", "reconcile",
                                          *s6env.inventory_args(sb),
                                          "--var", "hermes_bin=/nonexistent/hermes"])
    one_line_error(res, "hermes_bin", "/nonexistent/hermes")


def test_command_dir_has_every_tool_preflight_needs(tmp_path):
    from hermes_tasks import preflight

    cmd = s6env.make_command_dir(tmp_path / "command")
    for tool in preflight.TOOLS:
        assert os.access(cmd / tool, os.X_OK), tool


def test_sweep_is_reported_by_check_and_run(sandbox):
    sb = sandbox
    make_profile(sb.home, "alice", {"desired_state": "stopped"})
    tasks(sb, "reconcile")
    (sb.home / "profiles" / "alice" / "gateway.pid").write_text("123\n")
    _, crows = reconcile_json(sb, "--check")
    assert crows["alice"]["result"] == "changed"
    assert "stale runtime files" in crows["alice"]["message"]
    assert (sb.home / "profiles" / "alice" / "gateway.pid").exists()
    _, rows = reconcile_json(sb)
    assert key(rows) == key(crows)
    assert "removed stale gateway.pid" in rows["alice"]["message"]
    assert not (sb.home / "profiles" / "alice" / "gateway.pid").exists()


def test_dry_gateway_stop_changes_nothing(sandbox, supervisor):
    sb = sandbox
    make_profile(sb.home, "alice", {"desired_state": "running", "other": 1})
    tasks(sb, "reconcile")
    wait_ready(sb, "alice")
    before = state_file(sb.home, "alice")
    argv = ["python", "-m", "hermes_tasks", "--dry", "gateway.stop", "-p", "alice", "--json",
            *s6env.inventory_args(sb)]
    res = s6env.run_tasks(sb, None, argv=argv)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["check"] is True and doc["results"][0]["result"] == "changed"
    assert "would bring down" in doc["results"][0]["message"]
    assert state_file(sb.home, "alice") == before
    assert s6env.svstat(sb.slot("alice"))["up"]


def test_timeout_must_be_a_number(sandbox, supervisor):
    sb = sandbox
    make_profile(sb.home, "alice", {"desired_state": "running"})
    tasks(sb, "reconcile")
    one_line_error(tasks(sb, "gateway.start", "-p", "alice", "--wait", "--timeout", "soon",
                         ok=False), "--timeout", "soon")
    tasks(sb, "gateway.start", "-p", "alice", "--wait", "--timeout", "2.5")


def test_json_error_for_a_bad_target(sandbox, supervisor):
    res = tasks(sandbox, "gateway.start", "-p", "nosuch", "--json", ok=False)
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["results"] == [] and "nosuch" in doc["error"]


def test_closed_pipe_ends_quietly(sandbox):
    sb = sandbox
    for i in range(300):
        make_profile(sb.home, f"p{i:03d}", {"desired_state": "stopped"})
    env = s6env.tool_env(sb)
    proc = subprocess.Popen([sys.executable, "-m", "hermes_tasks", "reconcile", "--check",
                             *s6env.inventory_args(sb)], env=env, cwd=sb.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0, err
    assert err == "", err


def test_dry_changes_nothing_for_every_task(sandbox, supervisor):
    """Invoke's --dry is check mode for every task (SPEC §13.6): nothing on disk moves."""
    sb = sandbox
    make_profile(sb.home, "alice", {"desired_state": "running"})
    make_profile(sb.home, "bob", {"desired_state": "stopped"})
    tasks(sb, "reconcile")
    wait_ready(sb, "alice")
    # the registrar's first start consumes its data/published marker: not a change of --dry
    s6env.wait_for(lambda: not (sb.scandir / "hermes-tasks-registrar" / "data" /
                                "published").exists(), 60, what="the registrar started")

    def snapshot():
        out = {}
        for base in (sb.home, sb.scandir):
            for p in sorted(base.rglob("*")):
                if "supervise" in p.parts or "event" in p.parts or ".standin" in p.parts:
                    continue
                out[str(p)] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
        return out

    before = snapshot()
    pid = s6env.svstat(sb.slot("alice"))["pid"]
    dest = sb.root / "rendered"
    for task in (["reconcile", "--var", 'extra_env={HT_X: "1"}'], ["gateway.stop", "-p", "alice"],
                 ["gateway.start", "-p", "bob"], ["gateway.restart", "--all"],
                 ["profile.create", "carol", "--start"], ["profile.delete", "bob"],
                 ["slot.render", "alice", "--dest", str(dest)]):
        argv = ["python", "-m", "hermes_tasks", "--dry", *task, *s6env.inventory_args(sb)]
        res = s6env.run_tasks(sb, None, argv=argv)
        assert res.returncode == 0, (task, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
    assert snapshot() == before
    assert not dest.exists()
    assert s6env.svstat(sb.slot("alice"))["pid"] == pid


def test_wait_without_a_supervisor_fails_at_once(sandbox):
    make_profile(sandbox.home, "alice", {"desired_state": "running"})
    res, rows = reconcile_json(sandbox, "--wait", "--timeout", "30", ok_codes=(2,))
    assert rows["alice"]["result"] == "failed"
    assert "cannot be ready: no s6-svscan" in rows["alice"]["message"]
    assert rows["default"]["result"] == "changed"  # registered down: nothing to wait for


def test_intent_lost_to_the_gateways_own_write_is_recorded_again(sandbox, supervisor):
    """A gateway that rewrites its state file on shutdown from what it read at start would
    drop desired_state: stopped; stop checks it after the gateway settled (SPEC §7)."""
    sb = sandbox
    make_profile(sb.home, "alice", {"desired_state": "running", "keep": 1})
    standin.write_behaviour(sb.home, stale_state=True)
    tasks(sb, "reconcile")
    s6env.wait_up(sb.slot("alice"))
    res = tasks(sb, "gateway.stop", "-p", "alice")
    assert "recorded stopped again" in res.stdout, res.stdout
    doc = state_file(sb.home, "alice")
    assert doc["desired_state"] == "stopped" and doc["keep"] == 1
    assert doc["gateway_state"] == "stopped"  # the gateway's own write is kept too


def test_start_may_not_take_a_port_a_running_gateway_holds(sandbox, supervisor):
    """SPEC §11: an explicit gateway.start is checked for ports after every gateway that
    runs, whatever the names' order: "alice" may not take the port "bob" serves on."""
    sb = sandbox
    api = "API_SERVER_ENABLED=true\nAPI_SERVER_KEY=k\nAPI_SERVER_PORT=8799\n"
    make_profile(sb.home, "bob", {"desired_state": "running"})
    make_profile(sb.home, "alice", {"desired_state": "stopped"})
    for name in ("alice", "bob"):
        (sb.home / "profiles" / name / ".env").write_text(api)
    reconcile_json(sb)
    wait_ready(sb, "bob")
    starts = len(standin.starts(sb.home, "alice"))
    for extra in (["--check"], []):
        res = tasks(sb, "gateway.start", "-p", "alice", "--json", *extra, ok=False)
        assert res.returncode == 1, (extra, res.stdout, res.stderr)
        row = rows_of(res)["alice"]
        assert row["result"] == "failed" and "port 8799" in row["message"], row
        assert "bob" in row["message"], row
    assert state_file(sb.home, "alice")["desired_state"] == "stopped"
    assert len(standin.starts(sb.home, "alice")) == starts  # never started
    assert status(sb)["bob"]["up"] is True


def test_starting_the_gateway_that_holds_a_port_leaves_it_up(sandbox, supervisor):
    """The other side of the rule above: "alice" holds 8799 and "bob" is blocked by it;
    gateway.start and gateway.restart of alice must not hand the port to bob."""
    sb = sandbox
    api = "API_SERVER_ENABLED=true\nAPI_SERVER_KEY=k\nAPI_SERVER_PORT=8799\n"
    for name in ("alice", "bob"):
        make_profile(sb.home, name, {"desired_state": "running"})
        (sb.home / "profiles" / name / ".env").write_text(api)
    res, rows = reconcile_json(sb, ok_codes=(2,))
    assert rows["bob"]["result"] == "failed" and "port 8799" in rows["bob"]["message"]
    wait_ready(sb, "alice")
    for task in ("gateway.start", "gateway.restart"):
        res = tasks(sb, task, "-p", "alice", "--wait", "--json")
        assert rows_of(res)["alice"]["result"] in ("ok", "changed"), res.stdout
        assert status(sb)["alice"]["up"] is True and status(sb)["bob"]["up"] is False
