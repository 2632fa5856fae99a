"""Isolated profiles (SPEC §16) under a real s6-svscan, with the stand-in gateway.

With ``profile_isolation`` each named profile's gateway and logger run as its own uid, its
trees belong to that uid (0700), its run script is root's 0700; alice's uid can neither
read nor signal nor control anything of bob's. Switched off and on again, ownership
converges (and nothing outside the profile trees changes owner), also after a SIGKILL of
the reconcile at a random point.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import subprocess
import time

import s6env
from control_helpers import make_profile, own, status, tasks

REGISTRAR = "hermes-tasks-registrar"
ON = ("--var", "profile_isolation=true")
OFF = ("--var", "profile_isolation=false")


def volume(sb):
    make_profile(sb.home, "default", {"gateway_state": "running"})
    for name in ("alice", "bob"):
        d = make_profile(sb.home, name, {"desired_state": "running"})
        (d / ".env").write_text(f"SECRET_{name.upper()}=s3cret-{name}\n")
        (d / "memories").mkdir()
        (d / "memories" / "note.md").write_text("remember\n")
    (sb.home / ".standin").mkdir()  # the stand-in's event log, shared by every uid
    own(sb, sb.home)
    os.chmod(sb.home / ".standin", 0o777)


def rows(res) -> list[tuple]:
    return [(r["profile"], r["slot"], r["action"], r["result"])
            for r in json.loads(res.stdout)["results"]]


def uid_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Uid:"))


def recorded(sb) -> dict[str, int]:
    return json.loads((sb.home / "profile-uids.json").read_text())["profiles"]


def tree_owners(path) -> set[tuple[int, int]]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            out.add((st.st_uid, st.st_gid))
    st = os.lstat(path)
    return out | {(st.st_uid, st.st_gid)}


def running_as(sb, name: str, uid: int, timeout: float = 20) -> int:
    """Wait until the profile's gateway runs (ready) as ``uid``; its pid."""
    def ok():
        st = s6env.svstat(sb.slot(name), ("up", "ready", "pid"))
        return st["pid"] if st["up"] and st["ready"] and uid_of(st["pid"]) == uid else None
    return s6env.wait_for(ok, timeout, interval=0.1, what=f"{name} ready as uid {uid}")


def converged(sb, uids: dict[str, int], on: bool, timeout: float = 30) -> dict[str, int]:
    """Every profile tree and log directory owned as expected, every gateway running as
    its uid (ready); the gateways' pids."""
    svc = (sb.user.uid, sb.user.gid)
    pids = {}
    for name, uid in uids.items():
        want = (uid, uid) if on else svc
        pids[name] = running_as(sb, name, want[0], timeout)
        prof = sb.home / "profiles" / name
        s6env.wait_for(lambda p=prof, w=want: tree_owners(p) - {w} <= {(0, 0)}, timeout,
                       interval=0.1, what=f"{name}'s tree owned by {want}")
        assert tree_owners(prof) - {want} <= {(0, 0)}, (name, tree_owners(prof))
        assert os.stat(prof).st_mode & 0o777 == (0o700 if on else 0o755)
        logs = sb.home / "logs" / "gateways" / name
        s6env.wait_for(lambda p=logs, w=want: tree_owners(p) == {w}, timeout, interval=0.1,
                       what=f"{name}'s log directory owned by {want}")
        assert os.stat(logs).st_mode & 0o777 == (0o700 if on else 0o755)
        assert os.stat(sb.slot(name) / "run").st_mode & 0o777 == (0o700 if on else 0o750)
    return pids


def refused(sb, name: str) -> bool:
    st = s6env.svstat(sb.slot(name), ("up", "exitcode"))
    return not st["up"] and st["exitcode"] == 78


def without_uptime(text: str) -> str:
    """gateway.status's output but for the fields that change between two calls."""
    import re

    if text.startswith("{"):
        doc = json.loads(text)
        for gw in doc["gateways"]:
            gw.pop("uptime", None)
        return json.dumps(doc, sort_keys=True)
    text = re.sub(r", \d+ s,", ",", text)
    return "".join(line for line in text.splitlines(True) if "uptime" not in line)


def as_uid(uid: int, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["s6-applyuidgid", "-u", str(uid), "-g", str(uid), "-G", "", *cmd],
                          capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)


