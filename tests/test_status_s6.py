"""gateway.status explains every gateway, --health, --format prometheus and gateway.logs
(SPEC §14.8), against a real s6-svscan with the stand-in gateway: one test per reason."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import threading

import s6env
import standin
from control_helpers import make_profile, status, tasks
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

# s6-log's T (what the logger writes, in its time zone: UTC in the image) or a TAI64N
# label turned into UTC
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6,9} ")


def gateway(sb, name, *extra):
    [doc] = status(sb, "-p", name, *extra).values()
    return doc


def wait_why(sb, name, kind, *extra, timeout=30):
    return s6env.wait_for(lambda: (lambda d: d if d["why_kind"] == kind else None)(
        gateway(sb, name, *extra)), timeout, interval=0.1, what=f"{name}: why {kind}")


def health(sb, *extra):
    res = s6env.run_tasks(sb, "gateway.status", "--health", *extra)
    assert "Traceback" not in res.stderr, res.stderr
    return res


def running_set(sb, *names):
    make_profile(sb.home, "default", {"desired_state": "running"})
    for n in names:
        make_profile(sb.home, n, {"desired_state": "running"})


# --------------------------------------------------------------------------- one per reason


def test_stopped_by_the_operator(sandbox, supervisor):
    sb = sandbox
    running_set(sb, "alice")
    tasks(sb, "reconcile")
    tasks(sb, "gateway.start", "-p", "alice", "--wait")
    tasks(sb, "gateway.stop", "-p", "alice", "--wait")
    doc = gateway(sb, "alice")
    assert (doc["why_kind"], doc["desired"], doc["observed"]) == ("stopped", "stopped", "down")
    assert doc["why"] == "stopped by the operator (desired_state: stopped)"
    assert doc["healthy"] is True  # stopped as desired: health does not mind
    assert "why: stopped by the operator" in tasks(sb, "gateway.status", "-p", "alice").stdout


def test_port_conflict_names_the_other_gateway(sandbox, supervisor):
    sb = sandbox
    running_set(sb)
    for n in ("alice", "bob"):
        d = make_profile(sb.home, n, {"desired_state": "running"})
        (d / ".env").write_text("API_SERVER_ENABLED=true\nAPI_SERVER_KEY=k-0123456789abcdef\n"
                                "API_SERVER_PORT=9311\n")
    tasks(sb, "reconcile", ok=False)
    doc = gateway(sb, "bob")
    assert doc["why_kind"] == "port_conflict", doc
    assert "9311" in doc["why"] and "alice" in doc["why"]
    assert doc["ports"]["api_server"] == {"port": 9311, "enabled": True, "served": None}
    res = health(sb)
    assert res.returncode == 1
    assert any(line.endswith(doc["why"]) and "gateway-bob" in line
               for line in res.stderr.splitlines()), res.stderr


def test_crash_loop_counts_s6s_death_tally_and_quotes_the_log(sandbox, supervisor):
    sb = sandbox
    running_set(sb, "alice")
    standin.write_behaviour(sb.home, profiles={"alice": {"exit_at_start": 1,
                                                         "exit_reason": "boom"}})
    tasks(sb, "reconcile")
    doc = wait_why(sb, "alice", "crash_loop", timeout=40)
    assert re.fullmatch(r"crash loop: \d+ exits in 60 s, last exit 1", doc["why"]), doc["why"]
    assert doc["restarts"] >= 5
    assert any("fake-gateway: started profile=alice" in line for line in doc["log_tail"])
    assert all(STAMP.match(line) for line in doc["log_tail"]), doc["log_tail"]
    human = tasks(sb, "gateway.status", "-p", "alice").stdout
    assert "why: crash loop:" in human and "  log: " in human


def test_over_capacity(sandbox, supervisor):
    sb = sandbox
    running_set(sb, "alice", "bob")
    cap = ("--var", "max_slots=2")
    tasks(sb, "reconcile", *cap, ok=False)
    docs = status(sb, *cap)
    assert docs["bob"]["why_kind"] == "over_capacity", docs["bob"]
    assert docs["bob"]["why"] == "over capacity: max_slots (2) gateway slots reached"
    assert docs["bob"]["registered"] is False and docs["bob"]["healthy"] is False


def test_standby_names_the_owner(sandbox, supervisor):
    sb = sandbox
    d = make_profile(sb.home, "alice", {"desired_state": "running"})
    make_profile(sb.home, "default", {"desired_state": "stopped"})
    shared = ("--var", "shared_volume=true", "--var", "host_id=host-a")
    fd = os.open(d / ".gateway.lock", os.O_WRONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another host's gateway holds the profile
        (d / ".gateway-owner.json").write_text(json.dumps(
            {"host_id": "host-b", "pid": 4242, "since": "2026-12-07T00:00:00Z"}))
        tasks(sb, "reconcile", *shared)
        doc = wait_why(sb, "alice", "standby", *shared)
        assert doc["why"] == "standby: running on host-b"
        assert (doc["host"], doc["observed"], doc["ready"]) == ("host-b", "standby", False)
        assert doc["healthy"] is True
        assert health(sb, *shared).returncode == 0
    finally:
        os.close(fd)


def test_not_placed_here_is_listed_with_its_reason(sandbox, supervisor):
    sb = sandbox
    running_set(sb, "alice", "bob")
    place = ("--var", "host_id=h1", "--var", "gateway_profiles=[default, al*]")
    tasks(sb, "reconcile", *place)
    docs = status(sb, *place)
    assert list(docs) == ["default", "alice", "bob"]
    assert docs["bob"]["why_kind"] == "not_placed" and docs["bob"]["placed"] is False
    assert docs["bob"]["why"] == "not placed here: not placed on h1"
    assert gateway(sb, "bob", *place)["why_kind"] == "not_placed"  # -p too, exit 0
    s6env.wait_for(lambda: health(sb, *place).returncode == 0, 30, what="healthy")


def test_exit_78_with_the_gateways_own_reason(sandbox, supervisor):
    sb = sandbox
    running_set(sb, "alice")
    standin.write_behaviour(sb.home, profiles={"alice": {
        "exit_at_start": 78, "exit_reason": "telegram: token rejected"}})
    tasks(sb, "reconcile")
    doc = wait_why(sb, "alice", "exited")
    assert doc["why"] == "exited 78: telegram: token rejected"
    assert doc["last_exit"]["code"] == 78 and doc["last_exit"]["reason"] == (
        "telegram: token rejected")
    assert doc["log_tail"] and "alice" in doc["log_tail"][-1]


def test_logger_cannot_start(sandbox, supervisor):
    sb = sandbox
    running_set(sb, "alice")
    logs = sb.home / "logs" / "gateways"
    logs.mkdir(parents=True)
    (logs / "alice").write_text("not a directory\n")  # s6-log's mkdir -p fails
    tasks(sb, "reconcile")
    doc = wait_why(sb, "alice", "logger")
    assert doc["why"].startswith("logger not running: s6-log exited ")
    res = health(sb)
    assert res.returncode == 1 and "gateway-alice: logger not running" in res.stderr


def test_held_reason_file_plugs_in(sandbox, supervisor):
    """The documented hook: a slot's data/hold (what finish records when it holds a
    gateway down) is the reason line, ahead of every inferred one."""
    sb = sandbox
    running_set(sb, "alice")
    tasks(sb, "reconcile")
    tasks(sb, "gateway.start", "-p", "alice", "--wait")
    slot = sb.slot("alice")
    subprocess.run([f"{sb.cmd_dir}/s6-svc", "-wd", "-d", str(slot)], check=True, timeout=10)
    (slot / "data" / "hold").write_text("crash loop: 5 exits in 60 s, last exit 1\n")
    doc = gateway(sb, "alice")
    assert (doc["why_kind"], doc["why"]) == ("held", "crash loop: 5 exits in 60 s, last exit 1")


def test_starting_until_ready(sandbox, supervisor):
    sb = sandbox
    running_set(sb, "alice")
    standin.write_behaviour(sb.home, profiles={"alice": {"running_delay": 30}})
    tasks(sb, "reconcile")
    doc = wait_why(sb, "alice", "starting")
    assert doc["up"] and not doc["ready"] and doc["why"].startswith("starting: up ")
    assert health(sb).returncode == 1


def test_platform_error_is_shown_and_fails_health(sandbox, supervisor):
    sb = sandbox
    running_set(sb)
    plat = {"api_server": {"state": "fatal", "error_code": "api_server_port_in_use",
                           "error_message": "Port 8651 already in use"}}
    make_profile(sb.home, "beta", {"desired_state": "running", "platforms": plat})
    tasks(sb, "reconcile")
    tasks(sb, "gateway.start", "-p", "beta", "--wait")
    doc = gateway(sb, "beta")
    assert doc["platforms"]["api_server"] == {"state": "fatal", "error": "Port 8651 already in use",
                                              "error_code": "api_server_port_in_use"}
    human = tasks(sb, "gateway.status", "-p", "beta").stdout
    assert "  platform api_server: fatal (api_server_port_in_use): Port 8651 already in use" \
        in human
    why = "platform api_server fatal (api_server_port_in_use): Port 8651 already in use"
    assert (doc["ready"], doc["healthy"], doc["why_kind"], doc["why"]) == (
        True, False, "platform", why)
    res = health(sb)
    assert res.returncode == 1 and f"gateway-beta: {why}" in res.stderr, res.stderr


# --------------------------------------------------------------------------- health


def test_health_passes_right_after_start_wait(sandbox, supervisor):
    sb = sandbox
    running_set(sb, "alice", "bob")
    make_profile(sb.home, "carol", {"desired_state": "stopped"})
    tasks(sb, "reconcile")
    for n in ("default", "alice", "bob"):
        tasks(sb, "gateway.start", "-p", n, "--wait")
        # no lag: the same "ready" as --wait, s6's flag or not
        assert health(sb, "-p", n).returncode == 0
    res = health(sb)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    supervisor.svscanctl("-t")  # the supervision tree goes away
    s6env.wait_for(lambda: not supervisor.alive(), 20, what="s6-svscan gone")
    res = health(sb)
    assert res.returncode == 1 and "no s6-svscan listens" in res.stderr


# --------------------------------------------------------------------------- metrics


def svdt(slot) -> list[str]:
    out = subprocess.run(["s6-svdt", str(slot)], capture_output=True, text=True, timeout=10)
    return out.stdout.splitlines()


def test_prometheus_output_parses_and_matches_s6(sandbox, supervisor):
    sb = sandbox
    running_set(sb, "alice")
    make_profile(sb.home, "bob", {"desired_state": "stopped"})
    tasks(sb, "reconcile")
    tasks(sb, "gateway.start", "-p", "alice", "--wait")
    tasks(sb, "gateway.restart", "-p", "alice", "--wait")  # one death in alice's tally
    tasks(sb, "gateway.start", "-p", "default", "--wait")
    text = tasks(sb, "gateway.status", "--format", "prometheus").stdout
    assert text.endswith("# EOF\n")
    fams = {f.name: f for f in openmetrics_families(text)}  # the strict OpenMetrics parser
    assert {"hermes_tasks_up", "hermes_tasks_ready", "hermes_tasks_desired_running",
            "hermes_tasks_restarts", "hermes_tasks_last_exit_code", "hermes_tasks_port",
            "hermes_tasks_platform_up"} <= set(fams)
    flat = {(s.name, s.labels.get("profile"), s.labels.get("platform")): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}
    for name in ("default", "alice", "bob"):
        slot = sb.slot(name)
        st = s6env.svstat(slot)
        assert flat[("hermes_tasks_up", name, None)] == int(bool(st["up"])), name
        assert flat[("hermes_tasks_ready", name, None)] == int(bool(st["up"])), name
        deaths = svdt(slot)
        assert flat[("hermes_tasks_restarts_total", name, None)] == len(deaths), name
        if deaths:
            code = re.search(r"exitcode (\d+)", deaths[-1])
            if code:
                assert flat[("hermes_tasks_last_exit_code", name, None)] == int(code.group(1))
    assert flat[("hermes_tasks_restarts_total", "alice", None)] >= 1
    assert flat[("hermes_tasks_desired_running", "bob", None)] == 0
    assert flat[("hermes_tasks_port_info", "alice", "api_server")] == 1
    labels = next(s.labels for f in text_string_to_metric_families(text) for s in f.samples
                  if s.name == "hermes_tasks_port_info" and s.labels["profile"] == "alice"
                  and s.labels["platform"] == "api_server")
    assert labels["port"] == "8650" and labels["enabled"] == "false"


def test_metrics_textfile_is_written_by_a_root_reconcile(sandbox, supervisor):
    sb = sandbox
    running_set(sb)
    target = sb.root / "hermes_tasks.prom"
    tasks(sb, "reconcile", "--var", f"metrics_textfile={target}")
    text = target.read_text()
    assert text.endswith("# EOF\n") and 'hermes_tasks_up{profile="default"' in text
    assert oct(target.stat().st_mode & 0o777) == "0o644"


# --------------------------------------------------------------------------- logs


def tai64n(unix: float) -> str:
    secs = int(unix)
    return f"@{(1 << 62) + 37 + secs:016x}{int((unix - secs) * 1e9):08x}"


def test_logs_print_the_last_lines_readably(root_sandbox):
    sb = root_sandbox
    make_profile(sb.home, "alice", {"desired_state": "stopped"})
    d = sb.home / "logs" / "gateways" / "alice"
    d.mkdir(parents=True)
    base = 1796601600.25  # 2026-12-07 00:00:00.25 UTC
    (d / "current").write_text("".join(f"{tai64n(base + i)} line {i}\n" for i in range(50)))
    s6env.own(sb, sb.home)
    for user in (None, sb.user):
        res = s6env.run_tasks(sb, "gateway.logs", "-p", "alice", "-n", "5", user=user)
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines() == [
            f"2026-12-07 00:00:{45 + i:02d}.250000 line {45 + i}" for i in range(5)]
    # the same instant s6's own decoder prints
    ours = s6env.run_tasks(sb, "gateway.logs", "-p", "alice", "-n", "1").stdout
    theirs = subprocess.run(["s6-tai64nlocal"], input=f"{tai64n(base + 49)} line 49\n",
                            capture_output=True, text=True, env={"TZ": "UTC"}).stdout
    assert ours[:26] == theirs[:26]
    # a symlink planted as the log is not followed
    os.unlink(d / "current")
    os.symlink("/etc/shadow", d / "current")
    res = s6env.run_tasks(sb, "gateway.logs", "-p", "alice")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) == 1 and "root:" not in res.stdout


def test_logs_of_another_host_on_a_shared_volume(sandbox):
    sb = sandbox
    make_profile(sb.home, "alice")
    for host in ("host-a", "host-b"):
        d = sb.home / "logs" / "gateways" / "alice" / host
        d.mkdir(parents=True)
        (d / "current").write_text(f"{tai64n(1796601600)} written on {host}\n")
    shared = ("--var", "shared_volume=true", "--var", "host_id=host-a")
    res = tasks(sb, "gateway.logs", "-p", "alice", *shared)
    assert res.stdout == "2026-12-07 00:00:00.000000 written on host-a\n"
    res = tasks(sb, "gateway.logs", "-p", "alice", "--host", "host-b", *shared)
    assert res.stdout == "2026-12-07 00:00:00.000000 written on host-b\n"


def test_logs_follow_prints_appended_lines(sandbox):
    sb = sandbox
    make_profile(sb.home, "alice")
    d = sb.home / "logs" / "gateways" / "alice"
    d.mkdir(parents=True)
    (d / "current").write_text(f"{tai64n(1796601600)} first\n")
    cmd = [s6env.python_for(None)[0], "-m", "hermes_tasks", "gateway.logs", "-p", "alice",
           "--follow", *s6env.inventory_args(sb)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=s6env.tool_env(sb),
                            cwd=sb.root)
    watchdog = threading.Timer(60, proc.kill)  # a hung follow fails the test, never hangs it
    watchdog.start()
    try:
        assert proc.stdout.readline().endswith(" first\n")
        with open(d / "current", "a") as fh:
            fh.write(f"{tai64n(1796601601)} second\n")
        assert proc.stdout.readline() == "2026-12-07 00:00:01.000000 second\n"
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.wait(10)


def test_json_keys_are_stable(sandbox, supervisor):
    sb = sandbox
    running_set(sb)
    tasks(sb, "reconcile")
    tasks(sb, "gateway.start", "-p", "default", "--wait")
    doc = gateway(sb, "default")
    assert set(doc) >= {"placed", "desired", "observed", "host", "since", "uptime",
                        "restarts", "last_exit", "logger", "platforms", "ports", "why",
                        "why_kind", "log_tail", "healthy"}
    assert doc["observed"] == "ready" and doc["why"] is None and doc["healthy"] is True
    assert doc["uptime"] >= 0 and doc["host"] == os.uname().nodename  # runs here


def test_one_profile_reads_only_that_profile(sandbox, supervisor):
    """``-p NAME`` touches that profile (and default's ports), not the others' files."""
    sb = sandbox
    running_set(sb, "alice")
    bob = make_profile(sb.home, "bob", {"desired_state": "stopped"})
    tasks(sb, "reconcile")
    os.symlink("/etc/hostname", bob / ".env")  # read by a full status: a warning names it
    full = s6env.run_tasks(sb, "gateway.status")
    assert full.returncode == 0 and "profiles/bob/.env" in full.stderr, full.stderr
    one = s6env.run_tasks(sb, "gateway.status", "-p", "alice")
    assert one.returncode == 0 and "bob" not in one.stderr + one.stdout, one.stderr
    assert one.stdout.startswith("gateway-alice: ")
    bad = s6env.run_tasks(sb, "gateway.status", "--format", "yaml")
    assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1 and "--format" in bad.stderr
