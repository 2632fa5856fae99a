"""The slot cache: files a run found as rendered are stat-checked, not re-read, and any
change to them (content, mode, owner, replacement) is still seen (no s6 needed)."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest
import reliability_kit as kit
from test_slot_facts import SPEC, make_slot, read_slot

from hermes_tasks import engine, fsops, slotcache, slots
from hermes_tasks.intent import Intent
from hermes_tasks.slotcache import SlotCache

START_UMASK = fsops.UMASK


@pytest.fixture
def no_margin(monkeypatch):
    """Files just written count as settled (the margin is tested on its own below)."""
    monkeypatch.setattr(slotcache, "MARGIN", 0)


def read(scandir, cache=None, spec=SPEC):
    return read_slot(str(scandir), spec, os.getegid(), cache)


def confirmed(scandir, spec=SPEC) -> SlotCache:
    """Read once with a fresh cache, save it, and load it back as the next run would."""
    cache = SlotCache.load(str(scandir))
    read(scandir, cache, spec)
    cache.save({spec.name})
    return SlotCache.load(str(scandir))


def counting_reads(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = slots._read_file

    def spy(dfd, rel, stats=None):
        seen.append(rel)
        return real(dfd, rel, stats)

    monkeypatch.setattr(slots, "_read_file", spy)
    return seen


def as_spec(spec=SPEC):
    return {rel: (f.content, f.mode) for rel, f in spec.files.items()}


def test_a_confirmed_slot_is_not_read_again(tmp_path, no_margin, monkeypatch):
    make_slot(tmp_path)
    cache = confirmed(tmp_path)
    assert cache.known(SPEC.name)
    reads = counting_reads(monkeypatch)
    facts = read(tmp_path, cache)
    assert reads == [] and facts.files == as_spec() and facts.structural is None


@pytest.mark.parametrize("change", [
    "same size, same mtime", "mode", "owner", "replaced by rename", "removed"])
def test_any_change_to_a_file_is_seen_through_the_cache(tmp_path, no_margin, change,
                                                        monkeypatch):
    """Every change makes the slot be read again (not just return the right bytes: an owner
    changed and back, or a replacement with the same bytes, are seen only by ctime/inode)."""
    slot = make_slot(tmp_path)
    cache = confirmed(tmp_path)
    assert cache.known(SPEC.name)
    run = slot / "run"
    before = os.stat(run)
    if change == "same size, same mtime":
        with open(run, "r+b") as fh:  # in place: the inode stays
            fh.write(b"#!/bin/sh\nexec z\n"[:before.st_size])
        os.utime(run, ns=(before.st_atime_ns, before.st_mtime_ns))
    elif change == "mode":
        os.chmod(run, 0o700)
    elif change == "owner":
        os.chown(run, os.geteuid(), os.getegid() ^ 1)
        os.chown(run, os.geteuid(), os.getegid())  # back again: only ctime tells
    elif change == "replaced by rename":
        (slot / "new").write_bytes(SPEC.files["run"].content)
        os.chmod(slot / "new", 0o755)
        os.rename(slot / "new", run)
    else:
        run.unlink()
    reads = counting_reads(monkeypatch)
    facts = read(tmp_path, cache)
    got = facts.files["run"]
    assert reads, "the cache vouched for a changed slot: it was not read again"
    if change == "same size, same mtime":
        assert got[0] == b"#!/bin/sh\nexec z\n"[:before.st_size] != SPEC.files["run"].content
    elif change == "mode":
        assert got == (SPEC.files["run"].content, 0o700)
    elif change == "removed":
        assert got is None
    else:  # same bytes and mode, but read again rather than taken on trust
        assert got == (SPEC.files["run"].content, 0o755)


def test_a_changed_render_is_compared_in_full(tmp_path, no_margin, monkeypatch):
    make_slot(tmp_path)
    cache = confirmed(tmp_path)
    other = dataclasses.replace(SPEC, files={**SPEC.files, "run": dataclasses.replace(
        SPEC.files["run"], content=b"#!/bin/sh\nexec w\n")})
    reads = counting_reads(monkeypatch)
    facts = read(tmp_path, cache, other)
    assert "run" in reads
    assert facts.files["run"] == (SPEC.files["run"].content, 0o755)  # what is on disk


def test_a_slot_that_differs_from_its_render_is_never_recorded(tmp_path, no_margin):
    slot = make_slot(tmp_path)
    (slot / "run").write_bytes(b"#!/bin/sh\nexec other\n")
    assert not confirmed(tmp_path).known(SPEC.name)


def test_files_changed_within_the_margin_are_not_recorded(tmp_path):
    """Git's racy-entry rule: a write in the clock tick of the read could hide behind an
    unchanged ctime, so a file younger than the margin is read again next time."""
    make_slot(tmp_path)
    assert not confirmed(tmp_path).known(SPEC.name)
    stats = {rel: os.stat(tmp_path / SPEC.name / rel) for rel in SPEC.files}
    assert slotcache.settled(stats, time.time_ns()) is False
    assert slotcache.settled(stats, time.time_ns() + 2 * slotcache.MARGIN) is True


@pytest.mark.parametrize("how", ["group-writable", "symlink", "not JSON", "other format"])
def test_an_untrusted_cache_file_is_ignored(tmp_path, no_margin, how):
    make_slot(tmp_path)
    assert confirmed(tmp_path).known(SPEC.name)
    path = tmp_path / slotcache.NAME
    if how == "group-writable":
        os.chmod(path, 0o620)
    elif how == "symlink":
        real = tmp_path / "elsewhere"
        os.rename(path, real)
        os.symlink(real, path)
    elif how == "not JSON":
        path.write_bytes(b"{")
    else:
        path.write_bytes(b'{"format": 0, "slots": {}}')
    assert not SlotCache.load(str(tmp_path)).known(SPEC.name)


def test_save_keeps_unread_present_slots_and_drops_gone_ones(tmp_path, no_margin):
    make_slot(tmp_path)
    cache = confirmed(tmp_path)
    cache.save({SPEC.name})  # nothing read this run: kept as it is
    assert SlotCache.load(str(tmp_path)).known(SPEC.name)
    SlotCache.load(str(tmp_path)).save(set())  # the slot is gone
    assert not SlotCache.load(str(tmp_path)).known(SPEC.name)


def test_reconcile_repairs_a_file_changed_after_the_cache_vouched_for_it(sandbox, no_margin):
    """End to end through the engine: an unchanged re-run uses the cache, and an in-place
    edit of a run script (same size, mtime put back) is still found and rewritten."""
    settings = kit.settings_for(sandbox)
    quiet = [].append
    engine.run(settings, Intent("reconcile"), warn=quiet)
    rows = engine.run(settings, Intent("reconcile"), warn=quiet).rows  # confirms the slots
    assert {r.result for r in rows} == {"ok"}
    assert SlotCache.load(settings.scandir).known("gateway-default")
    run = os.path.join(settings.scandir, "gateway-default", "run")
    before = os.stat(run)
    with open(run, "r+b") as fh:
        fh.seek(before.st_size - 2)
        fh.write(b"#\n")
    os.utime(run, ns=(before.st_atime_ns, before.st_mtime_ns))
    rows = engine.run(settings, Intent("reconcile"), warn=quiet).rows
    assert [r.result for r in rows if r.slot == "gateway-default"] == ["changed"]
    rows = engine.run(settings, Intent("reconcile"), warn=quiet).rows
    assert {r.result for r in rows} == {"ok"}


def test_an_interrupted_cache_write_is_stale_litter(tmp_path):
    (tmp_path / f".{slotcache.NAME}.hermes-tasks.tmp").write_bytes(b"{")
    assert slots.managed_names(str(tmp_path)) == ([], [f".{slotcache.NAME}.hermes-tasks.tmp"])


@pytest.mark.parametrize("change", ["litter in log/", "litter in the slot", "down marker",
                                    "restart pending"])
def test_a_changed_listing_is_seen_through_the_cache(tmp_path, no_margin, change):
    """A directory's ctime vouches for its listing: any entry added shows."""
    slot = make_slot(tmp_path)
    cache = confirmed(tmp_path)
    if change == "litter in log/":
        (slot / "log" / ".run.hermes-tasks.tmp").write_bytes(b"x")
    elif change == "litter in the slot":
        (slot / ".run.hermes-tasks.tmp").write_bytes(b"x")
    elif change == "down marker":
        (slot / "down").touch()
    else:
        (slot / "data").mkdir()
        (slot / "data" / "restart-pending").write_text("gateway\n")
    facts = read(tmp_path, cache)
    assert facts.files == as_spec()
    if change.startswith("litter"):
        assert facts.litter and facts.litter[0].endswith(".run.hermes-tasks.tmp")
    elif change == "down marker":
        assert facts.down is True
    else:
        assert facts.pending == frozenset({"gateway"})


