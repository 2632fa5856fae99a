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