def test_isolated_gateways_cannot_reach_each_other(root_sandbox, supervisor):
    sb = root_sandbox
    volume(sb)
    (sb.home / ".standin" / "behaviour.json").write_text(  # a stop leaves root's record
        json.dumps({"profiles": {"alice": {"term_state": ""}}}))
    tasks(sb, "reconcile", *OFF)
    converged(sb, {"alice": 0, "bob": 0}, on=False)
    check = rows(tasks(sb, "reconcile", "--check", "--json", *ON))
    assert not (sb.home / "profile-uids.json").exists()  # --check writes nothing
    assert rows(tasks(sb, "reconcile", "--json", *ON)) == check  # the run did as checked
    uids = recorded(sb)
    assert set(uids) == {"alice", "bob"} and len(set(uids.values())) == 2
    assert min(uids.values()) >= 20000
    record = os.stat(sb.home / "profile-uids.json")
    assert (record.st_uid, record.st_mode & 0o777) == (0, 0o644)  # root writes it, only root
    pids = converged(sb, uids, on=True)
    default_pid = running_as(sb, "default", sb.user.uid)
    assert default_pid  # the default profile keeps the service user
    alice = uids["alice"]
    with open(f"/proc/{pids['alice']}/status") as fh:
        groups = next(line.split()[1:] for line in fh if line.startswith("Groups:"))
    assert groups == [str(alice)]  # its own group only: never the service group

    bob_home = sb.home / "profiles" / "bob"
    denied = {
        "bob's .env": ("cat", str(bob_home / ".env")),
        "bob's memories": ("ls", str(bob_home / "memories")),
        "bob's run script": ("cat", str(sb.slot("bob") / "run")),
        "bob's environ": ("cat", f"/proc/{pids['bob']}/environ"),
        "the registrar's settings": ("cat", str(sb.scandir / REGISTRAR / "data" / "inventory.yml")),
        "a signal to bob": ("sh", "-c", f"kill -0 {pids['bob']}"),
        "bob's slot control": (str(sb.cmd_dir / "s6-svc"), "-d", str(sb.slot("bob"))),
        "bob's log": ("ls", str(sb.home / "logs" / "gateways" / "bob")),
        "writing bob's SOUL": ("sh", "-c", f"echo x >> {bob_home / 'SOUL.md'}"),
    }
    for what, cmd in denied.items():
        res = as_uid(alice, *cmd)
        assert res.returncode != 0, (what, res.stdout)
        assert "s3cret" not in res.stdout, what
    # ...while its own profile is its own
    assert as_uid(alice, "cat", str(sb.home / "profiles" / "alice" / ".env")).returncode == 0
    assert s6env.svstat(sb.slot("bob"))["pid"] == pids["bob"]  # untouched

    # the gateway's environment keeps it inside its profile
    with open(f"/proc/{pids['alice']}/environ", "rb") as fh:
        env = dict(v.split(b"=", 1) for v in fh.read().split(b"\0") if b"=" in v)
    prof = str(sb.home / "profiles" / "alice").encode()
    assert env[b"HOME"] == prof and env[b"HERMES_KANBAN_HOME"] == prof
    assert env[b"TMPDIR"] == prof + b"/tmp"
    assert env[b"HERMES_HOME"] == str(sb.home).encode()

    # gateway.status shows each profile's uid, as text and JSON
    docs = status(sb, *ON)
    assert {n: d["uid"] for n, d in docs.items()} == {"default": sb.user.uid, **uids}
    text = tasks(sb, "gateway.status", *ON).stdout
    # slot.render shows what reconcile renders: the drop to alice's uid, run 0700
    shown = tasks(sb, "slot.render", "alice", *ON).stdout
    assert f"s6-applyuidgid -u {alice} -g {alice}" in shown
    assert "gateway-alice/run (mode 0700)" in shown

    # the service user cannot read isolated profiles: its gateway.status asks root (the
    # registrar) and prints root's answer exactly as root does, in every format
    for args in ((), ("--json",), ("--format", "prometheus"), ("-p", "alice", "--json"),
                 ("--health",), ("--health", "--json")):
        theirs = tasks(sb, "gateway.status", *args, *ON, ok=False)
        mine = tasks(sb, "gateway.status", *args, *ON, user=sb.user, ok=False)
        assert (mine.returncode, without_uptime(mine.stdout), mine.stderr) == \
            (theirs.returncode, without_uptime(theirs.stdout), theirs.stderr), args
    assert f"uid {alice}" in tasks(sb, "gateway.status", *ON, user=sb.user).stdout
    bad = tasks(sb, "gateway.status", "-p", "nobody", *ON, user=sb.user, ok=False)
    root_bad = tasks(sb, "gateway.status", "-p", "nobody", *ON, ok=False)
    assert (bad.returncode, bad.stderr) == (root_bad.returncode, root_bad.stderr) != (0, "")
    assert len(bad.stderr.splitlines()) == 1 and "no profile 'nobody'" in bad.stderr
    # its gateway.logs likewise: root reads the profile's log and sends the last lines
    for args in (("-p", "alice"), ("-p", "alice", "-n", "3"), ("-p", "bob", "-n", "0")):
        theirs = tasks(sb, "gateway.logs", *args, *ON)
        mine = tasks(sb, "gateway.logs", *args, *ON, user=sb.user)
        assert (mine.returncode, mine.stdout, mine.stderr) == \
            (theirs.returncode, theirs.stdout, theirs.stderr), args
    assert "fake-gateway: started profile=alice" in \
        tasks(sb, "gateway.logs", "-p", "alice", *ON, user=sb.user).stdout
    follow = tasks(sb, "gateway.logs", "-p", "alice", "-f", *ON, user=sb.user, ok=False)
    assert follow.returncode == 1 and len(follow.stderr.splitlines()) == 1, follow.stderr
    assert "needs root" in follow.stderr and "Traceback" not in follow.stderr
    # ...but drives them through the registrar as before
    tasks(sb, "gateway.stop", "-p", "alice", "--wait", *ON, user=sb.user)
    s6env.wait_down(sb.slot("alice"))
    state = sb.home / "profiles" / "alice" / "gateway_state.json"
    assert json.loads(state.read_text())["desired_state"] == "stopped"
    st = os.stat(state)
    assert (st.st_uid, st.st_gid) == (alice, alice)  # what root records there is alice's
    tasks(sb, "gateway.start", "-p", "alice", "--wait", *ON, user=sb.user)
    pids["alice"] = running_as(sb, "alice", alice)
    assert f"uid {alice}" in text and f"uid {sb.user.uid}" in text

    # hermes-tasks exec: the operator's way to run `hermes -p NAME …` as the profile's uid
    def exec_(*cmd, user=None):
        return s6env.run_tasks(sb, None, user=user, argv=[
            "python", "-m", "hermes_tasks", "exec", "-p", "alice", *s6env.inventory_args(sb),
            *ON, "--", *cmd])
    res = exec_("sh", "-c", 'id -u; id -G; echo "$HERMES_HOME $HOME $TMPDIR"; pwd; '
                'cat "$HERMES_HOME/profiles/alice/.env"')
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[:2] == [str(alice), str(alice)]
    alice_home = str(sb.home / "profiles" / "alice")
    assert lines[2] == f"{sb.home} {alice_home} {alice_home}/tmp" and lines[3] == alice_home
    assert "s3cret-alice" in res.stdout
    res = exec_("cat", str(bob_home / ".env"))
    assert res.returncode != 0 and "s3cret" not in res.stdout
    res = exec_("true", user=sb.user)
    assert res.returncode == 1 and len(res.stderr.splitlines()) == 1, res.stderr
    assert "needs root" in res.stderr and "Traceback" not in res.stderr
    res = s6env.run_tasks(sb, None, argv=["python", "-m", "hermes_tasks", "exec", "-p", "alice"])
    assert res.returncode == 1 and "usage: hermes-tasks exec" in res.stderr
    assert len(res.stderr.splitlines()) == 1

    # converged: a second run changes nothing and restarts nothing
    again = json.loads(tasks(sb, "reconcile", "--json", *ON).stdout)
    assert again["stats"]["changed"] == 0, again
    assert {n: s6env.svstat(sb.slot(n))["pid"] for n in uids} == pids


