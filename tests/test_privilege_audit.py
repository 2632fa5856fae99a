"""Privilege audit (issue 11; SPEC §5, §10, §13.10) under a real s6-svscan run as root.

Thinking like the service user (a prompt-injected agent's terminal tool has its rights):
:func:`writable_dirs` lists every directory under the scandir and ``hermes_home`` it can
create entries in; :func:`plant_traps` puts in each a symlink to a root canary file outside
the volume, a FIFO, and a hard link to the canary where the kernel allows; then every
root-side path is driven (:func:`drive_every_root_path`). The canaries must keep their
bytes, owner and mode, and the scandir tree must hold no directory the service user can
write. A new root-side path belongs in :func:`drive_every_root_path`, so it is audited too.

Also here: the original attack (a symlink in ``event/`` that s6-supervise, as root, wrote
through) and its repair on a slot left by an older version; the lock a service user could
hold against every root run; root entry points running from ``/``.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
from pathlib import Path

import reliability_report
import s6env
from control_helpers import make_profile, one_line_error, own, tasks

from hermes_tasks import lock

CASES = {
    "security.audit.writable_dirs": "as the service user: every directory under the scandir "
                                    "and hermes_home it can create entries in (the scandir "
                                    "tree must hold none)",
    "security.audit.traps_every_root_path": "a symlink to a root canary, a FIFO and a hard "
                                            "link (where allowed) in every such directory; "
                                            "then reconcile, registrar requests, start/stop/"
                                            "restart of every gateway and logger by root and "
                                            "the service user, profile.create/delete, a "
                                            "supervisor respawn (s6-svc -x)",
    "security.event.symlink_attack": "the service user plants event/ftrig1:@… -> a root file "
                                     "and sends s6-svc -r (the attack that overwrote byte 0)",
    "security.event.old_layout_repaired": "a slot left with the old 03730 root:service_gid "
                                          "event/ holding a planted symlink: reconcile repairs "
                                          "it in place",
    "security.lock.service_user": "the service user opens the scandir lock to flock it and "
                                  "hold off every root run",
    "security.registrar.named_settings": "as the service user through the registrar: --var/"
                                         "--inventory/$HERMES_TASKS_INVENTORY that root does "
                                         "not have, and --check against root's settings",
    "security.cwd.root_entry_points": "root entry points (console script, registrar) run from "
                                      "/, and relative --inventory/--dest mean what was typed",
}
REGISTRAR = "hermes-tasks-registrar"
CANARY_BYTES = b"ROOTSECRET canary: root's alone\n"

# Runs as the service user: which of the directories below the roots can it create in?
WRITABLE_PROBE = r"""
import json, os, sys
found = []
for root in json.loads(sys.argv[1]):
    for dirpath, dirs, _files in os.walk(root, followlinks=False):
        probe = os.path.join(dirpath, ".hermes-audit-probe")
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        except OSError:
            continue
        os.unlink(probe)
        found.append(dirpath)
print(json.dumps(sorted(found)))
"""

# Runs as the service user: plant a symlink, a FIFO and (where allowed) a hard link per dir.
PLANT_PROBE = r"""
import json, os, sys
dirs, canary = json.loads(sys.argv[1])
planted = []
for d in dirs:
    for name, make in (("ftrig1:@audit:link", lambda p: os.symlink(canary, p)),
                       ("audit-link", lambda p: os.symlink(canary, p)),
                       ("ftrig1:@audit:fifo", lambda p: os.mkfifo(p, 0o666)),
                       ("audit-hardlink", lambda p: os.link(canary, p))):
        path = os.path.join(d, name)
        try:
            make(path)
        except OSError as exc:
            planted.append([path, "refused: " + exc.strerror])
            continue
        planted.append([path, "planted"])
