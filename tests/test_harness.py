"""The test harness itself, against real s6: sandbox, supervisor, shim, stand-in, run_tasks."""

from __future__ import annotations

import dataclasses
import os
import shlex
import stat
import subprocess
import time
from pathlib import Path

import pytest
import s6env
import standin
from s6env import FAKE_GATEWAY


def plain_run(sb: s6env.Sandbox, *gateway_args: str, setuid: str | None = None) -> str:
    """A minimal `#!/bin/sh` run script that execs the fake gateway."""
    drop = f"{sb.cmd_dir}/s6-setuidgid {setuid} " if setuid else ""
    return (
        "#!/bin/sh\nexec 2>&1\n"
        f"HERMES_HOME={shlex.quote(str(sb.home))}\nexport HERMES_HOME\n"
        f"exec {drop}{shlex.quote(str(FAKE_GATEWAY))} {' '.join(gateway_args)}\n"
    )


def shellcheck(path: Path) -> None:
    res = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_sandbox_layout(sandbox):
    for d in (sandbox.root, sandbox.home, sandbox.scandir, sandbox.env_dir, sandbox.cmd_dir,
              sandbox.cont_init_dir):
        assert d.is_dir() and stat.S_IMODE(d.stat().st_mode) == 0o755, d
    assert sandbox.root.name.startswith(s6env.SANDBOX_PREFIX)
    for tool in ("s6-svc", "s6-svscanctl", "s6-setuidgid", "s6-log", "execlineb", "with-contenv"):
        assert os.access(sandbox.cmd_dir / tool, os.X_OK), tool
    assert sandbox.user is None
    shellcheck(sandbox.cmd_dir / "with-contenv")
    run = sandbox.root / "run.sh"
    run.write_text(plain_run(sandbox, "gateway", "run", "--replace"))
    shellcheck(run)