def snapshot(root, skip) -> dict[str, tuple[int, int]]:
    """(uid, gid) of every path under ``root`` except the trees in ``skip``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[p] = (st.st_uid, st.st_gid)
    return out


def test_switch_on_off_on_with_sigkill_converges(root_sandbox, supervisor):
    sb = root_sandbox
    volume(sb)
    # a decoy outside the volume, symlinked and hard-linked into alice's profile
    decoy = sb.root / "decoy"
    (decoy / "inner").mkdir(parents=True)
    (decoy / "secret").write_text("decoy\n")
    alice_dir = sb.home / "profiles" / "alice"
    (alice_dir / "to-decoy").symlink_to(decoy)
    (alice_dir / "to-secret").symlink_to(decoy / "secret")
    os.link(decoy / "secret", alice_dir / "hard-secret")
    tasks(sb, "reconcile", *OFF)
    converged(sb, {"alice": 0, "bob": 0}, on=False)
    trees = {str(sb.home / "profiles" / n) for n in ("alice", "bob")} | \
        {str(sb.home / "logs" / "gateways" / n) for n in ("alice", "bob")}
    before = {**snapshot(sb.home, trees), **snapshot(decoy, set())}
    decoy_before = snapshot(decoy, set())
    rng = random.Random(os.environ.get("ISOLATION_SEED") or time.time_ns())
    uids = None
    for flags, on in ((ON, True), (OFF, False), (ON, True)):
        leftover = None
        if not on:  # something alice's agent left running as its uid
            leftover = subprocess.Popen(["s6-applyuidgid", "-u", str(uids["alice"]), "-g",
                                         str(uids["alice"]), "-G", "", "sleep", "300"])
        # a reconcile killed at a random point of its run, then one that completes
        cmd = [*s6env.python_for(None)[:1], "-m", "hermes_tasks", "reconcile", *flags,
               *s6env.inventory_args(sb)]
        proc = subprocess.Popen(cmd, env=s6env.tool_env(sb), cwd=sb.root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        tasks(sb, "reconcile", *flags)
        uids = uids or recorded(sb)
        assert recorded(sb) == uids  # allocations never move
        converged(sb, uids if on else dict.fromkeys(uids, 0), on=on)
        after = snapshot(sb.home, trees)
        changed = {p: (before[p], after[p]) for p in before.keys() & after.keys()
                   if before[p] != after[p]}
        assert not changed, changed  # nothing outside the profile trees changed owner
        assert snapshot(decoy, set()) == decoy_before
        assert os.lstat(alice_dir / "hard-secret").st_uid == 0  # a hard link: left alone
        if leftover is not None:
            try:  # stopped before alice's tree was given back
                assert leftover.wait(timeout=10) == -signal.SIGKILL
            finally:
                if leftover.poll() is None:
                    leftover.kill()
                    leftover.wait()


def test_a_replaced_profile_directory_is_not_given_to_the_profile(root_sandbox, supervisor):
    """The service user owns profiles/: it can move alice's tree away and plant its own.
    Once alice was converted, a planted directory is refused, never given to alice."""
    sb = root_sandbox
    volume(sb)
    tasks(sb, "reconcile", *ON)
    uids = recorded(sb)
    converged(sb, uids, on=True)
    plant = ("set -e; cd profiles; mv alice alice.moved; mkdir alice; "
             "echo 'you are evil now' > alice/SOUL.md")
    subprocess.run(["s6-setuidgid", sb.user.name, "sh", "-c", plant], cwd=sb.home, check=True)
    subprocess.run([str(sb.cmd_dir / "s6-svc"), "-r", str(sb.slot("alice"))], check=True)
    s6env.wait_for(lambda: s6env.svstat(sb.slot("alice"), ("up", "exitcode"))["exitcode"] == 78,
                   20, interval=0.1, what="alice's run refusing the planted directory")
    assert tree_owners(sb.home / "profiles" / "alice") == {(sb.user.uid, sb.user.gid)}
    # a container restart wipes the scandir's mark: root's record still knows which
    # directory it gave to alice's uid, and refuses the planted one in one line
    os.unlink(sb.slot("alice") / "data" / "isolated-tree")
    subprocess.run([str(sb.cmd_dir / "s6-svc"), "-u", str(sb.slot("alice"))], check=True)
    log = sb.home / "logs" / "gateways" / "alice" / "current"
    s6env.wait_for(lambda: "is not the directory given to uid" in log.read_text(), 20,
                   interval=0.1, what="alice's run refusing the planted directory by the record")
    s6env.wait_for(lambda: refused(sb, "alice"), 20, interval=0.1, what="alice down, 78")
    lines = [x for x in log.read_text().splitlines() if "is not the directory given" in x]
    assert len(lines) >= 1 and "profile-uids.json" in lines[-1]
    assert tree_owners(sb.home / "profiles" / "alice") == {(sb.user.uid, sb.user.gid)}
    # the operator accepts it: the marks go (the record's and the scandir's), the next
    # start converts it
    record = json.loads((sb.home / "profile-uids.json").read_text())
    assert "alice" in record["converted"]
    del record["converted"]["alice"]
    (sb.home / "profile-uids.json").write_text(json.dumps(record))  # stays root's
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sb.slot("alice") / "data" / "isolated-tree")
    tasks(sb, "gateway.start", "-p", "alice", *ON)
    running_as(sb, "alice", uids["alice"])
    assert tree_owners(sb.home / "profiles" / "alice") == {(uids["alice"],) * 2}


def test_created_and_deleted_profiles_get_and_retire_their_uids(root_sandbox, supervisor):
    sb = root_sandbox
    volume(sb)
    tasks(sb, "reconcile", *ON)
    uids = recorded(sb)
    converged(sb, uids, on=True)
    tasks(sb, "profile.create", "carol", "--start", *ON)
    carol = recorded(sb)["carol"]
    assert carol not in uids.values()
    converged(sb, {"carol": carol}, on=True)
    tasks(sb, "profile.delete", "bob", "--purge", *ON)
    tasks(sb, "profile.create", "bob", "--start", *ON)
    now = recorded(sb)
    assert now["bob"] != uids["bob"]  # a deleted profile's uid is never handed out again
    assert uids["bob"] in json.loads((sb.home / "profile-uids.json").read_text())["retired"]
    converged(sb, {"bob": now["bob"], "alice": uids["alice"]}, on=True)


def test_a_held_uid_record_lock_hands_out_no_new_uid(root_sandbox, supervisor):
    """The record's lock is the volume's, not the host's: while another process (the
    service user can) holds it, a profile that needs a new uid fails in one line and is
    not created; running ones keep their uids; the next run creates it."""
    sb = root_sandbox
    volume(sb)
    tasks(sb, "reconcile", *ON)
    uids = recorded(sb)
    pids = converged(sb, uids, on=True)
    holder = os.open(sb.home / "profile-uids.json", os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        res = tasks(sb, "profile.create", "carol", "--start", *ON, ok=False)
    finally:
        os.close(holder)
    assert res.returncode == 1
    assert "locked by another process" in res.stdout + res.stderr, res.stdout + res.stderr
    assert "carol" not in recorded(sb) and not (sb.home / "profiles" / "carol").exists()
    assert {n: s6env.svstat(sb.slot(n))["pid"] for n in uids} == pids
    tasks(sb, "profile.create", "carol", "--start", *ON)
    carol = recorded(sb)["carol"]
    assert carol not in uids.values()
    converged(sb, {"carol": carol}, on=True)


def test_a_deliberate_stop_leaves_no_marker_and_records_stopped(root_sandbox, supervisor):
    """hermes's planned-stop marker in an isolated profile is the profile uid's file (its
    0700 directory holds nothing else's); the gateway consumes it at the stop: none is
    left behind and the gateway records ``stopped``."""
    sb = root_sandbox
    volume(sb)
    (sb.home / ".standin" / "behaviour.json").write_text(
        json.dumps({"profiles": {"alice": {"planned_stop": "1"}}}))
    tasks(sb, "reconcile", *ON)
    uids = recorded(sb)
    pids = converged(sb, uids, on=True)
    tasks(sb, "gateway.stop", "-p", "alice", "--wait", *ON)
    s6env.wait_down(sb.slot("alice"), 20)
    alice_dir = sb.home / "profiles" / "alice"
    assert not (alice_dir / ".gateway-planned-stop.json").exists()
    stops = [json.loads(line) for line in
             (sb.home / ".standin" / "alice.jsonl").read_text().splitlines()
             if json.loads(line)["event"] == "stop"]
    assert [(e["pid"], e["marker_uid"], e["code"]) for e in stops] == \
        [(pids["alice"], uids["alice"], 0)]
    assert s6env.svstat(sb.slot("alice"), ("up", "exitcode"))["exitcode"] == 0
    state = json.loads((alice_dir / "gateway_state.json").read_text())
    assert state["gateway_state"] == "stopped"
    assert tree_owners(alice_dir) - {(uids["alice"],) * 2} <= {(0, 0)}
