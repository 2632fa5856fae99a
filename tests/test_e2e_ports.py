"""Per-profile isolation with the REAL gateway (SPEC §11, §13.5): every API server on its
own stable port, named gateways never inheriting the container's API_SERVER_*, collisions
failed before start, and the default gateway serving the root home whatever
``active_profile`` says.

Everything runs in a private network namespace: s6-svscan is started under
``unshare --net`` (loopback brought up), so the gateways it supervises bind there and can
collide with nothing else on the machine; the test talks to them through ``nsenter``.
Ports are found from the gateway processes' own listening sockets (``/proc``), not from
our output.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import s6env
from control_helpers import make_profile, own
from test_e2e_hermes import GATEWAY_TIMEOUT, hermes_bin, wait_running  # noqa: F401

pytestmark = pytest.mark.e2e

KEY = "container-key-0123456789abcdef"  # hermes refuses keys under 16 characters
CONTAINER_ENV = {  # what with-contenv hands every run script (and cont-init's reconcile)
    "API_SERVER_ENABLED": "true", "API_SERVER_KEY": KEY, "API_SERVER_HOST": "127.0.0.1",
    "HERMES_GATEWAY_MAX_STARTS": "0",  # many real starts: no respawn-storm sleeps
}
NETNS = ["/usr/bin/unshare", "--net", "/bin/sh", "-c",
         '/usr/sbin/ip link set lo up && exec "$@"', "sh"]
GAMMA_VARS = ("profile_vars={gamma: {extra_env: {API_SERVER_ENABLED: 'true', "
              "API_SERVER_KEY: gamma-key-0123456789abcdef}}}")


def tasks(sb, hermes, task, *args, user=None, code=0):
    res = s6env.run_tasks(sb, None, user=user, env=CONTAINER_ENV, argv=[
        "python", "-m", "hermes_tasks", task, *args, *s6env.inventory_args(sb),
        "--var", f"hermes_bin={hermes}", "--var", GAMMA_VARS])
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == code, f"{task} {args}: {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def named(sb, name, env: str | None, state="running"):
    d = make_profile(sb.home, name, {"desired_state": state})
    if env is not None:
        (d / ".env").write_text(env)
    own(sb, d)


def listening(pid: int) -> set[int]:
    """TCP ports process ``pid`` itself listens on (its socket fds matched to its netns's
    tcp tables)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A" and f[9] in inodes:  # LISTEN
                    found.add(int(f[1].rsplit(":", 1)[1], 16))
    return found


def wait_listening(pid: int, what: str) -> set[int]:
    return s6env.wait_for(lambda: listening(pid), GATEWAY_TIMEOUT, interval=0.2,
                          what=f"{what} listening")


def http(sup, port: int, path: str = "/health", key: str | None = None) -> tuple[int, dict]:
    """GET ``path`` on 127.0.0.1:``port`` from inside the supervisor's network namespace."""
    script = (
        "import json, sys, urllib.request, urllib.error\n"
        f"req = urllib.request.Request('http://127.0.0.1:{port}{path}')\n"
        + (f"req.add_header('Authorization', 'Bearer {key}')\n" if key else "")
        + "try:\n    r = urllib.request.urlopen(req, timeout=10); code, body = r.status, r.read()\n"
        "except urllib.error.HTTPError as e:\n    code, body = e.code, e.read()\n"
        "print(json.dumps([code, body.decode()]))\n")
    res = subprocess.run(["/usr/bin/nsenter", f"--net=/proc/{sup.pid}/ns/net",
                          "/usr/bin/python3", "-c", script],
                         capture_output=True, text=True, timeout=60, check=True)
    code, body = json.loads(res.stdout)
    return code, json.loads(body) if body.startswith("{") else {}


def restart_container(sb, hermes, sup):
    """Supervisor down, scandir emptied, cont-init's reconcile, supervisor up (new netns)."""
    assert sup.stop() == []
    for entry in sb.scandir.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    tasks(sb, hermes, "reconcile")
    return s6env.Supervisor(sb, wrap=NETNS).start()