def test_a_restart_pending_file_without_tokens_keeps_the_slot_unrecorded(tmp_path, no_margin):
    """It reads as nothing pending, but a later in-place rewrite would not move data/'s
    ctime: such a slot is read in full every time instead."""
    slot = make_slot(tmp_path)
    (slot / "data").mkdir()
    (slot / "data" / "restart-pending").write_text("nonsense\n")
    facts = read(tmp_path)
    assert facts.pending == frozenset()
    assert not confirmed(tmp_path).known(SPEC.name)


def test_staging_over_a_left_over_staging_dir_starts_clean(sandbox):
    """A staging dir left by an interrupted run is removed and built again: nothing of the
    old one survives, every mode is exact."""
    from hermes_tasks.execute.local import Applier
    from hermes_tasks.render import Renderer

    settings = kit.settings_for(sandbox)
    spec = Renderer(settings).gateway("alice", True, {"api_server": 8650, "webhook": 8750})
    old = sandbox.scandir / f".{spec.name}.tmp"
    (old / "log").mkdir(parents=True)
    (old / "junk").write_text("x")
    (old / "log" / "run").write_text("#!/bin/sh\nold\n")
    path = Applier(settings)._staging(spec, "tmp")
    assert path == str(old) and not (old / "junk").exists()
    for rel, f in spec.files.items():
        assert (old / rel).read_bytes() == f.content
        assert os.stat(old / rel).st_mode & 0o7777 == f.mode, rel
    assert os.stat(old / "event").st_mode & 0o7777 == 0o700
    now = os.umask(0)
    os.umask(now)
    assert now == fsops.UMASK == START_UMASK  # restored, and what fsops believes