print(json.dumps(planted))
"""


def as_service_user(sb, code: str, *args: str) -> subprocess.CompletedProcess:
    res = s6env.run_tasks(sb, None, argv=["python", "-c", code, *args], user=sb.user)
    assert res.returncode == 0, res.stderr
    return res


def writable_dirs(sb, roots) -> list[str]:
    """Every directory below ``roots`` the service user can create an entry in."""
    return json.loads(as_service_user(sb, WRITABLE_PROBE, json.dumps([str(r) for r in roots]))
                      .stdout)


def plant_traps(sb, dirs: list[str], canary: Path) -> list[tuple[str, str]]:
    """Plant the traps as the service user; ``(path, "planted" | "refused: why")`` each."""
    out = as_service_user(sb, PLANT_PROBE, json.dumps([dirs, str(canary)])).stdout
    return [tuple(p) for p in json.loads(out)]


class Canaries:
    """Root-owned files outside the volume whose bytes, owner and mode must never change."""

    def __init__(self, root: Path):
        self.dir = root / "canaries"
        self.dir.mkdir(mode=0o755)
        self.secret = self.dir / "root-secret"  # 0600 root, like the file the attack changed
        self.secret.write_bytes(CANARY_BYTES)
        os.chmod(self.secret, 0o600)
        self.launcher = self.dir / "launcher"  # a root-run script (#! -> D! ran a volume path)
        self.launcher.write_bytes(b"#!/bin/sh\nexit 0\n")
        os.chmod(self.launcher, 0o755)
        self.original = self.state()

    def state(self) -> dict:
        out = {}
        for p in (self.secret, self.launcher):
            st = os.lstat(p)
            out[p.name] = (p.read_bytes(), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
        return out

    def changes(self) -> list[str]:
        now = self.state()
        return [f"{name}: {self.original[name]} -> {now[name]}"
                for name in self.original if now[name] != self.original[name]]


def boot(sb, sup):
    """Three profiles on a volume owned by the service user, reconciled as root."""
    make_profile(sb.home, "default", {"gateway_state": "running"})
    make_profile(sb.home, "alice", {"desired_state": "stopped"})
    make_profile(sb.home, "bob", {"desired_state": "running"})
    own(sb, sb.home)
    tasks(sb, "reconcile")
    sup.rescan()
    for name in ("default", "bob"):
        s6env.wait_up(sb.slot(name), 10)
    s6env.wait_for(lambda: s6env.svstat(sb.scandir / REGISTRAR, ("ready",))["ready"], 10,
                   what="the registrar ready")


def respawn_supervisor(sb, slot: Path) -> None:
    """The service user makes a supervisor exit (``s6-svc -x`` on a down slot); s6-svscan
    starts a new one, which must keep the pre-made modes."""
    before = s6env.supervise_pids(slot)
    svc = str(sb.cmd_dir / "s6-svc")
    res = s6env.run_tasks(sb, None, argv=[svc, "-dx", str(slot)], user=sb.user)
    assert res.returncode == 0, res.stderr
    s6env.wait_for(lambda: set(s6env.supervise_pids(slot)) - set(before)
                   and len(s6env.supervise_pids(slot)) == len(before), 15,
                   what=f"a new supervisor for {slot.name}")


def drive_every_root_path(sb, sup) -> list[subprocess.CompletedProcess]:
    """Every path on which root acts, by root and by the service user; the outputs.

    Add new root-side paths here: the audit then covers them.
    """
    outs = []

    def run(*args, user=None):
        res = s6env.run_tasks(sb, *args, user=user)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
        outs.append(res)
        return res

    svc = str(sb.cmd_dir / "s6-svc")
    run("reconcile")
    run("reconcile", user=sb.user)  # a registrar request
    for who in (None, sb.user):
        for name in ("default", "alice", "bob"):
            for action in ("gateway.start", "gateway.restart", "gateway.stop", "gateway.start"):
                run(action, "-p", name, "--wait", user=who)
            log = str(sb.slot(name) / "log")
            res = s6env.run_tasks(sb, None, argv=[svc, "-r", log], user=who)
            assert res.returncode == 0, res.stderr
        run("gateway.stop", "-p", "alice", "--wait", user=who)
    run("profile.create", "carol", "--start", user=sb.user)
    run("profile.create", "dave")
    run("profile.delete", "carol", user=sb.user)
    run("profile.delete", "dave")
    respawn_supervisor(sb, sb.slot("alice"))
    run("gateway.start", "-p", "alice", "--wait", user=sb.user)
    run("reconcile")
    # status, health, metrics and logs read the volume as root too (SPEC §14.8)
    run("gateway.status", "--json")
    run("gateway.status", "--format", "prometheus")
    run("gateway.logs", "-p", "alice", "-n", "5")
    res = s6env.run_tasks(sb, "gateway.status", "--health")
    assert res.returncode in (0, 1) and "Traceback" not in res.stderr, res.stderr
    outs.append(res)
    sup.rescan()
    return outs


def test_privilege_audit_traps_in_every_writable_directory(root_sandbox, supervisor):
    sb, sup = root_sandbox, supervisor
    canaries = Canaries(sb.root)
    boot(sb, sup)
    writable = writable_dirs(sb, [sb.scandir, sb.home])
    in_scandir = [d for d in writable if Path(d).is_relative_to(sb.scandir)]
    assert in_scandir == [], f"the service user can write into the scandir tree: {in_scandir}"
    assert str(sb.home) in writable  # the probe really finds what is writable
    planted = plant_traps(sb, writable, canaries.secret)
    assert any(how == "planted" for _, how in planted)
    canaries.original = canaries.state()  # a hard link the kernel allowed changes nothing else
    outputs = drive_every_root_path(sb, sup)
    assert canaries.changes() == []
    # after every path ran: still no directory of the scandir tree is the service user's
    after = writable_dirs(sb, [sb.scandir])
    assert after == [], after
    # the traps in the volume were never followed: the secret is in no output
    assert not any(CANARY_BYTES.decode().strip() in r.stdout + r.stderr for r in outputs)
    hard = sum(1 for p, how in planted if p.endswith("audit-hardlink") and how == "planted")
    reliability_report.record(
        "security.audit.writable_dirs", 2,
        f"{len(writable)} directories writable by the service user, all under hermes_home; "
        "none under the scandir, before and after every root path ran",
        writable=len(writable))
    reliability_report.record(
        "security.audit.traps_every_root_path", len(outputs),
        "the canaries kept their bytes, owner and mode; the scandir tree stayed closed",
        traps=sum(1 for _, how in planted if how == "planted"), hard_links=hard,
        root_paths=len(outputs))


def test_the_event_symlink_attack_fails(root_sandbox, supervisor):
    """Issue 11.1: a symlink in event/ made s6-supervise (root) overwrite byte 0 of a file."""
    sb, sup = root_sandbox, supervisor
    canaries = Canaries(sb.root)
    boot(sb, sup)
    refused = []
    for slot in (sb.slot("bob"), sb.slot("bob") / "log", sb.scandir / REGISTRAR):
        event = slot / "event"
        st = os.lstat(event)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, 0, 0)
        code = ("import os, sys\n"
                "try:\n"
                f"    os.symlink({str(canaries.secret)!r}, {str(event / 'ftrig1:@x:y')!r})\n"
                "except PermissionError:\n"
                "    print('EACCES')\n")
        refused.append(as_service_user(sb, code).stdout.strip())
        res = s6env.run_tasks(sb, None, argv=[str(sb.cmd_dir / "s6-svc"), "-r", str(slot)],
                              user=sb.user)
        if slot.name == REGISTRAR:  # root's alone (SPEC §14.1): the user may not signal it
            assert res.returncode != 0 and "Permission denied" in res.stderr, res.stderr
        else:
            assert res.returncode == 0, res.stderr
    assert refused == ["EACCES"] * 3
    s6env.wait_up(sb.slot("bob"), 10)
    assert canaries.changes() == []
    reliability_report.record("security.event.symlink_attack", 3,
                              "planting in event/ failed with EACCES (gateway, logger, "
                              "registrar); s6-svc -r still worked on the gateway and logger (the "
                              "registrar's control is root's); the root file kept byte 0")


def test_old_event_layout_is_repaired_and_emptied(root_sandbox, supervisor):
    """A slot from before the fix: event/ 03730 root:service_gid with a planted link."""
    sb, sup = root_sandbox, supervisor
    canaries = Canaries(sb.root)
    make_profile(sb.home, "alice", {"desired_state": "stopped"})
    own(sb, sb.home)
    tasks(sb, "reconcile")
    event = sb.slot("alice") / "event"
    os.chown(event, 0, sb.user.gid)
    os.chmod(event, 0o3730)
    code = f"import os; os.symlink({str(canaries.secret)!r}, {str(event / 'ftrig1:@x:y')!r})"
    as_service_user(sb, code)
    res = tasks(sb, "reconcile", "--json")
    rows = {r["profile"]: r for r in json.loads(res.stdout)["results"]}
    assert rows["alice"]["result"] == "changed"
    assert "repaired supervise/event permissions" in rows["alice"]["message"]
    st = os.lstat(event)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, 0, 0)
    assert os.listdir(event) == []  # the planted link went with the repair
    sup.rescan()
    s6env.wait_status_file(sb.slot("alice"))
    tasks(sb, "gateway.start", "-p", "alice", "--wait")
    tasks(sb, "gateway.stop", "-p", "alice", "--wait")
    assert canaries.changes() == []
    again = json.loads(tasks(sb, "reconcile", "--json").stdout)
    assert again["stats"]["changed"] == 0
    reliability_report.record("security.event.old_layout_repaired", 1,
                              "reconcile made event/ 0700 root:root in place and removed the "
                              "planted link; state changes then left the root file alone")


def test_the_service_user_cannot_hold_the_lock(root_sandbox):
    """Issue 11.2: `flock` on a read-only descriptor held off every root run."""
    sb = root_sandbox
    make_profile(sb.home, "alice", {"desired_state": "stopped"})
    own(sb, sb.home)
    path = sb.scandir / lock.LOCK_NAME
    path.write_text("1\n")
    os.chmod(path, 0o644)  # the lax file an older version left
    tasks(sb, "reconcile", "--var", "lock_timeout=5")
    st = os.lstat(path)
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, 0)
    code = ("import fcntl, os\n"
            "try:\n"
            f"    fd = os.open({str(path)!r}, os.O_RDONLY)\n"
            "    fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "    print('HELD')\n"
            "except PermissionError:\n"
            "    print('EACCES')\n")
    assert as_service_user(sb, code).stdout.strip() == "EACCES"
    # and a root holder that died leaves no name behind in the message
    with open(path, "w") as fh:
        fh.write("999999\n")
    with open(path) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        res = s6env.run_tasks(sb, "reconcile", "--var", "lock_timeout=0.3")
    line = one_line_error(res, "is held")
    assert "999999" not in line
    reliability_report.record("security.lock.service_user", 2,
                              "the lax lock was replaced by a 0600 root file; the service "
                              "user's open failed with EACCES; a dead pid was never named")


def test_root_entry_points_run_from_slash(root_sandbox, supervisor, tmp_path):
    """Issue 11 / SPEC §10: the image's WORKDIR is the volume; root must not run from it."""
    sb, sup = root_sandbox, supervisor
    make_profile(sb.home, "alice", {"desired_state": "stopped"})
    own(sb, sb.home)
    work = sb.home  # as in the image: the working directory is the volume
    inv = work / "inv.yml"
    inv.write_text(json.dumps({"all": {"vars": {"lock_timeout": 7}, "hosts": {"localhost": {}}}}))
    res = subprocess.run(
        [s6env.python_for(None)[0], "-m", "hermes_tasks", "reconcile", "--json",
         "--inventory", "inv.yml", *s6env.inventory_args(sb)],
        cwd=work, env=s6env.tool_env(sb), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr  # ./inv.yml was found although root left for /
    dest = subprocess.run(
        [s6env.python_for(None)[0], "-m", "hermes_tasks", "slot.render", "alice", "--dest",
         "rendered", *s6env.inventory_args(sb)],
        cwd=tmp_path, env=s6env.tool_env(sb), capture_output=True, text=True, timeout=60)
    assert dest.returncode == 0, dest.stderr
    assert (tmp_path / "rendered" / "run").is_file() and not Path("/rendered").exists()
    # the console script itself runs from /
    probe = subprocess.run(
        [s6env.python_for(None)[0], "-c",
         "import os, sys; from hermes_tasks import cli, workdir; o = cli.workdir.leave(); "
         "print(os.getcwd(), workdir.resolve('x', o))"],
        cwd=work, env=s6env.tool_env(sb), capture_output=True, text=True, timeout=60)
    assert probe.stdout.split() == ["/", str(work / "x")], (probe.stdout, probe.stderr)
    # the registrar's run process, as root, from /
    sup.rescan()
    registrar = sb.scandir / REGISTRAR
    st = s6env.wait_up(registrar, 10)
    assert os.readlink(f"/proc/{st['pid']}/cwd") == "/"
    assert os.stat(f"/proc/{st['pid']}").st_uid == 0
    reliability_report.record("security.cwd.root_entry_points", 3,
                              "the console script and the registrar ran from /; relative "
                              "--inventory and --dest resolved against where they were typed")


def test_registrar_path_refuses_named_settings_and_checks_with_roots(root_sandbox, supervisor):
    """Issue 11.5: the caller's settings never reach root; its --check uses root's."""
    sb, sup = root_sandbox, supervisor
    boot(sb, sup)
    copy = sb.scandir / REGISTRAR / "data" / "inventory.yml"
    st = os.stat(copy)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, sb.user.gid)
    run = os.stat(sb.slot("bob") / "run")
    assert (stat.S_IMODE(run.st_mode), run.st_uid, run.st_gid) == (0o750, 0, sb.user.gid)
    # named settings root does not have: one line, exit 1, nothing changed
    make_profile(sb.home, "fay")  # on the volume, no slot yet: gateway.start must register it
    own(sb, sb.home / "profiles" / "fay")
    before = sorted(os.listdir(sb.scandir)), sorted(os.listdir(sb.home / "profiles"))
    refusals = []
    for args, env in ((["profile.create", "zed", "--var", "extra_env={HT_A: b}"], None),
                      (["reconcile", "--var", "lock_timeout=3"], None),
                      (["gateway.start", "-p", "fay", "--var", "gateway_log_archives=3"], None),
                      (["reconcile", "--check", "--var", "extra_env={HT_A: b}"], None),
                      (["reconcile"], {"HERMES_TASKS_INVENTORY": str(sb.root / "nowhere.yml")})):
        if env:
            inv = sb.root / "nowhere.yml"
            inv.write_text(json.dumps({"all": {"vars": {"lock_timeout": 9},
                                               "hosts": {"localhost": {}}}}))
            os.chmod(inv, 0o644)
        res = s6env.run_tasks(sb, *args, user=sb.user, env=env)
        refusals.append(one_line_error(res, "cannot reach root", "run it as root"))
    assert "--var extra_env" in refusals[0] and "--var hermes_home" not in refusals[0]
    assert "$HERMES_TASKS_INVENTORY" in refusals[-1]
    assert (sorted(os.listdir(sb.scandir)), sorted(os.listdir(sb.home / "profiles"))) == before
    assert not (sb.home / "profiles" / "fay" / "gateway_state.json").exists()
    # root's own values named again are fine (nothing would be dropped)
    tasks(sb, "reconcile", "--check", user=sb.user)
    # --check is answered with root's settings, judged as root: it agrees with the run
    tasks(sb, "reconcile", "--var", 'extra_env={HT_ROOT: "1"}')  # root changes its settings
    root_vars = ["--var", 'extra_env={HT_ROOT: "1"}']
    (sb.home / "profiles" / "erin").mkdir()
    (sb.home / "profiles" / "erin" / "SOUL.md").write_text("soul\n")
    own(sb, sb.home / "profiles" / "erin")
    check = json.loads(tasks(sb, "reconcile", "--check", "--json", *root_vars,
                             user=sb.user).stdout)
    # naming nothing (the shipped inventory, the scandir from the container's variable):
    # still root's settings, so the same answer
    plain = s6env.run_tasks(sb, "reconcile", "--check", "--json", user=sb.user,
                            inventory_vars=False,
                            env={"S6_PROFILE_GATEWAY_SCANDIR": str(sb.scandir)})
    assert plain.returncode == 0, plain.stderr
    did = json.loads(tasks(sb, "reconcile", "--json", *root_vars, user=sb.user).stdout)
    key = [(r["profile"], r["action"], r["result"]) for r in check["results"]]
    assert key == [(r["profile"], r["action"], r["result"]) for r in did["results"]]
    assert ("erin", "registered", "changed") in key
    assert ("bob", "started", "ok") in key  # root's files, judged as root: unchanged
    assert [(r["profile"], r["action"], r["result"])
            for r in json.loads(plain.stdout)["results"]] == key
    reliability_report.record("security.registrar.named_settings", len(refusals) + 2,
                              "each named setting root lacks was one line, exit 1, nothing "
                              "changed; the service user's --check (root's settings) matched "
                              "the registrar's run row for row")
