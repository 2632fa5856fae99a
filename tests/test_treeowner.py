"""treeowner: a profile's tree given to one uid without following links or leaving the tree."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hermes_tasks import treeowner

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to other uids needs root")

U, G = 20777, 20777


def owners(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, ""]:
            p = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_uid, st.st_gid)
    return out


def test_converts_the_tree_and_nothing_outside(tmp_path):
    home = tmp_path / "home"
    prof = home / "profiles" / "alice"
    (prof / "a" / "b").mkdir(parents=True)
    (prof / "a" / "b" / "f").write_text("x")
    (prof / ".env").write_text("K=v")
    decoy = tmp_path / "decoy"
    (decoy / "sub").mkdir(parents=True)
    (decoy / "secret").write_text("s")
    (prof / "link-dir").symlink_to(decoy)
    (prof / "link-file").symlink_to(decoy / "secret")
    os.link(decoy / "secret", prof / "hard")
    os.mkfifo(prof / "fifo")
    deep = prof
    for _ in range(300):
        deep = deep / "d"
    deep.mkdir(parents=True)
    before_outside = {**owners(decoy), "home": os.lstat(home).st_uid,
                      "profiles": os.lstat(home / "profiles").st_uid}
    changed, left = treeowner.convert(str(home), ["profiles", "alice"], U, G, 0o700)
    assert changed > 300
    assert any("hard links" in item for item in left)
    got = owners(prof)
    assert {k: v for k, v in got.items() if k != "hard"} == dict.fromkeys(
        [k for k in got if k != "hard"], (U, G))
    assert os.lstat(prof / "hard").st_uid == 0  # a hard link may be anyone's: left alone
    assert os.stat(prof).st_mode & 0o7777 == 0o700
    assert {**owners(decoy), "home": os.lstat(home).st_uid,
            "profiles": os.lstat(home / "profiles").st_uid} == before_outside
    # and back (isolation switched off): the same walk to another uid
    treeowner.convert(str(home), ["profiles", "alice"], 0, 0, 0o755)
    assert set(owners(prof).values()) == {(0, 0)}
    assert os.stat(prof).st_mode & 0o7777 == 0o755


def test_a_symlinked_top_is_refused_and_create_makes_a_log_dir(tmp_path):
    home = tmp_path / "home"
    (home / "profiles").mkdir(parents=True)
    target = tmp_path / "elsewhere"
    target.mkdir()
    (home / "profiles" / "bob").symlink_to(target)
    with pytest.raises(OSError):
        treeowner.convert(str(home), ["profiles", "bob"], U, G, 0o700)
    assert os.lstat(target).st_uid == 0
    (home / "logs" / "gateways").mkdir(parents=True)
    treeowner.convert(str(home), ["logs", "gateways", "bob"], U, G, 0o700, create=True)
    st = os.lstat(home / "logs" / "gateways" / "bob")
    assert (st.st_uid, st.st_mode & 0o777) == (U, 0o700)
    run = subprocess.run([sys.executable, "-m", "hermes_tasks.treeowner", str(U), str(G),
                          "700", str(home), "profiles", "bob"], capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    bad = subprocess.run([sys.executable, "-m", "hermes_tasks.treeowner", "1", "1", "700",
                          str(home), ".."], capture_output=True, text=True)
    assert bad.returncode == 2


def test_an_interrupted_walk_is_finished_by_the_next(tmp_path):
    """A walk killed half way leaves the top directory as it was (changed last): the
    run script's check sees it unconverted and walks again, completing it."""
    home = tmp_path / "home"
    prof = home / "profiles" / "carol"
    for i in range(20):
        (prof / f"d{i}").mkdir(parents=True)
        (prof / f"d{i}" / "f").write_text("x")
    for i in range(0, 20, 2):  # what a killed walk may have done
        os.chown(prof / f"d{i}", U, G)
        os.chown(prof / f"d{i}" / "f", U, G)
    assert os.stat(prof).st_uid == 0  # so the check says: not converted
    treeowner.convert(str(home), ["profiles", "carol"], U, G, 0o700)
    assert set(owners(prof).values()) == {(U, G)}
    changed, _ = treeowner.convert(str(home), ["profiles", "carol"], U, G, 0o700)
    assert changed == 0  # idempotent