@pytest.mark.parametrize("keep", [None, "0", "1"])
def test_with_contenv_shim(sandbox, keep):
    s6env.write_container_env(sandbox.env_dir, {"EXTRA_A": "from envdir", "EXTRA_EMPTY": None})
    env = {"PATH": f"{sandbox.cmd_dir}:/usr/bin:/bin", "EXTRA_B": "inherited",
           "EXTRA_EMPTY": "inherited"}
    if keep is not None:
        env["S6_KEEP_ENV"] = keep
    out = subprocess.run([str(sandbox.cmd_dir / "with-contenv"), "env"], env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert f"PATH={env['PATH']}" in out
    if keep == "1":
        assert "EXTRA_B=inherited" in out and "EXTRA_EMPTY=inherited" in out
        assert not any(line.startswith("EXTRA_A=") for line in out)
    else:
        assert "EXTRA_A=from envdir" in out
        assert not any(line.startswith(("EXTRA_B=", "EXTRA_EMPTY=")) for line in out)


def test_supervised_slot_lifecycle(sandbox, supervisor):
    log_run = "#!/bin/sh\nexec s6-log 1 n2 s100000 ./main\n"
    slot = s6env.publish_test_slot(sandbox.scandir, "gateway-harness",
                                   plain_run(sandbox, "-p", "harness", "gateway", "run", "--replace"),
                                   log_run=log_run)
    assert not standin.starts(sandbox.home, "harness")
    supervisor.rescan()
    st = s6env.wait_up(slot)
    assert st["wantedup"] and st["normallyup"] and st["pid"] > 0
    started = s6env.wait_for(lambda: standin.starts(sandbox.home, "harness"), 5)
    assert len(started) == 1
    ev = started[0]
    assert ev["pid"] == st["pid"]
    assert ev["argv"] == ["-p", "harness", "gateway", "run", "--replace"]
    assert ev["env"]["HERMES_HOME"] == str(sandbox.home)
    assert ev["uid"] == os.geteuid() and ev["cwd"] == str(slot)
    assert standin.live_pids(sandbox.home, "harness") == [ev["pid"]]
    assert len(s6env.supervise_pids(slot)) == 2  # slot and its logger
    s6env.wait_for(lambda: (slot / "log/main/current").exists()
                   and "fake-gateway: started" in (slot / "log/main/current").read_text(), 5)

    # A restart through s6 gives a new instance that never overlaps the old one.
    subprocess.run([f"{sandbox.cmd_dir}/s6-svc", "-r", str(slot)], check=True)
    s6env.wait_for(lambda: len(standin.starts(sandbox.home, "harness")) == 2, 5)
    assert s6env.wait_up(slot)["pid"] != ev["pid"]

    killed = supervisor.stop()
    assert killed == []
    assert not supervisor.alive()
    assert s6env.supervise_pids(slot) == [] and s6env.pids_in(sandbox.root) == []
    assert standin.live_pids(sandbox.home, "harness") == []
    evts = standin.events(sandbox.home, "harness")
    assert [e["event"] for e in evts] == ["start", "stop", "start", "stop"]
    assert all(e["code"] == 1 for e in evts if e["event"] == "stop")
    standin.assert_never_overlapping(evts)


@pytest.mark.parametrize("keep_env", [False, True])
def test_run_script_through_with_contenv(sandbox, keep_env):
    s6env.write_container_env(sandbox.env_dir,
                              {"HERMES_HOME": str(sandbox.home), "EXTRA_FROM": "envdir"})
    svscan_env = {"HERMES_HOME": str(sandbox.home), "EXTRA_FROM": "svscan"}
    if keep_env:
        svscan_env["S6_KEEP_ENV"] = "1"
    run = (f"#!{sandbox.cmd_dir}/with-contenv sh\n# shellcheck shell=sh\nexec 2>&1\n"
           f"exec {shlex.quote(str(FAKE_GATEWAY))} gateway run --replace\n")
    with s6env.Supervisor(sandbox, env=svscan_env) as sup:
        slot = s6env.publish_test_slot(sandbox.scandir, "gateway-default", run)
        shellcheck(slot / "run")
        sup.rescan()
        s6env.wait_up(slot)
        ev = s6env.wait_for(lambda: standin.starts(sandbox.home), 5)[0]
        assert ev["argv"] == ["gateway", "run", "--replace"]
        assert ev["env"]["EXTRA_FROM"] == ("svscan" if keep_env else "envdir")
        # No log/: the service's stdout is s6-svscan's.
        s6env.wait_for(lambda: "fake-gateway: started profile=default" in sup.log_text(), 5)
    assert s6env.pids_in(sandbox.root) == []


def test_crash_loop_behaviour_file(sandbox, supervisor):
    standin.write_behaviour(sandbox.home, term_exit=0, profiles={"crash": {"exit_at_start": 3}})
    slot = s6env.publish_test_slot(sandbox.scandir, "gateway-crash",
                                   plain_run(sandbox, "-p", "crash", "gateway", "run"))
    supervisor.rescan()
    s6env.wait_for(lambda: len(standin.starts(sandbox.home, "crash")) >= 2, 5)
    evts = standin.events(sandbox.home, "crash")
    assert [e["code"] for e in evts if e["event"] == "exit"][:2] == [3, 3]
    gap = standin.starts(sandbox.home, "crash")[1]["t"] - evts[0]["t"]
    assert gap >= 0.9  # s6's restart delay
    standin.assert_never_overlapping(evts)
    assert supervisor.stop() == []
    assert s6env.supervise_pids(slot) == []


def test_stop_kills_orphans_of_a_non_exec_run_script(sandbox, supervisor):
    slot = s6env.publish_test_slot(sandbox.scandir, "gateway-orphan",
                                   "#!/bin/sh\n/bin/sleep 1000\n")
    supervisor.rescan()
    s6env.wait_up(slot)
    sleeper = s6env.wait_for(
        lambda: [p.pid for p in s6env.processes() if p.comm == "sleep" and p.cwd == str(slot)], 5)
    killed = supervisor.stop()
    assert killed == sleeper  # reference/s6.md §2: the sleep outlives its run script
    assert s6env.pids_in(sandbox.root) == []


def test_supervised_as_service_user(root_sandbox, supervisor):
    sb = root_sandbox
    assert Path(sb.home).stat().st_uid == sb.user.uid
    slot = s6env.publish_test_slot(
        sb.scandir, "gateway-svc",
        plain_run(sb, "-p", "svc", "gateway", "run", "--replace", setuid=sb.user.name))
    supervisor.rescan()
    s6env.wait_up(slot)
    ev = s6env.wait_for(lambda: standin.starts(sb.home, "svc"), 5)[0]
    assert (ev["uid"], ev["gid"]) == (sb.user.uid, sb.user.gid)
    assert stat.S_IMODE((sb.home / ".standin").stat().st_mode) == 0o777
    assert supervisor.stop() == []
    assert [e["event"] for e in standin.events(sb.home, "svc")] == ["start", "stop"]


def test_run_tasks_as_service_user(root_sandbox):
    sb = root_sandbox
    code = "import os, hermes_tasks; print(os.getuid(), os.getgid(), os.getgroups(), os.getcwd())"
    res = s6env.run_tasks(sb, None, argv=["python", "-c", code], user=sb.user)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split(maxsplit=2)[:2] == [str(sb.user.uid), str(sb.user.gid)]
    assert f"[] {sb.root}" in res.stdout
    # The same as the current user.
    res = s6env.run_tasks(sb, None, argv=["python", "-c", code])
    assert res.stdout.startswith(f"{os.getuid()} ")


def test_inventory_args(sandbox):
    args = s6env.inventory_args(sandbox)
    assert "service_user=null" in args and f"hermes_home={sandbox.home}" in args
    assert f"hermes_bin={FAKE_GATEWAY}" in args and f"s6_bin_dir={sandbox.cmd_dir}" in args
    with_user = dataclasses.replace(sandbox, user=s6env.ServiceUser("svc", 5001, 5002))
    args = s6env.inventory_args(with_user)
    assert args[-6:] == ["--var", "service_user=svc", "--var", "service_uid=5001",
                         "--var", "service_gid=5002"]


def test_run_tasks_reaches_the_package(sandbox):
    res = s6env.run_tasks(sandbox, "--help", inventory_vars=False, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert "reconcile" in res.stdout


def test_assert_never_overlapping():
    ok = [{"event": "start", "pid": 1, "t": 1.0}, {"event": "stop", "pid": 1, "t": 2.0},
          {"event": "start", "pid": 2, "t": 3.0}, {"event": "exit", "pid": 2, "t": 3.1}]
    standin.assert_never_overlapping(ok)
    bad = [{"event": "start", "pid": 1, "t": 1.0}, {"event": "start", "pid": 2, "t": 1.5},
           {"event": "stop", "pid": 1, "t": 2.0}]
    with pytest.raises(AssertionError, match="still running"):
        standin.assert_never_overlapping(bad)


def test_fake_gateway_directly(sandbox):
    env = {"PATH": "/usr/bin:/bin", "HERMES_HOME": str(sandbox.home), "HT_X": "1",
           "STANDIN_TERM_EXIT": "7", "OTHER": "no"}
    t0 = time.monotonic()
    proc = subprocess.Popen([str(FAKE_GATEWAY), "-p", "direct", "gateway", "run"], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("fake-gateway: started profile=direct")
        startup = time.monotonic() - t0
        proc.terminate()
        assert proc.wait(5) == 7
    finally:
        proc.kill()
        proc.wait()
    ev = standin.starts(sandbox.home, "direct")[0]
    assert ev["env"] == {"HERMES_HOME": str(sandbox.home), "HT_X": "1"}
    assert standin.events(sandbox.home, "direct")[-1]["code"] == 7
    assert startup < 2.0
