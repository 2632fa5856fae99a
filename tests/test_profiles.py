"""Profile discovery, name rules and state parsing (SPEC §4)."""

import json
import os

import pytest

from hermes_tasks import profiles, state


@pytest.mark.parametrize("raw, expected", [
    (b'{"desired_state": "running"}', ("running", True)),
    (b'{"desired_state": "stopped", "gateway_state": "running"}', ("stopped", False)),
    (b'{"gateway_state": "running"}', ("running", True)),
    (b'{"gateway_state": "draining"}', ("draining", True)),
    (b'{"gateway_state": "degraded"}', ("degraded", True)),
    (b'{"desired_state": "draining"}', ("draining", False)),  # intent is taken literally
    (b'{"gateway_state": "starting"}', ("starting", False)),
    (b'{"gateway_state": "startup_failed"}', ("startup_failed", False)),
    (b'{"gateway_state": "weird"}', ("weird", False)),
    (b'{"desired_state": null, "gateway_state": "running"}', ("running", True)),
    (b"{}", (None, False)),
    (b'\xef\xbb\xbf{"desired_state": "running"}', ("running", True)),  # UTF-8 BOM
])
def test_state_decides(raw, expected):
    doc = state.parse(raw)
    assert (doc.prior_state, doc.autostart) == expected and doc.problem is None


@pytest.mark.parametrize("raw", [b"", b'{"desired_state": "runn', b"\x00\xff\xfe binary",
                                 b"[1, 2]", b'"running"', b"[" * 100000, b'{"desired_state": {"a": 1}}'])
def test_broken_state_is_no_state_with_a_problem(raw):
    doc = state.parse(raw)
    assert doc.prior_state is None and doc.autostart is False and doc.problem


@pytest.mark.parametrize("name, ok", [
    ("a", True), ("alice", True), ("a-b_c9", True), ("0day", True), ("x" * 64, True),
    ("x" * 65, False), ("Alice", False), ("-a", False), ("_a", False), ("a.b", False),
    ("a b", False), ("", False), ("..", False), ("a/b", False), ("é", False),
])
def test_name_rule(name, ok):
    assert profiles.valid_name(name) is ok


def test_escape_makes_any_name_one_safe_token():
    assert profiles.escape("alice") == "alice"
    assert profiles.escape("a b\nprior_state=running") == "a\\x20b\\x0aprior_state=running"
    assert profiles.escape(os.fsdecode(b"caf\xe9")) == "caf\\xe9"
    assert profiles.escape("back\\slash") == "back\\x5cslash"


def make(home, name, state=None, soul=True):
    d = home / "profiles" / name
    d.mkdir(parents=True)
    if soul:
        (d / "SOUL.md").write_text("soul")
    if state is not None:
        (d / "gateway_state.json").write_bytes(state if isinstance(state, bytes) else json.dumps(state).encode())
    return d


def test_discover_orders_default_first_and_skips_with_warnings(tmp_path):
    warnings = []
    (tmp_path / "gateway_state.json").write_text('{"gateway_state": "running"}')
    make(tmp_path, "zed", {"desired_state": "running"})
    make(tmp_path, "alice", {"desired_state": "stopped"})
    make(tmp_path, "Bad Name")
    make(tmp_path, "default")
    make(tmp_path, "nosoul", soul=False)
    (tmp_path / "profiles" / "file.txt").write_text("x")
    found, skipped = profiles.discover(str(tmp_path), warnings.append)
    assert [(p.name, p.prior_state, p.autostart) for p in found] == [
        ("default", "running", True), ("alice", "stopped", False), ("zed", "running", True)]
    assert [s.label for s in skipped] == ["Bad Name", "profiles/default"]
    assert len(warnings) == 2 and "Bad\\x20Name" in warnings[0]


def test_default_is_there_without_profiles_dir(tmp_path):
    found, skipped = profiles.discover(str(tmp_path), [].append)
    assert [p.name for p in found] == ["default"] and found[0].prior_state is None
    assert not skipped


def test_hostile_entries_are_skipped_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "SOUL.md").write_text("x")
    (outside / "gateway_state.json").write_text('{"desired_state": "running"}')
    home = tmp_path / "home"
    make(home, "ok")
    os.symlink(outside, home / "profiles" / "linked")
    d = make(home, "souldir", soul=False)
    (d / "SOUL.md").mkdir()
    d = make(home, "dangling", soul=False)
    os.symlink("/nonexistent", d / "SOUL.md")
    d = make(home, "statelink")
    os.symlink(outside / "gateway_state.json", d / "gateway_state.json")
    bad = os.fsdecode(b"caf\xe9")
    make(home, bad)
    warnings = []
    found, skipped = profiles.discover(str(home), warnings.append)
    assert [p.name for p in found] == ["default", "ok", "statelink"]
    assert found[2].prior_state is None and found[2].autostart is False  # link not followed
    reasons = {s.label: s.reason for s in skipped}
    assert "symlink" in reasons["linked"]
    assert "not a regular file" in reasons["souldir"] and "not a regular file" in reasons["dangling"]
    assert "invalid profile name" in reasons[bad]
    assert any("statelink" in w and "treating as no prior state" in w for w in warnings)


def test_profiles_dir_symlink_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    make(outside, "evil")
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(outside / "profiles", home / "profiles")
    warnings = []
    found, _ = profiles.discover(str(home), warnings.append)
    assert [p.name for p in found] == ["default"] and warnings


def test_oversized_state_is_no_state(tmp_path):
    d = make(tmp_path, "big")
    with open(d / "gateway_state.json", "wb") as fh:
        fh.write(b'{"desired_state": "running", "pad": "' + b"x" * (1 << 20) + b'"}')
    warnings = []
    found, _ = profiles.discover(str(tmp_path), warnings.append)
    assert found[1].prior_state is None and any("larger than" in w for w in warnings)


def test_fifo_state_file_does_not_hang(tmp_path):
    d = make(tmp_path, "fifo")
    os.mkfifo(d / "gateway_state.json")
    warnings = []
    found, _ = profiles.discover(str(tmp_path), warnings.append)
    assert found[1].prior_state is None and warnings