def serving(sb, hermes, sup, names) -> dict[str, set[int]]:
    """Each named gateway's listening ports, once it runs; every API server answers /health."""
    out = {}
    for name in names:
        pid = wait_running(sb, hermes, name)
        out[name] = wait_listening(pid, f"gateway-{name}") if name != "off" else listening(pid)
        for port in out[name]:
            assert http(sup, port)[0] == 200, (name, port)
    return out


def test_every_api_server_gets_its_own_stable_port(root_sandbox, hermes_bin):  # noqa: F811
    sb, user = root_sandbox, root_sandbox.user
    s6env.write_container_env(sb.env_dir, CONTAINER_ENV)
    make_profile(sb.home, "default", {"desired_state": "running"})
    named(sb, "alpha", "API_SERVER_ENABLED=true\nAPI_SERVER_KEY=alpha-key-0123456789abcdef\n")
    named(sb, "beta", "API_SERVER_ENABLED=true\nAPI_SERVER_KEY=beta-key-0123456789abcdef\n")
    named(sb, "gamma", None)  # enabled through profile_vars
    named(sb, "off", "API_SERVER_ENABLED=false\n")  # the container enables it: still off
    own(sb, sb.home)
    tasks(sb, hermes_bin, "reconcile")
    sup = s6env.Supervisor(sb, wrap=NETNS).start()
    try:
        tasks(sb, hermes_bin, "reconcile")  # under the supervisor: brings them up
        ports = serving(sb, hermes_bin, sup, ["default", "alpha", "beta", "gamma", "off"])
        assert ports["default"] == {8642}
        assert ports["off"] == set()  # serves nothing
        assert all(len(ports[n]) == 1 for n in ("alpha", "beta", "gamma")), ports
        taken = [p for n in ("default", "alpha", "beta", "gamma") for p in ports[n]]
        assert len(set(taken)) == 4, ports  # each on its own port
        status = {g["profile"]: g for g in json.loads(tasks(
            sb, hermes_bin, "gateway.status", "--json", user=user).stdout)["gateways"]}
        for name in ("default", "alpha", "beta", "gamma"):
            assert status[name]["api_server_enabled"] is True
            assert {status[name]["api_server_port"]} == ports[name], (name, status[name])
        assert status["off"]["api_server_enabled"] is False
        text = tasks(sb, hermes_bin, "gateway.status", user=user).stdout
        assert f"api_server {next(iter(ports['alpha']))} (on)" in text

        # beta goes, delta comes; the container restarts
        tasks(sb, hermes_bin, "profile.delete", "beta")
        named(sb, "delta", "API_SERVER_ENABLED=1\nAPI_SERVER_KEY=delta-key-0123456789abcdef\n")
        sup = restart_container(sb, hermes_bin, sup)
        after = serving(sb, hermes_bin, sup, ["default", "alpha", "gamma", "delta"])
        for name in ("default", "alpha", "gamma"):
            assert after[name] == ports[name], (name, ports, after)  # survivors keep theirs
        assert len(after["delta"]) == 1
        assert after["delta"] == ports["beta"]  # the lowest free one: beta's, now free
        assert not after["delta"] & (after["alpha"] | after["gamma"] | {8642})

        # a profile that asks for the default's port: failed before start, exit 2
        named(sb, "clash", "API_SERVER_ENABLED=true\nAPI_SERVER_KEY=clash-key-0123456789abcd\n"
              "API_SERVER_PORT=8642\n")
        res = tasks(sb, hermes_bin, "reconcile", "--json", code=2)
        rows = {r["profile"]: r for r in json.loads(res.stdout)["results"]}
        assert rows["clash"]["result"] == "failed", rows["clash"]
        assert "8642" in rows["clash"]["message"] and "default" in rows["clash"]["message"]
        assert rows["clash"]["action"] == "registered"
        assert (sb.slot("clash") / "down").exists()
        s6env.wait_status_file(sb.slot("clash"))
        st = s6env.svstat(sb.slot("clash"))
        assert not st["up"] and not st["wantedup"]
        doc = json.loads((sb.home / "profiles" / "clash" / "gateway_state.json").read_text())
        assert "pid" not in doc  # hermes never ran for it
        default_pid = s6env.svstat(sb.slot("default"))["pid"]
        assert listening(default_pid) == {8642} and http(sup, 8642)[0] == 200
        check = json.loads(tasks(sb, hermes_bin, "reconcile", "--check", "--json", code=2).stdout)
        assert {r["profile"]: r["result"] for r in check["results"]}["clash"] == "failed"
        tasks(sb, hermes_bin, "reconcile", code=2)  # and on every run until fixed
        assert not s6env.svstat(sb.slot("clash"))["up"]
        shutil.rmtree(sb.home / "profiles" / "clash")

        # active_profile names alpha; after a container restart gateway-default still
        # serves the root home (only default and alpha run now)
        for name in ("gamma", "off", "delta"):
            make_profile(sb.home, name, {"desired_state": "stopped"})
        (sb.home / "active_profile").write_text("alpha\n")
        own(sb, sb.home)
        sup = restart_container(sb, hermes_bin, sup)
        default_pid = wait_running(sb, hermes_bin, "default")
        alpha_pid = wait_running(sb, hermes_bin, "alpha")
        assert default_pid != alpha_pid
        assert wait_listening(default_pid, "gateway-default") == {8642}
        assert listening(alpha_pid) == ports["alpha"]
        environ = dict(kv.split("=", 1) for kv in Path(f"/proc/{default_pid}/environ")
                       .read_text().split("\0") if "=" in kv)
        assert environ["HERMES_HOME"] == str(sb.home)
        assert os.readlink(f"/proc/{default_pid}/cwd") == str(sb.home)
        code, detail = http(sup, 8642, "/health/detailed", key=KEY)
        assert code == 200 and detail["pid"] == default_pid
        root_state = json.loads((sb.home / "gateway_state.json").read_text())
        assert root_state["pid"] == default_pid
        assert detail["updated_at"] == root_state["updated_at"]  # the root home's state
    finally:
        sup.stop()


