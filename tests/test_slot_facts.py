"""slots.read_at: what an existing slot holds, compared by the planner (no s6 needed)."""

from __future__ import annotations

import os

from hermes_tasks import fsops, slots
from hermes_tasks.render import File, SlotSpec

SPEC = SlotSpec("gateway-alice", {
    "type": File(b"longrun\n", 0o644),
    "run": File(b"#!/bin/sh\nexec x\n", 0o755),
    "log/run": File(b"#!/bin/sh\nexec y\n", 0o755),
}, down=False)



def read_slot(scandir: str, spec, gid: int, cache=None):
    """The facts of the slot ``spec.name`` as facts.read_slots reads one (None when absent)."""
    path = os.path.join(scandir, spec.name)
    try:
        dfd = slots.open_slot(path)
    except FileNotFoundError:
        return None
    except OSError:
        return slots.not_a_directory(spec, path)
    try:
        return slots.read_at(dfd, path, spec, gid, cache)
    finally:
        os.close(dfd)

def make_slot(scandir, skeleton=True):
    slot = scandir / SPEC.name
    (slot / "log").mkdir(parents=True)
    for rel, f in SPEC.files.items():
        (slot / rel).write_bytes(f.content)
        os.chmod(slot / rel, f.mode)
    if skeleton:
        for base in (slot, slot / "log"):
            (base / "supervise").mkdir(mode=0o700)
            os.mkfifo(base / "supervise" / "control")
            (base / "event").mkdir()
            # event/ is root's alone (SPEC §5): root:root 0700, never the service group's
            for rel, mode, shared in (("supervise", 0o710, True),
                                      ("supervise/control", 0o620, True),
                                      ("event", 0o700, False)):
                os.chown(base / rel, *slots.owner(os.getegid(), shared))
                os.chmod(base / rel, mode)
    return slot


def test_identical_slot_reads_back_as_its_spec(tmp_path):
    make_slot(tmp_path)
    f = read_slot(str(tmp_path), SPEC, os.getegid())
    assert f.structural is None and f.skeleton_ok and not f.down
    assert f.files == {rel: (x.content, x.mode) for rel, x in SPEC.files.items()}
    assert f.pending == frozenset()


def test_missing_slot_is_none(tmp_path):
    assert read_slot(str(tmp_path), SPEC, 0) is None


def test_mode_down_and_missing_skeleton_are_seen(tmp_path):
    slot = make_slot(tmp_path, skeleton=False)
    os.chmod(slot / "run", 0o644)
    (slot / "down").touch()
    f = read_slot(str(tmp_path), SPEC, os.getegid())
    assert f.files["run"] == (SPEC.files["run"].content, 0o644)
    assert f.down and not f.skeleton_ok and f.structural is None


def test_wrong_types_are_structural(tmp_path):
    slot = make_slot(tmp_path)
    os.rmdir(slot / "log" / "event")
    (slot / "log" / "event").write_text("")
    assert read_slot(str(tmp_path), SPEC, os.getegid()).structural == \
        "log/event has the wrong type"
    os.unlink(slot / "log" / "event")
    os.unlink(slot / "run")
    (slot / "run").mkdir()
    assert read_slot(str(tmp_path), SPEC, os.getegid()).structural == "run is not a regular file"


def test_log_symlink_and_slot_symlink_are_structural(tmp_path):
    slot = make_slot(tmp_path)
    os.rename(slot / "log", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", slot / "log")
    assert read_slot(str(tmp_path), SPEC, 0).structural == "has no log/ directory"
    os.rename(slot, tmp_path / "real")
    os.symlink(tmp_path / "real", slot)
    assert read_slot(str(tmp_path), SPEC, 0).structural == "is not a real directory"


def test_symlinked_file_is_never_followed(tmp_path):
    slot = make_slot(tmp_path)
    (tmp_path / "target").write_bytes(SPEC.files["run"].content)
    os.chmod(tmp_path / "target", 0o755)
    os.unlink(slot / "run")
    os.symlink(tmp_path / "target", slot / "run")
    assert read_slot(str(tmp_path), SPEC, os.getegid()).files["run"] == (b"", -1)


def test_pending_restarts_are_read(tmp_path):
    slot = make_slot(tmp_path)
    (slot / "data").mkdir()
    (slot / "data" / "restart-pending").write_text("gateway\ngateway-up\nbogus\n")
    f = read_slot(str(tmp_path), SPEC, os.getegid())
    assert f.pending == frozenset({"gateway", "gateway-up"})


def test_temp_files_of_an_interrupted_run_are_litter(tmp_path):
    slot = make_slot(tmp_path)
    (slot / ".run.hermes-tasks.tmp").write_text("half")
    (slot / "log" / ".run.hermes-tasks.tmp").write_text("half")
    (slot / "notes.tmp").write_text("not ours")
    f = read_slot(str(tmp_path), SPEC, os.getegid())
    assert f.litter == (".run.hermes-tasks.tmp", "log/.run.hermes-tasks.tmp")


def test_an_oversized_file_is_read_only_past_the_limit(tmp_path):
    slot = make_slot(tmp_path)
    (slot / "run").write_bytes(b"#" * (slots.MAX_FILE + 4096))
    f = read_slot(str(tmp_path), SPEC, os.getegid())
    content, mode = f.files["run"]
    assert len(content) == slots.MAX_FILE + 1 and mode == 0o755  # differs from any render


def test_read_fd_reads_past_a_stale_size_hint(tmp_path):
    """A file that grew after fstat (hint too small) is still read whole, up to the limit."""
    path = tmp_path / "grown"
    data = bytes(range(256)) * 1000
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert fsops.read_fd(fd, 1 << 20, size_hint=10) == data
        os.lseek(fd, 0, os.SEEK_SET)
        assert fsops.read_fd(fd, 1000, size_hint=10) == data[:1001]  # limit + 1: "too big"
        os.lseek(fd, 0, os.SEEK_SET)
        assert fsops.read_fd(fd, 1 << 20, size_hint=len(data)) == data
    finally:
        os.close(fd)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    fd = os.open(empty, os.O_RDONLY)
    try:
        assert fsops.read_fd(fd, 10) == b""
    finally:
        os.close(fd)
