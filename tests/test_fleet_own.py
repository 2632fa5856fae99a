"""The slot's data/own script on its own: lock, standby, desired_state re-read, record."""

import fcntl
import json
import os
import subprocess
import time

import pytest

from hermes_tasks import inventory
from hermes_tasks.render import Renderer

CASES = {
    "desired-running": ('{"desired_state": "running"}', True),
    "desired-stopped": ('{"desired_state":"stopped","gateway_state":"running"}', False),
    "draining": ('{\n  "gateway_state": "draining",\n  "pid": 7\n}', True),
    "desired-null": ('{"desired_state": null, "gateway_state": "running"}', True),
    "startup-failed": ('{"gateway_state": "startup_failed"}', False),
    "not-json": ("running", False),
    "missing": (None, False),
}


@pytest.fixture
def own_script(tmp_path):
    cfg = inventory.load(None, ["host_id=host-b", "shared_volume=true"], environ={})
    path = tmp_path / "own"
    path.write_bytes(Renderer(cfg).gateway("default", True).files["data/own"].content)
    return path


def test_standby_takes_over_and_runs_only_if_still_wanted(tmp_path, own_script):
    procs, locks = {}, []
    for name, (state, _) in CASES.items():
        home = tmp_path / name
        home.mkdir()
        if state is not None:
            (home / "gateway_state.json").write_text(state)
        (home / ".gateway-owner.json").write_text('{"host_id": "host-a", "pid": 1}')
        (home / "gateway.pid").write_text("1")
        fd = os.open(home / ".gateway.lock", os.O_WRONLY | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # host a's gateway
        locks.append(fd)
        procs[name] = subprocess.Popen(
            ["sh", str(own_script), "sh", "-c", 'echo "EXECED $$"'],
            env={"PATH": "/usr/bin:/bin", "HERMES_HOME": str(home)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.5)
    assert all(p.poll() is None for p in procs.values())  # standbys, waiting
    for fd in locks:
        os.close(fd)  # host a's gateway is gone
    for name, (_, runs) in CASES.items():
        out, _ = procs[name].communicate(timeout=10)
        home = tmp_path / name
        assert procs[name].returncode == 0, (name, out)
        assert "standby, owned by host-a" in out, (name, out)
        record = json.loads((home / ".gateway-owner.json").read_text())
        if runs:
            assert f"EXECED {procs[name].pid}" in out, (name, out)
            assert record["host_id"] == "host-b" and record["pid"] == procs[name].pid
            assert not (home / "gateway.pid").exists()  # host a's pid means nothing here
        else:
            assert "staying down" in out and "EXECED" not in out, (name, out)
            assert record["host_id"] == "host-a"


def test_owner_keeps_its_own_pid_file_and_refuses_a_symlinked_lock(tmp_path, own_script):
    home = tmp_path / "h"
    home.mkdir()
    (home / ".gateway-owner.json").write_text('{"host_id": "host-b", "pid": 1}')
    (home / "gateway.pid").write_text("1")
    env = {"PATH": "/usr/bin:/bin", "HERMES_HOME": str(home)}
    res = subprocess.run(["sh", str(own_script), "true"], env=env, capture_output=True, text=True)
    assert res.returncode == 0 and (home / "gateway.pid").exists()
    (home / ".gateway.lock").unlink()
    (home / ".gateway.lock").symlink_to(tmp_path / "elsewhere")
    res = subprocess.run(["sh", str(own_script), "true"], env=env, capture_output=True, text=True)
    assert res.returncode == 111 and "symlink" in res.stdout
    assert not (tmp_path / "elsewhere").exists()
