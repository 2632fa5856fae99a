"""A slot's files are made when asked for, never kept: an unchanged slot the slot cache
vouches for is planned without making any of its content, and a slot read in full keeps
none of the bytes it read once they are found as rendered (issue 24: memory)."""

from __future__ import annotations

import os

import pytest
import reliability_kit as kit
from test_slot_facts import SPEC, make_slot, read_slot

from hermes_tasks import engine, slotcache
from hermes_tasks.intent import Intent
from hermes_tasks.render import AsRendered, File, Files, Renderer

PORTS = {"api_server": 8650, "webhook": 8750}
FILES = ["type", "run", "finish", "log/run", "notification-fd", "data/check", "data/own"]


def test_a_named_slot_makes_the_same_files_each_time_it_is_asked(sandbox):
    spec = Renderer(kit.settings_for(sandbox)).gateway("alice", True, PORTS)
    assert isinstance(spec.files, Files) and spec.key
    first, again = dict(spec.files), dict(spec.files)
    assert first == again and list(first) == FILES
    assert all(isinstance(f, File) for f in first.values())
    assert b"alice" in first["run"].content and b"8650" in first["run"].content
    assert spec.modes() == [(rel, f.mode) for rel, f in first.items()]
    assert "run" in spec.files and "nope" not in spec.files and len(spec.files) == 7
    with pytest.raises(KeyError):
        spec.files["nope"]


def test_a_fully_rendered_slot_is_the_same_mapping(sandbox):
    spec = Renderer(kit.settings_for(sandbox)).gateway("default", True)
    assert spec.key is None and list(spec.files) == FILES
    assert spec.modes() == [(rel, f.mode) for rel, f in spec.files.items()]
    assert spec.files == dict(spec.files)


def test_a_slot_read_in_full_and_found_as_rendered_keeps_no_bytes(tmp_path):
    make_slot(tmp_path)
    facts = read_slot(str(tmp_path), SPEC, os.getegid())
    assert isinstance(facts.files, AsRendered) and facts.files.files is SPEC.files
    assert facts.files == {rel: (f.content, f.mode) for rel, f in SPEC.files.items()}
    (tmp_path / SPEC.name / "run").write_bytes(b"#!/bin/sh\nexec other\n")
    facts = read_slot(str(tmp_path), SPEC, os.getegid())
    assert not isinstance(facts.files, AsRendered)
    assert facts.files["run"][0] == b"#!/bin/sh\nexec other\n"


def test_an_unchanged_rerun_makes_no_slot_content(sandbox, monkeypatch):
    """Named profiles' slots a later run confirmed are planned from their keys alone (the
    default slot, rendered in full, has no key: its content is hashed for its signature)."""
    monkeypatch.setattr(slotcache, "MARGIN", 0)
    settings = kit.settings_for(sandbox)
    kit.write_profile(sandbox.home, "alice", {"desired_state": "running"})
    kit.write_profile(sandbox.home, "bob", {"desired_state": "stopped"})
    quiet = [].append
    engine.run(settings, Intent("reconcile"), warn=quiet)
    engine.run(settings, Intent("reconcile"), warn=quiet)  # confirms the slots
    made: list[str] = []
    real = Files.__getitem__

    def spy(self, rel):
        made.append(rel)
        return real(self, rel)

    monkeypatch.setattr(Files, "__getitem__", spy)
    rows = engine.run(settings, Intent("reconcile"), warn=quiet).rows
    assert {r.slot for r in rows} == {"gateway-default", "gateway-alice", "gateway-bob"}
    assert {r.result for r in rows} == {"ok"} and made == FILES


@pytest.mark.parametrize("on", [True, False])
@pytest.mark.parametrize("hostile", [False, True])
def test_an_owned_tree_is_substituted_too_and_equals_a_full_render(on, hostile):
    """SPEC §16: a profile whose tree has an owner (isolation on, or given back) gets its
    scripts from the shared formats as well, byte for byte what a full render gives."""
    from test_templates import isolated_renderer

    r = isolated_renderer(on, hostile)
    for name, uid in (("alice", 20001), ("x-y_z", 4294967294), ("a", 1987654321)):
        fast = r.gateway(name, True, {"api_server": 1024, "webhook": 65535}, uid=uid)
        assert fast.key and fast.key.endswith(f":{uid}")
        full = Files(r._parts(r._render_scripts(name, 1024, 65535, *r._isolation(name, uid)),
                              isolated=on))
        assert dict(fast.files) == dict(full) and fast.modes() == full.modes()
    plain = r.gateway("bob", True, {"api_server": 1024, "webhook": 65535})
    assert plain.key and plain.key.count(":") == 3  # no uid: the key of before
