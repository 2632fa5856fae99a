"""What root's registrar makes of a request (SPEC §14.1): fields checked, and a --wait that
holds root's lock bounded by root's own readiness_timeout, whatever the caller asked."""

from __future__ import annotations

import pytest

from hermes_tasks import engine, inventory, registrar
from hermes_tasks.engine import Result


@pytest.fixture
def seen(monkeypatch):
    """The intents root would run: engine.run records instead of acting (this tests the
    request's reading only; tests/test_privilege_s6.py drives the real channel)."""
    got = []

    def record(settings, intent, **kwargs):
        got.append(intent)
        return Result([], None)

    monkeypatch.setattr(engine, "run", record)
    return got


def settings(tmp_path):
    return inventory.load(None, [f"hermes_home={tmp_path}/home", f"scandir={tmp_path}/scan",
                                 "readiness_timeout=30"], environ={})


def test_a_waits_timeout_is_bounded_by_roots_setting(tmp_path, seen):
    cfg = settings(tmp_path)
    doc = registrar.handle(cfg, {"task": "start", "names": ["alice"], "wait": True,
                                 "timeout": 1e12})
    assert "error" not in doc, doc
    assert seen[-1].timeout == 30.0
    assert any("readiness_timeout" in w for w in doc["warnings"]), doc
    doc = registrar.handle(cfg, {"task": "start", "names": ["alice"], "wait": True,
                                 "timeout": 5})
    assert seen[-1].timeout == 5.0 and not doc["warnings"]


@pytest.mark.parametrize("request_", [
    None, [], "x", {"task": "rm -rf"}, {"task": "start"},
    {"task": "start", "names": ["../etc"]}, {"task": "start", "names": ["a"], "wait": "yes"},
    {"task": "start", "names": ["a"], "timeout": float("inf")},
    {"task": "start", "names": ["a"], "timeout": -1},
    {"task": "delete", "names": ["default"]}, {"task": "reconcile", "names": ["a"]},
])
def test_a_request_root_cannot_read_is_a_usage_error(tmp_path, seen, request_):
    doc = registrar.handle(settings(tmp_path), request_)
    assert doc["code"] == 1 and doc["usage"], doc
    assert doc["error"].startswith(("the registrar got", "the default profile")), doc
    assert not seen


@pytest.mark.parametrize("profile", [5, "../etc", "", ["alice"], "x" * 300])
def test_a_status_request_with_a_bad_profile_is_a_usage_error(tmp_path, seen, profile):
    doc = registrar.handle(settings(tmp_path), {"task": "gateway.status", "profile": profile})
    assert doc["usage"] and "invalid profile name" in doc["error"] and not seen


def test_a_status_request_is_a_read_with_roots_settings(tmp_path, seen):
    """gateway.status is answered from root's own status model, never run as an intent."""
    cfg = settings(tmp_path)
    (tmp_path / "scan").mkdir()
    (tmp_path / "home" / "profiles").mkdir(parents=True)
    doc = registrar.handle(cfg, {"task": "gateway.status", "profile": None})
    assert "error" not in doc, doc
    assert [g["profile"] for g in doc["gateways"]] == ["default"] and not seen
    doc = registrar.handle(cfg, {"task": "gateway.status", "profile": "nobody"})
    assert doc["usage"] and "no profile 'nobody'" in doc["error"]


@pytest.mark.parametrize("fields,why", [
    ({"profile": "../etc", "lines": 5, "host": "h"}, "invalid profile name"),
    ({"profile": None, "lines": 5, "host": "h"}, "invalid profile name"),
    ({"profile": "alice", "lines": -1, "host": "h"}, "--lines"),
    ({"profile": "alice", "lines": True, "host": "h"}, "--lines"),
    ({"profile": "alice", "lines": 10**9, "host": "h"}, "--lines"),
    ({"profile": "alice", "lines": 5, "host": "../x"}, "invalid host name"),
    ({"profile": "alice", "lines": 5, "host": 7}, "invalid host name"),
])
def test_a_logs_request_root_cannot_read_is_a_usage_error(tmp_path, seen, fields, why):
    doc = registrar.handle(settings(tmp_path), {"task": "gateway.logs", **fields})
    assert doc["usage"] and why in doc["error"] and not seen, doc


def test_a_logs_request_is_a_bounded_read_of_the_profiles_log(tmp_path, seen):
    cfg = settings(tmp_path)
    profile = tmp_path / "home" / "profiles" / "alice"
    profile.mkdir(parents=True)
    (profile / "SOUL.md").write_text("soul\n")
    gateways = tmp_path / "home" / "logs" / "gateways" / "alice"
    gateways.mkdir(parents=True)
    (gateways / "current").write_bytes(b"".join(b"line %d\n" % i for i in range(10)))
    doc = registrar.handle(cfg, {"task": "gateway.logs", "profile": "alice", "lines": 3,
                                 "host": cfg.host_id})
    assert doc["lines"] == ["line 7", "line 8", "line 9"] and not seen, doc
    doc = registrar.handle(cfg, {"task": "gateway.logs", "profile": "nobody", "lines": 3,
                                 "host": cfg.host_id})
    assert doc["usage"] and "no profile 'nobody'" in doc["error"]
    (gateways / "current").unlink()
    (gateways / "current").symlink_to(tmp_path / "elsewhere")
    doc = registrar.handle(cfg, {"task": "gateway.logs", "profile": "alice", "lines": 3,
                                 "host": cfg.host_id})
    assert doc["code"] == 1 and "cannot read" in doc["error"], doc