def test_live_edit_conflict_keeps_the_serving_gateway(root_sandbox, hermes_bin):  # noqa: F811
    """SPEC §14.5 with the real gateway: beta's .env is edited to gamma's port while both
    serve; gamma keeps the port (same pid), beta is failed before any restart and keeps
    serving its old port; a second run changes nothing."""
    sb = root_sandbox
    s6env.write_container_env(sb.env_dir, CONTAINER_ENV)
    make_profile(sb.home, "default", {"desired_state": "stopped"})
    named(sb, "beta", "API_SERVER_ENABLED=true\nAPI_SERVER_KEY=beta-key-0123456789abcdef\n")
    named(sb, "gamma", "API_SERVER_ENABLED=true\nAPI_SERVER_KEY=gamma-key-0123456789abcd\n"
          "API_SERVER_PORT=8660\n")
    own(sb, sb.home)
    tasks(sb, hermes_bin, "reconcile")
    sup = s6env.Supervisor(sb, wrap=NETNS).start()
    try:
        tasks(sb, hermes_bin, "reconcile")
        before = serving(sb, hermes_bin, sup, ["beta", "gamma"])
        assert before["gamma"] == {8660} and before["beta"] not in ({8660}, set()), before
        pids = {n: s6env.svstat(sb.slot(n))["pid"] for n in ("beta", "gamma")}
        (sb.home / "profiles" / "beta" / ".env").write_text(
            "API_SERVER_ENABLED=true\nAPI_SERVER_KEY=beta-key-0123456789abcdef\n"
            "API_SERVER_PORT=8660\n")
        for _ in range(2):
            res = tasks(sb, hermes_bin, "reconcile", "--json", code=2)
            rows = {r["profile"]: r for r in json.loads(res.stdout)["results"]}
            assert rows["beta"]["result"] == "failed", rows["beta"]
            assert "8660" in rows["beta"]["message"] and "gamma" in rows["beta"]["message"]
            assert rows["gamma"]["result"] == "ok", rows["gamma"]
            for name in ("beta", "gamma"):
                st = s6env.svstat(sb.slot(name))
                assert st["up"] and st["pid"] == pids[name], (name, st)
                assert listening(pids[name]) == before[name], name
            assert http(sup, 8660)[0] == 200
        status = {d["profile"]: d for d in json.loads(tasks(
            sb, hermes_bin, "gateway.status", "--json").stdout)["gateways"]}
        for name in ("beta", "gamma"):
            assert set(status[name]["served_ports"]) == before[name], status[name]
    finally:
        sup.stop()
