"""Fixtures for integration tests against a real s6 tree (see tests/s6env.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import s6env  # noqa: E402


@pytest.fixture
def sandbox():
    """A fresh sandbox without a service user: everything runs as the current user."""
    sb = s6env.make_sandbox(service_user=False)
    yield sb
    sb.cleanup()


@pytest.fixture
def root_sandbox():
    """A fresh sandbox with the service user ``hermestest`` owning ``home``. Requires root."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (it creates and switches to a service user)")
    sb = s6env.make_sandbox(service_user=True)
    yield sb
    sb.cleanup()


@pytest.fixture
def supervisor(request):
    """A running s6-svscan on the test's sandbox (``root_sandbox`` if the test uses it)."""
    name = "root_sandbox" if "root_sandbox" in request.fixturenames else "sandbox"
    sb = request.getfixturevalue(name)
    with s6env.Supervisor(sb) as sup:
        yield sup


@pytest.fixture(autouse=True)
def _no_leftover_supervisors():
    """Stop any supervisor a test started and forgot, after each test."""
    before = set(s6env.live_supervisors())
    yield
    for sup in s6env.live_supervisors():
        if sup not in before:
            sup.stop()


@pytest.fixture(autouse=True, scope="session")
def _final_process_check():
    """At session end, fail if any s6-svscan started by the tests is still alive."""
    yield
    s6env.stop_all()
    stray = s6env.stray_svscans()
    for root in s6env.sandbox_roots():
        stray += s6env.kill_pids_in(root)
        s6env.remove_root(root)
    for pid in stray:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    assert not stray, f"s6-svscan processes left running by the tests (now killed): {stray}"
