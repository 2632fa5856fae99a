"""Readiness under a real s6-svscan (SPEC §5, §7): data/check, s6's ready flag, ``--wait``.

The stand-in gateway writes gateway_state.json as hermes does; its knobs (``running_delay``,
``exit_at_start`` + ``exit_reason``, ``stop_delay``) come from ``.standin/behaviour.json``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time

import s6env
import standin
from control_helpers import make_profile, one_line_error, own, state_file, tasks

from hermes_tasks import readiness, state


def ready_fields(sb, name):
    return s6env.svstat(sb.slot(name), ("up", "ready", "pid"))


def wait_ready(sb, name, timeout=15.0):
    s6env.wait_status_file(sb.slot(name), timeout)
    return s6env.wait_for(lambda: (lambda st: st if st["ready"] else None)(ready_fields(sb, name)),
                          timeout, interval=0.05, what=f"{name} ready in s6-svstat")


def running_event(sb, name, pid):
    t = standin.running_at(sb.home, name, pid)
    return None if t is None else {"t": t}


def test_start_wait_returns_only_once_the_gateway_says_running(sandbox, supervisor):
    sb = sandbox
    make_profile(sb.home, "alice", {"desired_state": "stopped"})
    standin.write_behaviour(sb.home, profiles={"alice": {"running_delay": 1.5}})
    tasks(sb, "reconcile")
    s6env.wait_down(sb.slot("alice"))

    t0 = time.time()
    res = tasks(sb, "gateway.start", "-p", "alice", "--wait")
    returned = time.time()
    assert "changed: [gateway-alice] => started" in res.stdout
    st = ready_fields(sb, "alice")
    assert st["up"]
    ran = running_event(sb, "alice", st["pid"])
    assert ran is not None, "returned before the gateway wrote running"
    assert t0 + 1.4 < ran["t"] <= returned
    # s6 itself learns it through data/check (within one -w interval)
    assert wait_ready(sb, "alice", 5)["pid"] == st["pid"]
    doc = state_file(sb.home, "alice")
    assert doc["gateway_state"] == "running" and doc["pid"] == st["pid"]
    assert doc["desired_state"] == "running"


def test_not_ready_while_starting_and_never_ready_stays_up(sandbox, supervisor):
    sb = sandbox
    make_profile(sb.home, "bob", {"desired_state": "running"})
    standin.write_behaviour(sb.home, profiles={"bob": {"running_delay": 3600}})
    tasks(sb, "reconcile")
    st = s6env.wait_up(sb.slot("bob"))
    time.sleep(1.5)  # more than one check interval: the check ran and said no
    assert ready_fields(sb, "bob") == {"up": True, "ready": False, "pid": st["pid"]}
    res = tasks(sb, "gateway.start", "-p", "bob", "--wait", "--timeout", "0.5", ok=False)
    line = one_line_error(res, "gateway-bob", "not ready after 0.5 s", "starting")
    assert "Traceback" not in line
    assert ready_fields(sb, "bob")["pid"] == st["pid"]  # untouched: up, not ready


def test_exit_78_with_reason_fails_the_wait_naming_code_and_reason(sandbox, supervisor):
    sb = sandbox
    make_profile(sb.home, "carol", {"desired_state": "stopped"})
    standin.write_behaviour(sb.home, profiles={"carol": {
        "running_delay": 0.3, "exit_at_start": 78,
        "exit_reason": "Port 8642 already in use\x1b[31m"}})
    tasks(sb, "reconcile")
    s6env.wait_down(sb.slot("carol"))
    res = tasks(sb, "gateway.start", "-p", "carol", "--wait", "--timeout", "20", ok=False)
    line = one_line_error(res, "gateway-carol", "exited 78",
                          "Port 8642 already in use\\x1b[31m")
    assert "\x1b" not in line
    # finish kept it down; the intent is still recorded
    st = s6env.svstat(sb.slot("carol"))
    assert not st["up"] and not st["wantedup"]
    assert state_file(sb.home, "carol")["desired_state"] == "running"


def test_timeout_is_a_decimal_and_garbage_is_a_usage_error(sandbox, supervisor):
    sb = sandbox
    make_profile(sb.home, "alice", {"desired_state": "stopped"})
    tasks(sb, "reconcile")
    s6env.wait_down(sb.slot("alice"))
    tasks(sb, "gateway.start", "-p", "alice", "--wait", "--timeout", "2.5")
    for bad in ("soon", "-1", "nan", "inf"):
        res = tasks(sb, "gateway.stop", "-p", "alice", "--wait", "--timeout", bad, ok=False)
        one_line_error(res, "--timeout")
    assert s6env.svstat(sb.slot("alice"))["up"]  # nothing was done
    tasks(sb, "gateway.stop", "-p", "alice", "--wait", "--timeout", "7.25")
    assert not s6env.svstat(sb.slot("alice"))["up"]


def test_desired_state_is_written_before_the_signal(sandbox, supervisor):
    """The stand-in rewrites its file on SIGTERM, reading it first, as hermes does."""
    sb = sandbox
    make_profile(sb.home, "alice", {"desired_state": "running", "active_agents": 3})
    standin.write_behaviour(sb.home, profiles={"alice": {"stop_delay": 0.5,
                                                         "term_state": "stopped"}})
    tasks(sb, "reconcile")
    pid = wait_ready(sb, "alice")["pid"]
    tasks(sb, "gateway.stop", "-p", "alice")  # no --wait: it returns before the gateway's write
    s6env.wait_for(lambda: any(e["event"] == "stop" and e["pid"] == pid
                               for e in standin.events(sb.home, "alice")), 10)
    doc = state_file(sb.home, "alice")
    assert doc["gateway_state"] == "stopped" and doc["desired_state"] == "stopped"
    assert doc["active_agents"] == 3


def test_intent_is_put_back_when_s6_refuses(sandbox, supervisor):
    """s6 refuses the command: the old intent is put back, every other key kept.

    (A service user's control FIFO that lost its mode is repaired through the registrar
    now, so the refusal comes from an ``s6-svc`` that answers as s6 2.11 does, exit 111.)
    """
    sb = sandbox
    make_profile(sb.home, "alice", {"desired_state": "stopped", "active_agents": 1})
    tasks(sb, "reconcile")
    s6env.wait_status_file(sb.slot("alice"))
    bin_dir = sb.root / "refusing-s6"
    bin_dir.mkdir()
    for tool in sb.cmd_dir.iterdir():
        (bin_dir / tool.name).symlink_to(tool)
    (bin_dir / "s6-svc").unlink()
    (bin_dir / "s6-svc").write_text(
        "#!/bin/sh\necho \"s6-svc: fatal: unable to control $2: Permission denied\" >&2\n"
        "exit 111\n")
    (bin_dir / "s6-svc").chmod(0o755)
    res = s6env.run_tasks(sb, None, argv=[
        "python", "-m", "hermes_tasks", "gateway.start", "-p", "alice",
        *s6env.inventory_args(sb), "--var", f"s6_bin_dir={bin_dir}"])
    one_line_error(res, "gateway-alice", "permission denied")
    doc = state_file(sb.home, "alice")
    assert doc["desired_state"] == "stopped" and doc["active_agents"] == 1
    assert not s6env.svstat(sb.slot("alice"))["wantedup"]


def test_intent_is_put_back_when_the_slot_is_not_supervised(sandbox):
    sb = sandbox
    make_profile(sb.home, "alice", {"active_agents": 1})
    tasks(sb, "reconcile")  # published, but no supervisor runs
    res = tasks(sb, "gateway.start", "-p", "alice", ok=False)
    one_line_error(res, "gateway-alice", "not supervised")
    assert state_file(sb.home, "alice") == {"active_agents": 1}  # as it was


def test_service_user_waits_with_event_root_only(root_sandbox, supervisor):
    sb, user = root_sandbox, root_sandbox.user
    make_profile(sb.home, "alice", {"desired_state": "stopped"})
    own(sb, sb.home)
    standin.write_behaviour(sb.home, profiles={"alice": {"running_delay": 0.8}})
    tasks(sb, "reconcile")
    s6env.wait_down(sb.slot("alice"))
    for d in (sb.slot("alice") / "event", sb.slot("alice") / "log" / "event"):
        os.chown(d, 0, 0)
        os.chmod(d, 0o700)  # root-only, as SPEC §5 wants it: the service user cannot subscribe
    res = tasks(sb, "gateway.start", "-p", "alice", "--wait", user=user)
    assert "started" in res.stdout
    pid = ready_fields(sb, "alice")["pid"]
    assert running_event(sb, "alice", pid) is not None
    assert wait_ready(sb, "alice", 5)["pid"] == pid  # the check (as root, then dropped) works
    tasks(sb, "gateway.restart", "-p", "alice", "--wait", user=user)
    new = ready_fields(sb, "alice")["pid"]
    assert new != pid and running_event(sb, "alice", new) is not None
    tasks(sb, "gateway.stop", "-p", "alice", "--wait", user=user)
    assert not s6env.svstat(sb.slot("alice"))["up"]
    assert state_file(sb.home, "alice")["desired_state"] == "stopped"
    # the check read the state file as the service user, never as root
    check = sb.slot("alice") / "data" / "check"
    st = os.stat(check)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o755


def test_check_refuses_a_symlinked_state_file_and_a_foreign_pid(sandbox, supervisor):
    sb = sandbox
    make_profile(sb.home, "alice", {"desired_state": "running"})
    standin.write_behaviour(sb.home, profiles={"alice": {"no_state": 1}})
    tasks(sb, "reconcile")
    pid = s6env.wait_up(sb.slot("alice"))["pid"]
    d = sb.home / "profiles" / "alice"
    env = {"HERMES_TASKS_SUPERVISED_PID": str(pid), "HERMES_HOME": str(sb.home),
           "PATH": "/usr/bin:/bin"}

    def check() -> int:
        return subprocess.run(["/bin/sh", "./data/check"], cwd=sb.slot("alice"), env=env).returncode

    good = {"gateway_state": "running", "pid": pid, "start_time": readiness.proc_start_time(pid)}
    (d / "gateway_state.json").write_text(json.dumps(good, indent=2))
    assert check() == 0
    (d / "gateway_state.json").write_text(json.dumps({**good, "pid": pid + 1}))
    assert check() == 1
    (d / "gateway_state.json").write_text(json.dumps({**good, "start_time": 1}))
    assert check() == 1  # a recycled pid
    (d / "gateway_state.json").write_text(json.dumps({**good, "gateway_state": "draining"}))
    assert check() == 1
    (d / "gateway_state.json").write_text(json.dumps({"argv": [f'x,"pid":{pid},'], **good,
                                                      "pid": None}))
    assert check() == 1  # a key inside a string is not a key
    (d / "real.json").write_text(json.dumps(good))
    (d / "gateway_state.json").unlink()
    (d / "gateway_state.json").symlink_to(d / "real.json")
    assert check() == 1
    (d / "gateway_state.json").unlink()
    os.mkfifo(d / "gateway_state.json")
    assert check() == 1  # returns at once instead of blocking on a FIFO


def test_parse_reads_the_real_format():
    raw = json.dumps({"pid": 4242, "kind": "hermes-gateway", "argv": ["hermes"],
                      "start_time": 99, "gateway_state": "startup_failed",
                      "exit_reason": "x" * 300, "platforms": {"telegram": {
                          "state": "fatal", "error_message": "bad\ttoken",
                          "error_code": "telegram_token_invalid"}}},
                     separators=(",", ":")).encode()
    doc = state.parse(b"\xef\xbb\xbf" + raw)
    assert (doc.prior_state, doc.autostart, doc.pid, doc.start_time) == (
        "startup_failed", False, 4242, 99)
    assert len(doc.exit_reason) == 200 and doc.platforms["telegram"] == {
        "state": "fatal", "error": "bad\\ttoken", "error_code": "telegram_token_invalid"}
    assert doc.is_running_pid(4242) is False
    run = state.parse(b'{"gateway_state":"degraded","pid":1}')
    assert run.autostart and run.is_running_pid(1) is False
    assert state.parse(b'{"gateway_state":"running","pid":7,"start_time":5}').is_running_pid(7, 5)
    assert not state.parse(b'{"gateway_state":"running","pid":7,"start_time":5}').is_running_pid(7, 6)
    assert state.parse(b"[]").problem == "is not a JSON object"
    assert state.parse(b"{" * 10).problem == "is not valid JSON"
    assert state.parse(b" " * (state.STATE_LIMIT + 1)).problem.startswith("is larger")
