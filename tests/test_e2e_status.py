"""gateway.status and --health with the REAL gateway (SPEC §14.8).

The supervisor runs in its own network namespace (as in test_e2e_ports.py), so the API
servers bind there; a squatter started inside that namespace takes one profile's port,
which our tool cannot know about: only the gateway's own record says its API server failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess

import pytest
import s6env
from control_helpers import make_profile, own
from test_e2e_hermes import GATEWAY_TIMEOUT, hermes_bin  # noqa: F401
from test_e2e_ports import CONTAINER_ENV, NETNS, named, tasks

pytestmark = pytest.mark.e2e

SQUAT_PORT = 9471


def docs(sb, hermes, *args, user=None):
    out = tasks(sb, hermes, "gateway.status", "--json", *args, user=user).stdout
    return {d["profile"]: d for d in json.loads(out)["gateways"]}


def health(sb, hermes, user=None):
    res = s6env.run_tasks(sb, None, user=user, env=CONTAINER_ENV, argv=[
        "python", "-m", "hermes_tasks", "gateway.status", "--health",
        *s6env.inventory_args(sb), "--var", f"hermes_bin={hermes}"])
    assert "Traceback" not in res.stderr, res.stderr
    return res


def test_healthy_set_passes_health_right_after_start_wait(root_sandbox, hermes_bin):  # noqa: F811
    sb, user = root_sandbox, root_sandbox.user
    s6env.write_container_env(sb.env_dir, CONTAINER_ENV)
    make_profile(sb.home, "default", {"desired_state": "stopped"})
    named(sb, "alpha", "API_SERVER_ENABLED=true\nAPI_SERVER_KEY=alpha-key-0123456789abcdef\n",
          state="stopped")
    named(sb, "gamma", "API_SERVER_ENABLED=false\n", state="stopped")
    own(sb, sb.home)
    sup = s6env.Supervisor(sb, wrap=NETNS).start()
    try:
        tasks(sb, hermes_bin, "reconcile")
        for name in ("default", "alpha", "gamma"):
            tasks(sb, hermes_bin, "gateway.start", "-p", name, "--wait", "--timeout",
                  str(GATEWAY_TIMEOUT), user=user)
            res = health(sb, hermes_bin, user=user)  # at once: no lag behind --wait
            assert res.returncode == 0, res.stderr
        got = docs(sb, hermes_bin, user=user)
        for name in ("default", "alpha", "gamma"):
            assert got[name]["ready"] and got[name]["observed"] == "ready", got[name]
            assert got[name]["why"] is None and got[name]["restarts"] == 0
        assert got["alpha"]["ports"]["api_server"]["enabled"] is True
        # served: the gateway's own process listens on its effective port (once bound)
        s6env.wait_for(lambda: docs(sb, hermes_bin)["alpha"]["ports"]["api_server"]["served"],
                       GATEWAY_TIMEOUT, interval=0.3, what="alpha's API server served")
        assert health(sb, hermes_bin).returncode == 0  # root sees the same
    finally:
        sup.stop()


def test_api_server_that_cannot_bind_shows_its_error_and_fails_health(
        root_sandbox, hermes_bin):  # noqa: F811
    sb, user = root_sandbox, root_sandbox.user
    s6env.write_container_env(sb.env_dir, CONTAINER_ENV)
    make_profile(sb.home, "default", {"desired_state": "stopped"})
    named(sb, "beta", "API_SERVER_ENABLED=true\nAPI_SERVER_KEY=beta-key-0123456789abcdef\n"
                      f"API_SERVER_PORT={SQUAT_PORT}\n")
    own(sb, sb.home)
    sup = s6env.Supervisor(sb, wrap=NETNS).start()
    squatter = None
    try:
        script = ("import socket, sys, time\n"
                  "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                  f"s.bind(('127.0.0.1', {SQUAT_PORT})); s.listen()\n"
                  "print('ok', flush=True)\ntime.sleep(600)\n")
        squatter = subprocess.Popen(["/usr/bin/nsenter", f"--net=/proc/{sup.pid}/ns/net",
                                     "/usr/bin/python3", "-c", script],
                                    stdout=subprocess.PIPE, text=True)
        assert squatter.stdout.readline() == "ok\n"
        tasks(sb, hermes_bin, "reconcile")

        def failed():
            beta = docs(sb, hermes_bin, "-p", "beta", user=user)["beta"]
            plat = beta["platforms"].get("api_server") or {}
            return beta if plat.get("state") == "fatal" else None

        beta = s6env.wait_for(failed, GATEWAY_TIMEOUT, interval=0.3,
                              what="beta's api_server recorded as failed")
        plat = beta["platforms"]["api_server"]
        assert plat["error"], plat
        # While up, the platform's failure is the reason; hermes 0.19.0 then exits 78 when no
        # platform is left, and the same error is its exit reason.
        assert beta["why_kind"] in ("platform", "exited") and beta["healthy"] is False, beta
        assert f"Port {SQUAT_PORT} already in use" in beta["why"], beta["why"]
        assert beta["ports"]["api_server"]["port"] == SQUAT_PORT
        assert beta["ports"]["api_server"]["served"] is not True  # the squatter's, not beta's
        text = tasks(sb, hermes_bin, "gateway.status", "-p", "beta", user=user).stdout
        assert "  platform api_server: fatal" in text, text
        assert "why: " in text and f"Port {SQUAT_PORT} already in use" in text, text
        for who in (user, None):
            res = health(sb, hermes_bin, user=who)
            assert res.returncode == 1, res.stderr
            [line] = [x for x in res.stderr.splitlines() if "unhealthy" in x]
            assert "gateway-beta: " in line and f"Port {SQUAT_PORT} already in use" in line
    finally:
        if squatter is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(squatter.pid, signal.SIGKILL)
            squatter.wait(10)
        sup.stop()
