"""slot.render --dest writes through directory fds, never following a symlink, and only
into a directory no other user can write (as root it must not be steered elsewhere)."""

from __future__ import annotations

import os
import stat

import s6env
from control_helpers import make_profile


def render(sb, dest):
    return s6env.run_tasks(sb, "slot.render", "alice", "--dest", str(dest))


def refused(res, *needles):
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hermes-tasks: error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_renders_a_slot_below_a_new_directory(sandbox):
    make_profile(sandbox.home, "alice")
    dest = sandbox.root / "out" / "deep" / "gateway-alice"
    res = render(sandbox, dest)
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(os.stat(dest / "run").st_mode) == 0o750
    assert (dest / "log" / "run").is_file() and (dest / "data" / "own").is_file()
    again = render(sandbox, dest)  # in place, idempotent
    assert again.returncode == 0, again.stderr


def test_never_follows_a_symlink(sandbox):
    make_profile(sandbox.home, "alice")
    victim = sandbox.root / "victim"
    victim.mkdir()
    (victim / "keep").write_text("root's\n")
    (sandbox.root / "out").mkdir()
    # the destination itself, a directory on the way, and log/ inside it
    os.symlink(victim, sandbox.root / "out" / "link")
    refused(render(sandbox, sandbox.root / "out" / "link"), "symlink")
    refused(render(sandbox, sandbox.root / "out" / "link" / "gw"), "symlink")
    dest = sandbox.root / "out" / "gw"
    dest.mkdir()
    os.symlink(victim, dest / "log")
    refused(render(sandbox, dest), "symlink")
    assert sorted(os.listdir(victim)) == ["keep"]
    # a file name planted as a symlink is replaced, its target untouched
    os.unlink(dest / "log")
    os.symlink(victim / "keep", dest / "run")
    assert render(sandbox, dest).returncode == 0
    assert not (dest / "run").is_symlink() and (victim / "keep").read_text() == "root's\n"


def test_refuses_a_directory_another_user_can_write(root_sandbox):
    sb = root_sandbox
    make_profile(sb.home, "alice")
    shared = sb.root / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # world-writable, not sticky: anyone may swap our entries
    refused(render(sb, shared / "gw"), "another user", str(shared))
    assert not (shared / "gw").exists()
    sticky = sb.root / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)  # like /tmp: our own entry in it is safe
    assert render(sb, sticky / "gw").returncode == 0
    theirs = sb.root / "theirs"
    theirs.mkdir()
    os.chown(theirs, sb.user.uid, sb.user.gid)  # the service user's (like the volume)
    refused(render(sb, theirs / "gw"), "another user")
    refused(render(sb, theirs), "another user")
    assert os.listdir(theirs) == []
    # a subdirectory of the slot that another user can write is refused too
    mine = sb.root / "mine"
    (mine / "log").mkdir(parents=True)
    os.chmod(mine / "log", 0o777)
    refused(render(sb, mine), "another user")
