"""The privilege model (SPEC §10) under a real s6-svscan run as root.

Reconcile runs as root; the service user then sends every task's intent to the root
registrar (a socket root serves, SPEC §14.1), which plans and runs it as root and answers
with the rows. It can never change what root runs, signal the registrar, nor talk to
s6-svscan.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import time

import s6env
import standin
from control_helpers import make_profile, one_line_error, own, state_file, status, tasks

REGISTRAR = "hermes-tasks-registrar"


def boot(sb):
    """Profiles on a volume owned by the service user; reconcile as root under s6."""
    make_profile(sb.home, "default", {"gateway_state": "running"})
    make_profile(sb.home, "alice", {"desired_state": "stopped", "platforms": {"x": 1}})
    make_profile(sb.home, "bob", {"desired_state": "running"})
    own(sb, sb.home)
    res = tasks(sb, "reconcile", "--json")
    assert json.loads(res.stdout)["registrar"]["result"] == "changed"
    for name in ("default", "bob"):
        s6env.wait_up(sb.slot(name))
    registrar = sb.scandir / REGISTRAR
    s6env.wait_up(registrar)
    s6env.wait_for(lambda: s6env.svstat(registrar, ("ready",))["ready"], 10,
                   what="the registrar ready")
    assert not (registrar / "data" / "published").exists()  # its first start skipped a run


def as_user(sb, task, *args, ok=True):
    return tasks(sb, task, *args, user=sb.user, ok=ok)


def gateway_uid(sb, name, pid):
    ev = s6env.wait_for(lambda: [e for e in standin.starts(sb.home, name) if e["pid"] == pid], 5,
                        what=f"{name} start record")
    return ev[0]["uid"]


def registrar_pid(sb):
    st = s6env.svstat(sb.scandir / REGISTRAR)
    assert st["up"]
    return st["pid"]


def rows(res):
    return [(r["slot"], r["action"], r["result"], r["message"])
            for r in json.loads(res.stdout)["results"]]


def test_service_user_drives_gateways_through_the_shared_fifos(root_sandbox, supervisor):
    """Through the registrar's socket: root's rows, and the registrar is never restarted."""
    sb = root_sandbox
    boot(sb)
    registrar = registrar_pid(sb)
    gws = status(sb, user=sb.user)
    assert [g["up"] for g in gws.values()] == [True, False, True]
    assert gws["bob"]["pid"] == s6env.svstat(sb.slot("bob"))["pid"]

    # a stopped gateway stopped again: ok, nothing rewritten, nothing restarted
    run_before = os.stat(sb.slot("alice") / "run")
    for check in (("--check",), ()):
        res = as_user(sb, "gateway.stop", "-p", "alice", "--json", *check)
        assert rows(res) == [("gateway-alice", "stopped", "ok", "")], res.stdout
        assert json.loads(res.stdout)["stats"]["changed"] == 0
    after = os.stat(sb.slot("alice") / "run")
    assert (after.st_ino, after.st_mtime_ns) == (run_before.st_ino, run_before.st_mtime_ns)
    assert registrar_pid(sb) == registrar

    res = as_user(sb, "gateway.start", "-p", "alice", "--wait", "--json")
    [(slot, action, result, message)] = rows(res)
    assert (slot, action, result) == ("gateway-alice", "started", "changed"), message
    assert "recorded running" in message and "brought up" in message
    st = s6env.svstat(sb.slot("alice"))
    assert st["up"] and st["normallyup"]
    assert gateway_uid(sb, "alice", st["pid"]) == sb.user.uid
    doc = state_file(sb.home, "alice")
    assert doc["desired_state"] == "running" and doc["platforms"] == {"x": 1}
    state_path = sb.home / "profiles" / "alice" / "gateway_state.json"
    assert os.stat(state_path).st_uid == sb.user.uid

    first = s6env.svstat(sb.slot("bob"))["pid"]
    as_user(sb, "gateway.restart", "-p", "bob", "--wait")
    st = s6env.svstat(sb.slot("bob"))
    assert st["up"] and st["pid"] != first

    as_user(sb, "gateway.stop", "-p", "bob", "--wait")
    st = s6env.svstat(sb.slot("bob"))
    assert not st["up"] and not st["normallyup"]
    assert state_file(sb.home, "bob")["desired_state"] == "stopped"

    as_user(sb, "gateway.stop", "--all", "--wait")
    assert not any(g["up"] or g["wanted_up"] for g in status(sb, user=sb.user).values())
    as_user(sb, "gateway.restart", "--all", "--wait")  # never starts what was stopped
    gws = status(sb, user=sb.user)
    assert not any(g["up"] or g["desired_state"] != "stopped" for g in gws.values())
    as_user(sb, "gateway.start", "-p", "alice", "--wait")
    first = s6env.svstat(sb.slot("alice"))["pid"]
    as_user(sb, "gateway.restart", "--all", "--wait")
    gws = status(sb, user=sb.user)
    assert [g["up"] for g in gws.values()] == [False, True, False]
    assert gws["alice"]["pid"] != first
    # --all never touches the registrar: the same root process served every request
    assert registrar_pid(sb) == registrar and os.stat(f"/proc/{registrar}").st_uid == 0
    # a second root reconcile agrees with everything the user did
    again = json.loads(tasks(sb, "reconcile", "--json").stdout)
    assert again["stats"]["changed"] == 0 and again["stats"]["failed"] == 0


def test_service_user_changes_slots_through_the_registrar(root_sandbox, supervisor):
    sb = root_sandbox
    boot(sb)
    registrar = registrar_pid(sb)

    # root's rows, as root's --check foretold them
    foretold = as_user(sb, "profile.create", "carol", "--check", "--json")
    assert not (sb.home / "profiles" / "carol").exists()
    res = as_user(sb, "profile.create", "carol", "--json")
    assert [(s, a, r) for s, a, r, _ in rows(res)] == [("gateway-carol", "registered", "changed")]
    assert rows(res)[0][3] == "created profiles/carol; published"
    assert rows(foretold)[0][3] == "would create profiles/carol; would be published"
    assert os.stat(sb.home / "profiles" / "carol" / "SOUL.md").st_uid == sb.user.uid
    assert os.lstat(sb.slot("carol") / "run").st_uid == 0
    assert registrar_pid(sb) == registrar
    s6env.wait_status_file(sb.slot("carol"))
    assert not s6env.svstat(sb.slot("carol"))["up"]

    res = as_user(sb, "profile.create", "dave", "--start")
    assert "changed: [gateway-dave] => started" in res.stdout
    st = s6env.wait_up(sb.slot("dave"))
    assert gateway_uid(sb, "dave", st["pid"]) == sb.user.uid

    # a profile made on the volume by hand: gateway.start registers it through the registrar
    make_profile(sb.home, "erin")
    own(sb, sb.home / "profiles" / "erin")
    as_user(sb, "gateway.start", "-p", "erin", "--wait")
    assert s6env.svstat(sb.slot("erin"))["up"]
    assert os.lstat(sb.slot("erin") / "run").st_uid == 0
    assert state_file(sb.home, "erin")["desired_state"] == "running"

    pids = s6env.supervise_pids(sb.slot("dave"))
    gateway = s6env.svstat(sb.slot("dave"))["pid"]
    assert len(pids) == 2
    res = as_user(sb, "profile.delete", "dave")
    assert "changed: [gateway-dave] => removed" in res.stdout
    assert not sb.slot("dave").exists()
    assert not {p.pid for p in s6env.processes()} & {*pids, gateway}
    assert [n for n in os.listdir(sb.scandir) if "dave" in n] == []
    trash = sb.home / ".trash" / "profiles"
    [moved] = list(trash.iterdir())
    assert re.fullmatch(r"dave\..+Z", moved.name) and (moved / "SOUL.md").exists()
    assert os.stat(trash).st_uid == sb.user.uid

    as_user(sb, "profile.delete", "carol", "--purge")
    assert not sb.slot("carol").exists() and not (sb.home / "profiles" / "carol").exists()
    one_line_error(as_user(sb, "profile.delete", "default", ok=False), "cannot be deleted")
    # the other gateways never noticed
    assert s6env.svstat(sb.slot("bob"))["up"] and s6env.svstat(sb.slot("erin"))["up"]


PROBE = r"""
import errno, json, os, sys
paths = json.load(sys.stdin)
writable = []
for path, kind in paths:
    try:
        if kind == "dir":
            fd = os.open(os.path.join(path, ".probe"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            os.unlink(os.path.join(path, ".probe"))
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW))
        writable.append(path)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.ENXIO):
            writable.append(f"{path}: unexpected {exc}")
