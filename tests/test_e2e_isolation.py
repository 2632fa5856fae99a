"""Isolated profiles with the REAL gateway (SPEC §16): hermes-agent 0.19.0 runs as each
profile's own uid and serves its API server; alice's uid can neither read bob's secrets
(``.env``, slot ``run``, ``/proc/<bob>/environ``), nor the registrar's settings, nor
signal bob's gateway or control its slot.

As tests/test_e2e_ports.py: s6-svscan in a private network namespace, the API servers
reached through ``nsenter``.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import s6env
from control_helpers import make_profile, own
from test_e2e_hermes import GATEWAY_TIMEOUT, hermes_bin  # noqa: F401
from test_e2e_ports import CONTAINER_ENV, NETNS, http, wait_listening

pytestmark = pytest.mark.e2e

REGISTRAR = "hermes-tasks-registrar"


def tasks(sb, hermes, task, *args, code=0):
    res = s6env.run_tasks(sb, None, env=CONTAINER_ENV, argv=[
        "python", "-m", "hermes_tasks", task, *args, *s6env.inventory_args(sb),
        "--var", f"hermes_bin={hermes}", "--var", "profile_isolation=true"])
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == code, f"{task} {args}: {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def uid_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Uid:"))


def running_as(sb, name: str, uid: int) -> int:
    """The gateway's pid once s6 has it ready, running as ``uid``, its state file running."""
    def ok():
        st = s6env.svstat(sb.slot(name), ("up", "ready", "pid"))
        if not (st["up"] and st["ready"]) or uid_of(st["pid"]) != uid:
            return None
        return st["pid"]
    return s6env.wait_for(ok, GATEWAY_TIMEOUT, interval=0.2, what=f"{name} ready as uid {uid}")


def as_uid(uid: int, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["s6-applyuidgid", "-u", str(uid), "-g", str(uid), "-G", "", *cmd],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_isolated_real_gateways_serve_and_cannot_reach_each_other(root_sandbox,
                                                                  hermes_bin):  # noqa: F811
    sb = root_sandbox
    s6env.write_container_env(sb.env_dir, CONTAINER_ENV)
    make_profile(sb.home, "default", {"desired_state": "stopped"})
    for name in ("alice", "bob"):
        d = make_profile(sb.home, name, {"desired_state": "running"})
        (d / ".env").write_text(f"API_SERVER_ENABLED=true\n"
                                f"API_SERVER_KEY={name}-key-0123456789abcdef\n"
                                f"BOB_ONLY=s3cret-{name}\n")
    own(sb, sb.home)
    tasks(sb, hermes_bin, "reconcile")
    sup = s6env.Supervisor(sb, wrap=NETNS).start()
    try:
        tasks(sb, hermes_bin, "reconcile")
        uids = json.loads((sb.home / "profile-uids.json").read_text())["profiles"]
        assert set(uids) == {"alice", "bob"}
        pids = {n: running_as(sb, n, uids[n]) for n in ("alice", "bob")}
        for name, pid in pids.items():  # both serve their API servers
            ports = wait_listening(pid, f"gateway-{name}")
            assert len(ports) == 1
            port = next(iter(ports))
            assert http(sup, port)[0] == 200, (name, port)
            code, body = http(sup, port, "/v1/models", key=f"{name}-key-0123456789abcdef")
            assert code == 200, (name, body)

        alice, bob_home = uids["alice"], sb.home / "profiles" / "bob"
        denied = {
            "bob's .env": ("cat", str(bob_home / ".env")),
            "bob's run script": ("cat", str(sb.slot("bob") / "run")),
            "bob's environ": ("cat", f"/proc/{pids['bob']}/environ"),
            "the registrar's settings": ("cat", str(sb.scandir / REGISTRAR / "data" /
                                                    "inventory.yml")),
            "a signal to bob": ("sh", "-c", f"kill -TERM {pids['bob']}"),
            "bob's slot control": (str(sb.cmd_dir / "s6-svc"), "-d", str(sb.slot("bob"))),
        }
        for what, cmd in denied.items():
            res = as_uid(alice, *cmd)
            assert res.returncode != 0, (what, res.stdout)
            assert "s3cret-bob" not in res.stdout and "bob-key" not in res.stdout, what
        # from inside alice's gateway process's own view: the same uid, no other group
        with open(f"/proc/{pids['alice']}/status") as fh:
            groups = next(line.split()[1:] for line in fh if line.startswith("Groups:"))
        assert groups == [str(alice)]
        assert s6env.svstat(sb.slot("bob"))["pid"] == pids["bob"]  # bob untouched
        # hermes wrote nothing as alice outside alice's profile (kanban, temp files)
        outside = [p for p in sb.home.rglob("*") if not p.is_symlink()
                   and p.lstat().st_uid == alice
                   and not str(p).startswith((str(sb.home / "profiles" / "alice"),
                                              str(sb.home / "logs" / "gateways" / "alice")))]
        assert outside == [], outside

        docs = {g["profile"]: g for g in json.loads(
            tasks(sb, hermes_bin, "gateway.status", "--json").stdout)["gateways"]}
        assert {n: docs[n]["uid"] for n in ("alice", "bob")} == uids
        assert docs["default"]["uid"] == sb.user.uid
        assert all(docs[n]["ready"] for n in ("alice", "bob"))

        # a deliberate stop still reaches hermes's planned-stop path: it exits 0, "stopped"
        tasks(sb, hermes_bin, "gateway.stop", "-p", "alice", "--wait")
        s6env.wait_down(sb.slot("alice"), GATEWAY_TIMEOUT)
        st = s6env.svstat(sb.slot("alice"), ("up", "exitcode"))
        state = json.loads((sb.home / "profiles" / "alice" / "gateway_state.json").read_text())
        assert (st["exitcode"], state["gateway_state"]) == (0, "stopped"), (st, state)
        tasks(sb, hermes_bin, "gateway.start", "-p", "alice", "--wait")
        assert running_as(sb, "alice", alice)
    finally:
        sup.stop()
    assert os.stat(bob_home).st_uid == uids["bob"]
