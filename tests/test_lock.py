"""The mutating-task lock on ``<scandir>/.hermes-tasks.lock`` (SPEC §6)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import subprocess
import threading
import time

import pytest
import s6env

from hermes_tasks import lock
from hermes_tasks.errors import LockTimeout


@contextlib.contextmanager
def holding(directory, pid=None):
    """Hold the lock as another run would: flock on the private file, a pid written in it."""
    path = os.path.join(directory, lock.LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{pid or os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)


def test_held_writes_the_holder_pid_and_releases(tmp_path):
    with lock.held(str(tmp_path), 1):
        path = tmp_path / lock.LOCK_NAME
        assert path.read_text() == f"{os.getpid()}\n"
        # another open file description cannot take it meanwhile
        with open(path) as fh, pytest.raises(BlockingIOError):
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(path) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released


def _reaped_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_timeout_names_the_lock_and_its_holder(tmp_path):
    with holding(tmp_path, pid=os.getpid()) as path:
        start = time.monotonic()
        with pytest.raises(LockTimeout) as err, lock.held(str(tmp_path), 0.3, "reconcile"):
            pytest.fail("the lock was taken while held")
        elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 2
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"reconcile: lock {path} is held by pid {os.getpid()};")
    assert "lock_timeout" in message
    assert err.value.code == 1


def test_a_dead_pid_in_the_file_is_never_named(tmp_path):
    """The message names the live holder the kernel reports, never a stale pid."""
    gone = _reaped_pid()
    with holding(tmp_path, pid=gone):
        with pytest.raises(LockTimeout) as err, lock.held(str(tmp_path), 0.1):
            pytest.fail("taken while held")
    assert f"pid {gone}" not in str(err.value)
    assert f"held by pid {os.getpid()};" in str(err.value)
    # no holder in /proc/locks any more: the dead pid in the file names nobody
    fd = os.open(tmp_path / lock.LOCK_NAME, os.O_RDONLY)
    try:
        assert lock._holder(str(tmp_path / lock.LOCK_NAME), fd) == ""
    finally:
        os.close(fd)


def test_the_lock_file_is_private_and_a_lax_one_is_replaced(tmp_path):
    """SPEC §10: flock works on a read-only descriptor, so others must not open the file."""
    path = tmp_path / lock.LOCK_NAME
    with lock.held(str(tmp_path), 1):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o644)  # as an older version left it; someone opened and locked it
    squatter = os.open(path, os.O_RDONLY)
    fcntl.flock(squatter, fcntl.LOCK_EX)
    try:
        start = time.monotonic()
        with lock.held(str(tmp_path), 5):
            assert time.monotonic() - start < 2  # not held off by the squatter
            st = os.stat(path)
            assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
            assert os.fstat(squatter).st_ino != st.st_ino
    finally:
        os.close(squatter)


def test_waits_for_a_holder_that_lets_go(tmp_path):
    ready, release = threading.Event(), threading.Event()

    def hold():
        with holding(tmp_path):
            ready.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    ready.wait(5)
    threading.Timer(0.3, release.set).start()
    start = time.monotonic()
    with lock.held(str(tmp_path), 10):
        elapsed = time.monotonic() - start
    t.join(5)
    assert 0.25 <= elapsed < 5


def test_held_lock_makes_reconcile_exit_1_with_one_line(sandbox):
    (sandbox.home / "profiles" / "alice").mkdir(parents=True)
    (sandbox.home / "profiles" / "alice" / "SOUL.md").write_text("soul\n")
    with holding(sandbox.scandir) as path:
        start = time.monotonic()
        res = s6env.run_tasks(sandbox, "reconcile", "--var", "lock_timeout=0.5")
        elapsed = time.monotonic() - start
        assert res.returncode == 1, (res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert lines[0].startswith("hermes-tasks: error: ")
        assert path in lines[0] and f"pid {os.getpid()}" in lines[0]
        assert "Traceback" not in res.stderr and res.stdout == ""
        assert elapsed >= 0.5
        # nothing was done: no slot, no boot-log line
        assert sorted(os.listdir(sandbox.scandir)) == [lock.LOCK_NAME]
        assert not (sandbox.home / "logs").exists()

        # --check takes no lock: it works while the lock is held
        check = s6env.run_tasks(sandbox, "reconcile", "--check", "--json",
                                "--var", "lock_timeout=0.5")
        assert check.returncode == 0, check.stderr
        assert json.loads(check.stdout)["stats"]["changed"] == 2
        dry = s6env.run_tasks(sandbox, None, argv=["python", "-m", "hermes_tasks", "--dry",
                                                   "reconcile", *s6env.inventory_args(sandbox),
                                                   "--var", "lock_timeout=0.5"])
        assert dry.returncode == 0, dry.stderr
        assert "would be published" in dry.stdout
        create = s6env.run_tasks(sandbox, "profile.create", "carol", "--check",
                                 "--var", "lock_timeout=0.5")
        assert create.returncode == 0, create.stderr
        assert not (sandbox.home / "profiles" / "carol").exists()
        assert sorted(os.listdir(sandbox.scandir)) == [lock.LOCK_NAME]

    res = s6env.run_tasks(sandbox, "reconcile", "--var", "lock_timeout=0.5")
    assert res.returncode == 0, res.stderr
    assert (sandbox.slot("alice") / "run").exists()


def test_reconcile_waits_for_a_short_holder(sandbox):
    ready, released = threading.Event(), threading.Event()

    def hold():
        with holding(sandbox.scandir):
            ready.set()
            time.sleep(1.0)
            released.set()

    t = threading.Thread(target=hold)
    t.start()
    assert ready.wait(5)
    start = time.monotonic()
    res = s6env.run_tasks(sandbox, "reconcile", "--json", "--var", "lock_timeout=30")
    elapsed = time.monotonic() - start
    t.join(5)
    assert released.is_set() and elapsed >= 0.5
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["stats"]["changed"] == 1


def test_symlinked_lock_file_is_refused(sandbox, tmp_path):
    target = tmp_path / "elsewhere"
    os.symlink(target, sandbox.scandir / lock.LOCK_NAME)
    res = s6env.run_tasks(sandbox, "reconcile", "--var", "lock_timeout=0.5")
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert lock.LOCK_NAME in res.stderr
    assert not target.exists()
    assert not sandbox.slot("default").exists()