def test_giving_a_tree_back_stops_what_the_old_uid_left_running(tmp_path):
    (tmp_path / "home" / "profiles" / "dave").mkdir(parents=True)
    left = subprocess.Popen(["s6-applyuidgid", "-u", str(U), "-g", str(G), "-G", "",
                             "sleep", "60"])
    mine = subprocess.Popen(["sleep", "60"])  # root's: not the old uid's, untouched
    try:
        import time

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until it has dropped to the uid
            with open(f"/proc/{left.pid}/status") as fh:
                if f"Uid:\t{U}" in fh.read():
                    break
            time.sleep(0.01)
        run = subprocess.run([sys.executable, "-m", "hermes_tasks.treeowner", "0", "0", "755",
                              str(tmp_path / "home"), "profiles", "dave", "--kill-uid", str(U)],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert left.wait(timeout=5) == -9
        assert mine.poll() is None
    finally:
        for p in (left, mine):
            if p.poll() is None:
                p.kill()
                p.wait()


SERVICE, BOB = 20700, 20778


def give(root, uid):
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, ""]:
            os.lchown(os.path.join(dirpath, name) if name else dirpath, uid, uid)


def test_only_the_previous_owners_entries_change(tmp_path):
    """The service user owns profiles/ and can rename entries in it: bob's converted
    directory moved into alice's tree, or in place of it, never becomes alice's."""
    home = tmp_path / "home"
    alice, bob = home / "profiles" / "alice", home / "profiles" / "bob"
    (alice / "memories").mkdir(parents=True)
    (alice / "memories" / "m").write_text("alice's")
    (bob / "sessions").mkdir(parents=True)
    (bob / ".env").write_text("BOB_KEY=secret")
    give(alice, SERVICE)
    give(bob, BOB)  # bob is isolated already
    (alice / "planted").mkdir()
    os.chown(alice / "planted", BOB, BOB)  # an entry of another uid, made by root here
    os.rename(bob, alice / "stolen")  # what the service user can do before alice converts
    changed, left = treeowner.convert(str(home), ["profiles", "alice"], U, G, 0o700,
                                      prev=SERVICE)
    assert changed == 3  # alice, memories, m: nothing of bob's
    assert set(owners(alice / "stolen").values()) == {(BOB, BOB)}
    assert os.lstat(alice / "planted").st_uid == BOB
    assert any("stolen" in item and f"uid {BOB}" in item for item in left), left
    assert owners(alice)["memories/m"] == (U, G)
    # bob's whole directory put in place of alice's: refused, nothing changes
    os.rename(alice, home / "profiles" / "alice-old")
    os.rename(home / "profiles" / "alice-old" / "stolen", alice)
    with pytest.raises(OSError, match="neither the previous owner"):
        treeowner.convert(str(home), ["profiles", "alice"], U, G, 0o700, prev=SERVICE)
    assert set(owners(alice).values()) == {(BOB, BOB)}


def test_the_command_line_refuses_a_foreign_top_in_one_line(tmp_path):
    home = tmp_path / "home"
    (home / "profiles" / "alice").mkdir(parents=True)
    give(home / "profiles" / "alice", BOB)
    res = subprocess.run([sys.executable, "-I", "-m", "hermes_tasks.treeowner", str(U), str(G),
                          "700", str(home), "profiles", "alice", "--from", str(SERVICE)],
                         capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(treeowner.__file__)))
    assert res.returncode == 78 and len(res.stderr.splitlines()) == 1, res.stderr
    assert "neither the previous owner" in res.stderr and "Traceback" not in res.stderr
    assert os.lstat(home / "profiles" / "alice").st_uid == BOB


def test_a_loggers_directory_of_another_uid_is_set_aside_and_made_anew(tmp_path):
    """A deleted profile's log directory (its retired uid), or one the service user moved
    here from another profile, is never given to this profile: renamed aside, kept."""
    home = tmp_path / "home"
    gateways = home / "logs" / "gateways"
    (gateways / "bob").mkdir(parents=True)
    (gateways / "bob" / "current").write_text("old bob's lines")
    give(gateways / "bob", BOB)
    treeowner.convert(str(home), ["logs", "gateways", "bob"], U, G, 0o700, create=True,
                      prev=SERVICE)
    assert owners(gateways / "bob") == {".": (U, G)}  # fresh and empty
    aside = [p for p in gateways.iterdir() if p.name.startswith(f".bob.uid{BOB}.")]
    assert len(aside) == 1 and set(owners(aside[0]).values()) == {(BOB, BOB)}
    assert (aside[0] / "current").read_text() == "old bob's lines"