STAGE = """
import json, os, sys
from hermes_tasks import inventory
from hermes_tasks.execute.local import Applier
from hermes_tasks.render import Renderer

settings = inventory.load(None, sys.argv[2:], environ={})
spec = Renderer(settings).gateway("alice", True, {"api_server": 8650, "webhook": 8750})
path = Applier(settings)._staging(spec, sys.argv[1])
modes = {}
for root, dirs, files in os.walk(path):
    for name in dirs + files:
        full = os.path.join(root, name)
        modes[os.path.relpath(full, path)] = os.lstat(full).st_mode & 0o7777
status = open("/proc/self/status").read()
print(json.dumps({"modes": modes, "umask": [l for l in status.splitlines()
                                            if l.startswith("Umask:")][0]}))
"""


def test_every_mode_is_exact_whatever_the_umask_and_the_umask_is_never_switched(sandbox):
    """No process-global umask switch: a slot built under umask 077 or 000 has the modes
    of one built under 022 (what the umask strips or adds is fchmod-ed), and the process's
    umask is what it was."""
    import json
    import subprocess
    import sys

    import s6env

    args = s6env.inventory_args(sandbox)[1::2]
    seen = {}
    for umask in (0o022, 0o077, 0o000):
        res = subprocess.run([sys.executable, "-c", STAGE, f"u{umask:o}", *args],
                             capture_output=True, text=True, timeout=60,
                             preexec_fn=lambda umask=umask: os.umask(umask))
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["umask"].split()[1] == f"{umask:04o}"
        seen[umask] = doc["modes"]
    assert seen[0o077] == seen[0o022] == seen[0o000]
    from hermes_tasks.render import Renderer

    spec = Renderer(kit.settings_for(sandbox)).gateway("alice", True,
                                                       {"api_server": 8650, "webhook": 8750})
    assert {rel: seen[0o077][rel] for rel in spec.files} == \
        {rel: f.mode for rel, f in spec.files.items()}
    assert seen[0o000]["event"] == 0o700