print(json.dumps(writable))
"""


def test_service_user_cannot_change_what_root_runs(root_sandbox, supervisor):
    sb = root_sandbox
    boot(sb)
    paths, shared = [(str(sb.scandir), "dir")], set()
    for slot in sorted(p for p in sb.scandir.iterdir() if not p.name.startswith(".")):
        for dirpath, _dirs, files in os.walk(slot):
            paths.append((dirpath, "dir"))
            paths += [(os.path.join(dirpath, f), "file") for f in files]
        for base in (slot, slot / "log"):
            if base.is_dir() and slot.name != REGISTRAR:
                # event/ is root's alone (SPEC §5): only a gateway's control FIFO is shared;
                # the registrar's is root's too (SPEC §14.1)
                shared.add(str(base / "supervise" / "control"))
    assert len(paths) > 40  # four slots with their files were really probed
    python, _ = s6env.python_for(sb.user)
    res = subprocess.run([python, "-c", PROBE], input=json.dumps(paths), capture_output=True,
                         text=True, env=s6env.tool_env(sb), cwd=sb.root, timeout=60,
                         user=sb.user.uid, group=sb.user.gid, extra_groups=[], check=False)
    assert res.returncode == 0, res.stderr
    assert set(json.loads(res.stdout)) == shared
    # nor may it talk to s6-svscan (rescan, or halt the tree)
    for flag in ("-a", "-an", "-t"):
        ctl = s6env.run_tasks(sb, None, argv=[str(sb.cmd_dir / "s6-svscanctl"), flag,
                                              str(sb.scandir)], user=sb.user)
        assert ctl.returncode == 111 and "Permission denied" in ctl.stderr, ctl.stderr
    assert supervisor.alive() and s6env.svstat(sb.slot("bob"))["up"]


def test_without_a_registrar_slot_changes_are_refused_cleanly(root_sandbox):
    sb = root_sandbox
    make_profile(sb.home, "alice", {"desired_state": "stopped"})
    make_profile(sb.home, "erin")
    own(sb, sb.home)
    tasks(sb, "reconcile")  # as root, no supervisor: slots and registrar published, unsupervised
    os.rename(sb.slot("erin"), sb.scandir / ".gone")  # erin has a profile but no slot
    for task, args in (("profile.create", ("carol",)), ("profile.delete", ("alice",)),
                       ("gateway.start", ("-p", "erin"))):
        res = as_user(sb, task, *args, ok=False)
        one_line_error(res, "needs root", "hermes-tasks reconcile")
    assert not (sb.home / "profiles" / "carol").exists()
    assert (sb.home / "profiles" / "alice" / "SOUL.md").exists()
    assert not sb.slot("erin").exists()
    # every task goes through the registrar, so without one even a start is refused
    res = as_user(sb, "gateway.start", "-p", "alice", ok=False)
    one_line_error(res, "needs root", "hermes-tasks reconcile")


def test_concurrent_requests_to_the_registrar_all_get_their_slot(root_sandbox, supervisor):
    """Requests arriving together are served one after the other."""
    sb = root_sandbox
    boot(sb)
    names = ["p1", "p2", "p3", "p4"]
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(lambda n: as_user(sb, "profile.create", n, ok=False), names))
    for name, res in zip(names, results):
        assert res.returncode == 0, (name, res.stdout, res.stderr)
        assert f"changed: [gateway-{name}] => registered" in res.stdout
        assert os.lstat(sb.slot(name) / "run").st_uid == 0
        s6env.wait_status_file(sb.slot(name))
    # the registrar is still ready, and no reconcile was left behind as an orphan
    reg = s6env.svstat(sb.scandir / REGISTRAR, ("up", "ready", "pid"))
    assert reg["up"] and reg["ready"]
    orphans = [p for p in s6env.processes()
               if "hermes_tasks" in " ".join(p.cmdline) and str(sb.root) in p.cwd
               and p.pid != reg["pid"]]
    assert orphans == []


def test_a_stopped_registrar_is_a_clean_error(root_sandbox, supervisor):
    sb = root_sandbox
    boot(sb)
    registrar = sb.scandir / REGISTRAR
    subprocess.run([str(sb.cmd_dir / "s6-svc"), "-wD", "-d", str(registrar)], check=True)
    res = as_user(sb, "profile.create", "carol", ok=False)
    one_line_error(res, REGISTRAR, "is stopped", "hermes-tasks reconcile")
    assert not (sb.home / "profiles" / "carol").exists()
    # root works without it meanwhile; once root starts it again, requests work
    tasks(sb, "profile.create", "dave")
    subprocess.run([str(sb.cmd_dir / "s6-svc"), "-u", str(registrar)], check=True)
    s6env.wait_for(lambda: s6env.svstat(registrar, ("ready",))["ready"], 10, what="ready")
    as_user(sb, "profile.create", "carol")
    assert sb.slot("carol").is_dir()


def test_a_failed_registrar_run_is_reported_in_one_line(root_sandbox, supervisor):
    """Root's run of the request cannot take the scandir lock: the task says so, exit 1."""
    sb = root_sandbox
    own(sb, sb.home)
    tasks(sb, "reconcile", "--var", "lock_timeout=1")
    registrar = sb.scandir / REGISTRAR
    s6env.wait_for(lambda: s6env.svstat(registrar, ("ready",))["ready"], 10, what="ready")
    with open(sb.scandir / ".hermes-tasks.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = as_user(sb, "profile.create", "carol", ok=False)
    one_line_error(res, "create ['carol']", ".hermes-tasks.lock", "lock_timeout")
    assert not sb.slot("carol").exists()
    # still serving: the next request works
    as_user(sb, "profile.create", "carol")
    assert sb.slot("carol").is_dir()


def test_the_service_user_cannot_signal_the_registrar(root_sandbox, supervisor):
    """Its supervise/control is root's alone: s6-svc -p/-k/-x/-d/-r are refused (EACCES)."""
    sb = root_sandbox
    boot(sb)
    registrar = sb.scandir / REGISTRAR
    pid = registrar_pid(sb)
    control = os.stat(registrar / "supervise" / "control")
    assert (control.st_mode & 0o777, control.st_uid, control.st_gid) == (0o600, 0, 0)
    for flag in ("-p", "-k", "-x", "-d", "-r"):
        res = s6env.run_tasks(sb, None, argv=[str(sb.cmd_dir / "s6-svc"), flag, str(registrar)],
                              user=sb.user)
        assert res.returncode != 0 and "Permission denied" in res.stderr, (flag, res.stderr)
    assert registrar_pid(sb) == pid
    assert open(f"/proc/{pid}/stat").read().split(") ")[1][0] != "T"  # not stopped
    as_user(sb, "gateway.start", "-p", "alice")  # and still serving


def _connect_as_user(sb, send: bytes):
    """A client of the registrar's socket, as the service user, that sends ``send`` then
    stops reading; returns the Popen (stop it by pid)."""
    python, extra = s6env.python_for(sb.user)
    code = ("import socket, sys, time\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            f"s.connect({str(sb.scandir / REGISTRAR / 'data' / 'registrar.sock')!r})\n"
            f"s.sendall({send!r})\n"
            "print('sent', flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([python, "-c", code], stdout=subprocess.PIPE, text=True,
                            user=sb.user.uid, group=sb.user.gid, extra_groups=[], cwd="/")
    assert proc.stdout.readline() == "sent\n"
    return proc


def test_a_frozen_or_vanished_caller_does_not_delay_root(root_sandbox, supervisor):
    sb = root_sandbox
    boot(sb)
    # frozen mid-request: it connected and sent half a line, then stopped (SIGSTOP)
    frozen = _connect_as_user(sb, b'{"task": "stop", "names": ["bo')
    try:
        os.kill(frozen.pid, signal.SIGSTOP)
        started = time.monotonic()
        tasks(sb, "reconcile", "--var", "lock_timeout=1")  # root itself: never waits on it
        as_user(sb, "gateway.start", "-p", "alice")  # the next request: served after <= ~1 s
        assert time.monotonic() - started < 10
        assert s6env.svstat(sb.slot("alice"))["wantedup"]
    finally:
        frozen.kill()
        frozen.wait()
    # a caller that asks for a --wait run and never reads the answer, frozen then gone
    reader = _connect_as_user(sb, b'{"task": "restart", "names": ["bob"], "wait": true, '
                                  b'"timeout": 30, "diff": true}\n')
    try:
        os.kill(reader.pid, signal.SIGSTOP)
        before = s6env.svstat(sb.slot("bob"))["pid"]
        # root carries the request out anyway, then gives the frozen caller <= 1 s
        s6env.wait_for(lambda: s6env.svstat(sb.slot("bob"))["pid"] not in (before, None), 30,
                       what="bob restarted by the frozen caller's request")
        started = time.monotonic()
        tasks(sb, "gateway.stop", "-p", "alice", "--var", "lock_timeout=2")
        as_user(sb, "gateway.start", "-p", "alice")
        assert time.monotonic() - started < 10
    finally:
        reader.kill()
        reader.wait()
    # a request that is not JSON, and one too long to read: refused, nothing held
    for junk in (b"not json\n", b"x" * (1 << 17)):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sb.scandir / REGISTRAR / "data" / "registrar.sock"))
            try:
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                s.settimeout(5)
                s.recv(1 << 16)
            except (BrokenPipeError, ConnectionResetError):
                pass
    res = as_user(sb, "gateway.stop", "-p", "alice", "--json")
    assert rows(res)[0][:3] == ("gateway-alice", "stopped", "changed")
