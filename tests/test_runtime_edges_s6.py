"""Runtime truth at the edges (SPEC §14.5–§14.7) under a real s6-svscan with the stand-in:
a live edit that makes one gateway want another's port, an explicit port on another
profile's allocation, crash loops, and capacity.

The port tests run s6-svscan in its own network namespace (``unshare --net``), where the
stand-in listens on its API port like the real API server, so "who serves the port" is
the system's answer, read from the processes' own sockets.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest
import s6env
import standin

from hermes_tasks.facts.served import listening

KEY = "stand-in-key-0123456789abcdef"
NETNS = ["/usr/bin/unshare", "--net", "/bin/sh", "-c",
         '/usr/sbin/ip link set lo up && exec "$@"', "sh"]


def reconcile(sb, *args, code=0):
    res = s6env.run_tasks(sb, "reconcile", "--json", *args)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    return {r["profile"]: r for r in json.loads(res.stdout)["results"]}


def api_env(port: int | None = None) -> str:
    text = f"API_SERVER_ENABLED=true\nAPI_SERVER_KEY={KEY}\n"
    return text + (f"API_SERVER_PORT={port}\n" if port else "")


def named(sb, name: str, env: str | None, state: str = "running"):
    d = s6env.make_profile(sb.home, name, {"desired_state": state})
    if env is not None:
        (d / ".env").write_text(env)


def listening_on(sb, name: str) -> tuple[int, int]:
    """(pid, port) once gateway-NAME is up and its stand-in listens."""
    pid = s6env.wait_up(sb.slot(name), 10)["pid"]
    event = s6env.wait_for(lambda: next((e for e in standin.events(
        sb.home, name, ("listening", "bind_failed")) if e["pid"] == pid), None), 10,
        what=f"{name} listening")
    assert event["event"] == "listening", event
    assert listening(pid) == {event["port"]}
    return pid, event["port"]


def test_live_edit_conflict_keeps_the_serving_gateway_and_fails_the_other(sandbox):
    sb = sandbox
    s6env.make_profile(sb.home, "default", {"desired_state": "stopped"})
    named(sb, "beta", api_env())  # its allocation: 8650
    named(sb, "gamma", api_env(8660))
    (sb.home / ".standin").mkdir()
    (sb.home / ".standin" / "behaviour.json").write_text(json.dumps(
        {"profiles": {n: {"listen": "1"} for n in ("beta", "gamma", "delta")}}))
    with s6env.Supervisor(sb, wrap=NETNS):
        rows = reconcile(sb)
        assert rows["beta"]["result"] == rows["gamma"]["result"] == "changed"
        beta_pid, beta_port = listening_on(sb, "beta")
        gamma_pid, gamma_port = listening_on(sb, "gamma")
        assert (beta_port, gamma_port) == (8650, 8660)
        before = (sb.slot("beta") / "run").read_bytes()

        # beta's .env now asks for gamma's port while both run
        (sb.home / "profiles" / "beta" / ".env").write_text(api_env(8660))
        check = reconcile(sb, "--check", code=2)
        for _ in range(2):  # and the same on every run until resolved: nothing changes
            rows = reconcile(sb, code=2)
            beta = rows["beta"]
            assert beta["result"] == "failed" and rows["gamma"]["result"] == "ok", rows
            for word in ("not restarted: ", "8660", "gamma", "keeps running", "API_SERVER_PORT for beta"):
                assert word in beta["message"], beta
            assert check["beta"]["result"] == "failed" and check["gamma"]["result"] == "ok"
            assert check["beta"]["message"] == beta["message"]
            for name, pid, port in (("beta", beta_pid, 8650), ("gamma", gamma_pid, 8660)):
                st = s6env.svstat(sb.slot(name))
                assert (st["up"], st["wantedup"], st["pid"]) == (True, True, pid), (name, st)
                assert listening(pid) == {port}, name  # beta still on its old port
            assert (sb.slot("beta") / "run").read_bytes() == before  # not rewritten
            status = {d["profile"]: d for d in json.loads(s6env.run_tasks(
                sb, "gateway.status", "--json").stdout)["gateways"]}
            assert status["beta"]["api_server_port"] == 8660  # what its files now say
            assert status["beta"]["served_ports"] == [8650]  # what it actually serves
            assert status["gamma"]["served_ports"] == [8660]
            assert len(standin.starts(sb.home, "beta")) == 1  # never restarted
            assert len(standin.starts(sb.home, "gamma")) == 1

        # resolved: beta back on its allocation, nothing needed restarting
        (sb.home / "profiles" / "beta" / ".env").write_text(api_env())
        rows = reconcile(sb)
        assert rows["beta"]["result"] == "ok" and s6env.svstat(sb.slot("beta"))["pid"] == beta_pid

        # an explicit port on another profile's allocation: refused, nothing moves
        alloc = json.loads((sb.home / "gateway-ports.json").read_text())
        named(sb, "delta", api_env(8650))  # beta's allocation
        rows = reconcile(sb, code=2)
        delta = rows["delta"]
        assert delta["result"] == "failed" and delta["action"] == "registered", delta
        assert "8650" in delta["message"] and "beta's api_server_port allocation" in \
            delta["message"]
        after = json.loads((sb.home / "gateway-ports.json").read_text())
        assert {n: after["profiles"][n] for n in ("beta", "gamma")} == \
            {n: alloc["profiles"][n] for n in ("beta", "gamma")}
        assert rows["beta"]["result"] == "ok" and listening(beta_pid) == {8650}
        s6env.wait_status_file(sb.slot("delta"))
        assert s6env.svstat(sb.slot("delta"))["up"] is False
        assert standin.starts(sb.home, "delta") == []


CRASH_VARS = ("--var", "crash_limit=3", "--var", "crash_window=30")


def tasks(sb, task, *args, code=0):
    res = s6env.run_tasks(sb, task, *args, *CRASH_VARS)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == code, (task, args, res.returncode, res.stdout, res.stderr)
    return res


def behave(sb, **knobs):
    (sb.home / ".standin").mkdir(exist_ok=True)
    (sb.home / ".standin" / "behaviour.json").write_text(json.dumps(
        {"profiles": {"crashy": knobs}}))


def rows_of(res):
    return {r["profile"]: r for r in json.loads(res.stdout)["results"]}


def test_crash_loop_is_held_reported_and_lifted(sandbox, supervisor):
    sb = sandbox
    s6env.make_profile(sb.home, "default", {"desired_state": "stopped"})
    named(sb, "crashy", None, state="stopped")
    tasks(sb, "reconcile")
    behave(sb, exit_at_start="1", exit_reason="boom")
    slot = sb.slot("crashy")

    # --wait fails once the gateway has exited twice, not at the timeout
    res = tasks(sb, "gateway.start", "-p", "crashy", "--wait", "--timeout", "120", "--json",
                code=1)
    row = rows_of(res)["crashy"]
    assert row["result"] == "failed" and "exited 2 times" in row["message"], row
    assert len(standin.starts(sb.home, "crashy")) in (2, 3)  # it returned at the 2nd exit

    # finish holds it down after crash_limit exits and says why
    hold = s6env.wait_for(lambda: (slot / "data" / "hold").exists() and json.loads(
        (slot / "data" / "hold").read_text()), 30, what="the crash-loop hold")
    assert hold["exits"] == 3 and hold["window"] == 30 and hold["last_exit"] == 1
    s6env.wait_for(lambda: not s6env.svstat(slot)["wantedup"], 10, what="held down")
    st = s6env.svstat(slot)
    assert (st["up"], st["wantedup"], st["normallyup"]) == (False, False, True)
    starts = len(standin.starts(sb.home, "crashy"))
    assert starts == 3
    for _ in range(2):  # reported on every run, and never restarted by reconcile
        row = rows_of(tasks(sb, "reconcile", "--json", code=2))["crashy"]
        assert row["result"] == "failed", row
        assert row["message"].startswith("crash loop: 3 exits in 30 s, last exit 1; "
                                         "last log lines: "), row
        assert "fake-gateway: started profile=crashy" in row["message"]
        assert not s6env.svstat(slot)["up"]
    doc = json.loads(tasks(sb, "gateway.status", "-p", "crashy", "--json").stdout)
    assert doc["gateways"][0]["why"] == "crash loop: 3 exits in 30 s, last exit 1", doc
    assert "crash loop: 3 exits in 30 s, last exit 1" in tasks(
        sb, "gateway.status", "-p", "crashy").stdout
    check = rows_of(tasks(sb, "reconcile", "--check", "--json", code=2))["crashy"]
    assert check["message"] == row["message"]
    assert len(standin.starts(sb.home, "crashy")) == starts

    # fixed, then gateway.start: the hold is lifted and it runs
    behave(sb)
    row = rows_of(tasks(sb, "gateway.start", "-p", "crashy", "--wait", "--json"))["crashy"]
    assert row["result"] == "changed", row
    assert not (slot / "data" / "hold").exists() and (slot / "data" / "crash-since").exists()
    assert s6env.svstat(slot)["up"]

    # a deliberate stop and start are no crashes; a new loop is held again after 3 exits
    behave(sb, exit_at_start="1")
    tasks(sb, "gateway.restart", "-p", "crashy")
    s6env.wait_for(lambda: (slot / "data" / "hold").exists(), 30, what="held again")
    assert len(standin.starts(sb.home, "crashy")) == starts + 1 + 3
    # a change of the profile's files lifts it at the next reconcile
    behave(sb)
    (sb.home / "profiles" / "crashy" / ".env").write_text("# fixed\n")
    row = rows_of(tasks(sb, "reconcile", "--json"))["crashy"]
    assert row["result"] == "changed" and "brought up" in row["message"], row
    s6env.wait_up(slot, 10)
    assert not (slot / "data" / "hold").exists()


def test_over_capacity_fails_exactly_the_excess_and_lowering_retires_it(sandbox, supervisor):
    """SPEC §14.7, scaled down by default for a 2-core machine shared with others: 60
    profiles, all running, max_slots 45, then 40. HT_FULL_SCALE=1 runs the issue's shape:
    600 profiles, max_slots 450, then 400, under a plain s6-svscan (its default limit)."""
    sb = sandbox
    full = os.environ.get("HT_FULL_SCALE") == "1"
    total, limit, lower = (600, 450, 400) if full else (60, 45, 40)
    names = ["default"] + [f"p{i:03d}" for i in range(total - 1)]
    for name in names:
        s6env.make_profile(sb.home, name, {"desired_state": "running"})
    over = set(names[limit:])
    for _ in range(2):  # the second run changes nothing
        res = s6env.run_tasks(sb, "reconcile", "--json", "--var", f"max_slots={limit}",
                              timeout=1200)
        assert res.returncode == 2, res.stderr
        rows = {r["profile"]: r for r in json.loads(res.stdout)["results"]}
        failed = {p for p, r in rows.items() if r["result"] == "failed"}
        assert failed == over, [(p, rows[p]["message"]) for p in sorted(failed ^ over)][:3]
        assert all(rows[p]["message"].startswith("over capacity: ") for p in over)
        assert {rows[p]["result"] for p in names[:limit]} == (
            {"changed"} if _ == 0 else {"ok"}), rows
        assert not any(sb.slot(p).exists() for p in over)
        for name in names[:limit]:
            s6env.wait_up(sb.slot(name), 300 if full else 30)
    listed = json.loads(s6env.run_tasks(sb, "slot.list", "--json", "--var",
                                        f"max_slots={limit}").stdout)["slots"]
    by = {s["profile"]: s for s in listed}
    assert set(by) == set(names)  # every profile appears, over-capacity ones with why
    assert all(by[p]["reason"].startswith("over capacity") and not by[p]["registered"]
               for p in over)
    pids = {p: s6env.svstat(sb.slot(p))["pid"] for p in names[:lower]}

    # lowering max_slots retires the excess, the last ones first
    res = s6env.run_tasks(sb, "reconcile", "--json", "--var", f"max_slots={lower}",
                          timeout=1200)
    assert res.returncode == 2, res.stderr
    rows = {r["profile"]: r for r in json.loads(res.stdout)["results"]}
    retired = set(names[lower:limit])
    assert {p for p, r in rows.items() if r["result"] == "failed"} == over | retired
    for name in retired:
        assert rows[name]["message"].startswith("over capacity: its slot is retired"), rows[name]
        assert not sb.slot(name).exists()
        assert not any(standin.is_alive(e["pid"]) for e in standin.starts(sb.home, name))
    assert {p: s6env.svstat(sb.slot(p))["pid"] for p in names[:lower]} == pids


def agent_tasks(sb, task, *args, interval="0.5", code=0):
    res = s6env.run_tasks(sb, task, *args, *s6env.inventory_args(sb), "--var",
                          f"watch_interval={interval}", inventory_vars=False)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == code, (task, args, res.returncode, res.stdout, res.stderr)
    return res


def test_the_agent_converges_without_a_command(sandbox, supervisor):
    """SPEC §14.3 on one host: a gateway taken down behind the tool's back comes back, a
    desired_state written on the volume takes effect, a fixed crash loop is lifted."""
    sb = sandbox
    s6env.make_profile(sb.home, "default", {"desired_state": "stopped"})
    named(sb, "alice", None)
    agent_tasks(sb, "reconcile")
    first = s6env.wait_up(sb.slot("alice"), 10)["pid"]
    s6env.wait_up(sb.scandir / "hermes-tasks-registrar", 30)
    subprocess.run([str(s6env.S6_BIN / "s6-svc"), "-d", str(sb.slot("alice"))], check=True)
    pid = s6env.wait_for(lambda: (st := s6env.svstat(sb.slot("alice")))["up"]
                         and st["pid"] != first and st["pid"], 30,
                         what="the agent bringing alice back up")
    assert pid != first
    # an intent recorded on the volume (as another host's gateway.stop would)
    (sb.home / "profiles" / "alice" / "gateway_state.json").write_text(
        json.dumps({"desired_state": "stopped"}))
    s6env.wait_for(lambda: not s6env.svstat(sb.slot("alice"))["up"], 30,
                   what="the agent bringing alice down")
    assert not any(standin.is_alive(e["pid"]) for e in standin.starts(sb.home, "alice"))


@pytest.fixture
def second_sandbox():
    sb = s6env.make_sandbox(service_user=False)
    yield sb
    sb.cleanup()


def test_two_hosts_stop_and_restart_from_the_standby_act_on_the_owner(sandbox, second_sandbox):
    """SPEC §14.3: gateway.stop/restart --wait on the host that does not run the gateway
    record the intent, name the owner, and return once the owner's agent acted; never two
    gateways of one profile (sampled every 20 ms)."""
    from test_fleet_s6 import Host, owner_record, runners

    home = sandbox.home
    s6env.make_profile(home, "default", {"desired_state": "stopped"})
    for name in ("p0", "p1"):
        s6env.make_profile(home, name, {"desired_state": "running"})
    a = Host(sandbox, "host-a", home)
    b = Host(second_sandbox, "host-b", home)
    for host in (a, b):
        host.vars.append("watch_interval=0.5")
    violations: list = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            for p in ("p0", "p1"):
                on, live = runners([a, b], p)
                if len(on) > 1 or len(live) > 1:
                    violations.append((p, on, live))
            time.sleep(0.02)

    try:
        a.boot()
        for p in ("p0", "p1"):
            s6env.wait_for(lambda p=p: a.gateway_pid(p), 15, what=f"{p} on host-a")
        b.boot()
        for p in ("p0", "p1"):
            s6env.wait_up(b.sb.slot(p), 15)  # standbys
        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()

        res = b.run("gateway.stop", "-p", "p0", "--wait", "--timeout", "30", "--json")
        assert res.returncode == 0, (res.stdout, res.stderr)
        row = json.loads(res.stdout)["results"][0]
        assert "asked host-a, which runs the gateway, to stop it" in row["message"], row
        assert "host-a stopped it" in row["message"], row
        assert a.gateway_pid("p0") is None and standin.live_pids(home, "p0") == []

        res = b.run("gateway.start", "-p", "p1", "--json")  # it runs there already
        assert res.returncode == 0, (res.stdout, res.stderr)
        assert "standby: running on host-a" in json.loads(res.stdout)["results"][0]["message"]
        before = owner_record(home, "p1")
        check = b.run("gateway.restart", "-p", "p1", "--check", "--json")
        res = b.run("gateway.restart", "-p", "p1", "--wait", "--timeout", "30", "--json")
        assert res.returncode == 0, (res.stdout, res.stderr)
        row = json.loads(res.stdout)["results"][0]
        assert "asked host-a, which runs the gateway, to restart it" in row["message"], row
        assert json.loads(check.stdout)["results"][0]["message"].startswith(
            "would ask host-a, which runs the gateway, to restart it")
        after = owner_record(home, "p1")
        assert after["pid"] != before["pid"], (before, after)
        assert f"now pid {after['pid']} on {after['host_id']}" in row["message"], row
        assert not (home / "profiles" / "p1" / ".gateway-restart-request").exists()
        time.sleep(0.5)  # a last stretch of samples after the restart
        stop.set()
        thread.join(5)
        assert violations == []
    finally:
        stop.set()
        for host in (a, b):
            if host.sup:
                host.sup.stop()
