"""Least privilege (issue 6.5, SPEC §10): root treats the volume as hostile.

The service user owns the volume, so it can plant symlinks (and, where the kernel allows,
hard links) anywhere in it. Here they point outside the volume, at root-owned files holding
a secret; root then runs every task. Nothing outside may be read into any output, changed,
chowned or deleted. And as the service user: no file root executes can be changed, and the
supervisor cannot be halted, while gateways can still be controlled as designed.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import reliability_kit as kit
import reliability_report
import s6env

CASES = {
    "security.symlink.profile_dir": "profiles/evil -> a directory outside with SOUL.md, a "
                                    "running state and pid files",
    "security.symlink.profiles": "profiles -> a directory outside",
    "security.symlink.logs": "logs -> a directory outside",
    "security.symlink.boot_log": "logs/container-boot.log -> a root-owned file outside",
    "security.hardlink.boot_log": "logs/container-boot.log hard-linked to a root-owned file",
    "security.symlink.logs_gateways": "logs/gateways -> a root-owned directory outside",
    "security.symlink.pid_files": "gateway.pid / processes.json -> files and dirs outside",
    "security.symlink.state_file": "gateway_state.json -> a root-only secret outside",
    "security.symlink.soul": "SOUL.md -> a root-only secret outside",
    "security.symlink.trash": ".trash -> a directory outside, then profile.delete",
    "security.user.cannot_change_root_files": "as the service user: write, replace or create "
                                              "any file root executes or reads to act",
    "security.user.cannot_halt_supervisor": "as the service user: s6-svscanctl -t / -a",
    "security.user.can_control_gateways": "as the service user: s6-svc/s6-svstat and "
                                          "gateway.stop/start --wait on a gateway (the allowed "
                                          "part), but no s6-svc -w… (event/ is root's)",
}


class Outside:
    """Root-owned files and directories outside the volume, with a secret to leak."""

    def __init__(self, root: Path):
        self.root = root / "outside"
        self.root.mkdir()
        self.secret = "TOPSECRET-" + secrets.token_hex(8)
        (self.root / "secret.json").write_text(json.dumps({"desired_state": self.secret,
                                                           "gateway_state": self.secret}))
        os.chmod(self.root / "secret.json", 0o600)
        (self.root / "victim.log").write_text(f"root's own log {self.secret}\n")
        (self.root / "dir").mkdir()
        (self.root / "dir" / "keep").write_text(self.secret)
        (self.root / "trash").mkdir()
        evil = self.root / "evil-profile"
        evil.mkdir()
        (evil / "SOUL.md").write_text(self.secret)
        (evil / "gateway_state.json").write_text('{"desired_state": "running"}')
        (evil / "gateway.pid").write_text("1\n")
        profiles = self.root / "profiles-target" / "sneaky"
        profiles.mkdir(parents=True)
        (profiles / "SOUL.md").write_text(self.secret)
        (profiles / "gateway_state.json").write_text('{"desired_state": "running"}')
        self.before = self.state()

    def state(self) -> dict:
        out = {}
        for dirpath, dirs, files in os.walk(self.root):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirs + files)]:
                st = os.lstat(name)
                data = Path(name).read_bytes() if stat.S_ISREG(st.st_mode) else b""
                out[name] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_nlink, data)
        return out

    def assert_untouched(self):
        assert self.state() == self.before


def leaks(sb: s6env.Sandbox, secret: str, outputs: list) -> list[str]:
    """Where the secret shows up: task outputs, anything under the volume or the scandir."""
    found = [f"output of {r.args[3:5]}" for r in outputs if secret in r.stdout + r.stderr]
    for base in (sb.home, sb.scandir):
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                p = Path(dirpath) / f
                if p.is_symlink() or not p.is_file():
                    continue
                if secret.encode() in p.read_bytes():
                    found.append(str(p))
    return found


def run_all(sb: s6env.Sandbox, sup: s6env.Supervisor) -> list:
    """Every task root may run at boot or later, on a volume full of traps."""
    outputs = [s6env.run_tasks(sb, "reconcile")]
    sup.rescan()
    for args in (["reconcile", "--json"], ["gateway.status", "--json"],
                 ["gateway.start", "-p", "alice", "--wait"], ["gateway.restart", "-p", "alice"],
                 ["gateway.stop", "-p", "alice", "--wait"], ["gateway.start", "-p", "evil"],
                 ["gateway.stop", "-p", "bob"],
                 ["gateway.status", "-p", "alice"], ["slot.list"],
                 ["profile.create", "carol"], ["profile.delete", "carol"], ["reconcile"]):
        res = s6env.run_tasks(sb, *args)
        assert "Traceback" not in res.stderr, (args, res.stderr)
        outputs.append(res)
    return outputs


def test_symlinks_and_hardlinks_planted_on_the_volume(root_sandbox, supervisor):
    sb, sup = root_sandbox, supervisor
    out = Outside(sb.root)
    alice = kit.write_profile(sb.home, "alice", {"desired_state": "running"}, user=sb.user)
    bob = kit.write_profile(sb.home, "bob", {"desired_state": "stopped"}, user=sb.user)
    # traps, each planted as the service user would (then owned by it)
    (sb.home / "profiles" / "evil").symlink_to(out.root / "evil-profile")
    (alice / "gateway.pid").symlink_to(out.root / "victim.log")
    (alice / "processes.json").symlink_to(out.root / "dir")
    (bob / "gateway_state.json").unlink()
    (bob / "gateway_state.json").symlink_to(out.root / "secret.json")
    dave = sb.home / "profiles" / "dave"
    dave.mkdir()
    (dave / "SOUL.md").symlink_to(out.root / "secret.json")
    logs = sb.home / "logs"
    logs.mkdir()
    (logs / "container-boot.log").symlink_to(out.root / "victim.log")
    (logs / "gateways").symlink_to(out.root / "dir")
    (sb.home / ".trash").symlink_to(out.root / "trash")
    kit.chown_tree(sb.home, sb.user)
    outputs = run_all(sb, sup)
    out.assert_untouched()
    assert leaks(sb, out.secret, outputs) == []
    # the traps were handled, not followed
    assert (logs / "container-boot.log").is_symlink()  # never replaced, never appended through
    assert any("container-boot.log" in r.stderr and "warning" in r.stderr for r in outputs)
    assert not os.path.lexists(alice / "gateway.pid")  # the link itself went (stale file)
    assert not os.path.lexists(alice / "processes.json")
    assert not sb.slot("evil").exists() and not sb.slot("dave").exists()
    start_evil = next(r for r in outputs if r.args[3:5] == ["gateway.start", "-p"]
                      and "evil" in r.args)
    assert start_evil.returncode == 1 and "no profile 'evil'" in start_evil.stderr
    delete = next(r for r in outputs if r.args[3] == "profile.delete")
    assert delete.returncode == 1 and ".trash" in delete.stderr  # refused, not followed
    assert (sb.home / "profiles" / "carol" / "SOUL.md").exists()  # nothing lost either
    # bob's linked state was never read: no prior state, and the secret is nowhere
    rec = json.loads(next(r for r in outputs if r.args[3:5] == ["reconcile", "--json"]).stdout)
    assert {r["profile"]: r["prior_state"] for r in rec["results"]}["bob"] is None
    assert any("bob/gateway_state.json: is a symlink, not followed" in r.stderr for r in outputs)
    # recording bob's intent replaced the link (kept aside), never wrote through it
    assert json.loads((bob / "gateway_state.json").read_text())["desired_state"] == "stopped"
    assert (bob / "gateway_state.json.corrupt").is_symlink()
    for case, what in (("security.symlink.profile_dir", "skipped, never followed"),
                       ("security.symlink.boot_log", "one warning per run, nothing appended"),
                       ("security.symlink.logs_gateways", "root never touched it (the logger "
                                                          "makes it as the service user)"),
                       ("security.symlink.pid_files", "the links were removed, never followed"),
                       ("security.symlink.state_file", "never read: no prior state"),
                       ("security.symlink.soul", "skipped, never read"),
                       ("security.symlink.trash", "profile.delete refused with one line; the "
                                                  "profile stayed")):
        reliability_report.record(case, len(outputs),
                                  f"{what}; nothing outside read into output, changed, chowned "
                                  "or deleted", tasks=len(outputs))


def test_symlinked_logs_and_profiles_dirs(root_sandbox, supervisor):
    sb, sup = root_sandbox, supervisor
    out = Outside(sb.root)
    (sb.home / "logs").symlink_to(out.root / "dir")
    (sb.home / "profiles").symlink_to(out.root / "profiles-target")
    os.lchown(sb.home / "logs", sb.user.uid, sb.user.gid)
    os.lchown(sb.home / "profiles", sb.user.uid, sb.user.gid)
    outputs = [s6env.run_tasks(sb, "reconcile", "--json")]
    sup.rescan()
    for args in (["gateway.start", "-p", "sneaky"], ["profile.create", "zed"],
                 ["gateway.stop"], ["reconcile"]):
        res = s6env.run_tasks(sb, *args)
        assert "Traceback" not in res.stderr
        outputs.append(res)
    out.assert_untouched()
    assert leaks(sb, out.secret, outputs) == []
    doc = json.loads(outputs[0].stdout)
    assert [r["profile"] for r in doc["results"]] == ["default"]
    assert outputs[1].returncode == 1 and outputs[2].returncode == 1
    assert not sb.slot("sneaky").exists() and not sb.slot("zed").exists()
    for case in ("security.symlink.logs", "security.symlink.profiles"):
        reliability_report.record(case, len(outputs),
                                  "warned and not followed: no profile read through it, no boot "
                                  "log written through it, profile.create refused with one line")


def test_hard_linked_boot_log_is_not_appended(root_sandbox):
    """Where fs.protected_hardlinks is off, a user can hard-link a root file into the volume."""
    sb = root_sandbox
    out = Outside(sb.root)
    (sb.home / "logs").mkdir()
    os.chown(sb.home / "logs", sb.user.uid, sb.user.gid)
    os.link(out.root / "victim.log", sb.home / "logs" / "container-boot.log")
    out.before = out.state()  # the link count changed by planting; now freeze
    res = s6env.run_tasks(sb, "reconcile")
    assert res.returncode == 0 and "had 2 hard links" in res.stderr, res.stderr
    out.assert_untouched()
    log = sb.home / "logs" / "container-boot.log"
    assert log.stat().st_nlink == 1 and log.stat().st_uid == sb.user.uid
    assert len(log.read_text().splitlines()) == 1  # gateway-default's line, in a new file
    assert os.path.samefile(sb.home / "logs" / "container-boot.log.1", out.root / "victim.log")
    reliability_report.record("security.hardlink.boot_log", 1,
                              "one warning; the shared inode was moved aside to .1 untouched, "
                              "the lines went to a new file owned by the service user")


ROOT_READS = ("run", "finish", "log/run", "type", "notification-fd", "data/inventory.yml",
              "down")

PROBE = r"""
import json, os, sys
paths = json.loads(sys.argv[1])
changed = []
for p in paths:
    try:
        if os.path.isdir(p) and not os.path.islink(p):
            fd = os.open(os.path.join(p, ".probe"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.close(fd)
        else:
            with open(p, "r+b"):
                pass
        changed.append(p)
    except OSError:
        pass
    try:
        os.rename(p, p + ".moved")
        changed.append("renamed " + p)
    except OSError:
        pass
print(json.dumps(changed))
"""


def test_service_user_cannot_change_what_root_runs(root_sandbox, supervisor):
    sb, sup = root_sandbox, supervisor
    kit.write_profile(sb.home, "alice", {"desired_state": "running"}, user=sb.user)
    res = s6env.run_tasks(sb, "reconcile")
    assert res.returncode == 0, res.stderr
    sup.rescan()
    s6env.wait_up(sb.slot("alice"))
    targets = [str(sb.scandir)]
    for slot in sorted(sb.scandir.iterdir()):
        if slot.name.startswith("."):
            continue
        targets.append(str(slot))
        for dirpath, _dirs, files in os.walk(slot):
            rel = os.path.relpath(dirpath, slot)
            if rel.split("/")[0] in ("supervise", "event") or "/supervise" in rel or \
                    "/event" in rel:
                continue  # the shared control entries (SPEC §5) and s6's own status
            targets.append(dirpath)
            targets += [os.path.join(dirpath, f) for f in files]
    # what root executes outside the scandir: the command dir, the interpreter, the package
    import hermes_tasks

    pkg = Path(hermes_tasks.__file__).resolve().parent
    targets += [str(sb.cmd_dir), *(str(p) for p in sb.cmd_dir.iterdir()),
                str(Path(sys.executable).resolve()), str(pkg),
                *(str(p) for p in pkg.rglob("*.py"))]
    assert any(t.endswith("/run") for t in targets)
    python, extra = s6env.python_for(sb.user)
    probe = subprocess.run([python, "-c", PROBE, json.dumps(targets)], capture_output=True,
                           text=True, user=sb.user.uid, group=sb.user.gid, extra_groups=[],
                           timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == []
    # and root's files are unchanged after the attempt
    assert s6env.run_tasks(sb, "reconcile", "--check", "--json").returncode == 0
    reliability_report.record(
        "security.user.cannot_change_root_files", len(targets),
        "every open-for-write, create and rename as the service user failed (EACCES); "
        "reconcile --check afterwards: nothing to change", paths=len(targets))


def as_user(sb, argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, user=sb.user.uid,
                          group=sb.user.gid, extra_groups=[], timeout=30, **kw)


def test_service_user_cannot_halt_the_supervisor_but_can_control_gateways(root_sandbox,
                                                                         supervisor):
    sb, sup = root_sandbox, supervisor
    kit.write_profile(sb.home, "alice", {"desired_state": "running"}, user=sb.user)
    assert s6env.run_tasks(sb, "reconcile").returncode == 0
    sup.rescan()
    s6env.wait_up(sb.slot("alice"))
    for flag in ("-t", "-a", "-an", "-q", "-b"):
        res = as_user(sb, [str(s6env.S6_BIN / "s6-svscanctl"), flag, str(sb.scandir)])
        assert res.returncode == 111 and "ermission denied" in res.stderr, (flag, res)
    assert sup.alive()
    assert s6env.svstat(sb.slot("alice"))["up"] is True
    reliability_report.record("security.user.cannot_halt_supervisor", 5,
                              "s6-svscanctl -t/-a/-an/-q/-b exited 111 'Permission denied'; "
                              "s6-svscan and the gateways kept running")
    # the allowed part: control and query one's gateways, through the shared FIFOs
    svc = str(s6env.S6_BIN / "s6-svc")
    # plain commands and the status are the service user's; event subscriptions are not
    # (event/ is root's alone, SPEC §5): it waits by polling the status
    wait = as_user(sb, [svc, "-wD", "-T5000", "-d", str(sb.slot("alice"))])
    assert wait.returncode == 111 and "unable to subscribe" in wait.stderr, wait
    assert as_user(sb, [svc, "-d", str(sb.slot("alice"))]).returncode == 0
    s6env.wait_down(sb.slot("alice"))
    assert as_user(sb, [svc, "-u", str(sb.slot("alice"))]).returncode == 0
    s6env.wait_up(sb.slot("alice"))
    stop = s6env.run_tasks(sb, "gateway.stop", "-p", "alice", "--wait", user=sb.user)
    assert stop.returncode == 0, stop.stderr
    start = s6env.run_tasks(sb, "gateway.start", "-p", "alice", "--wait", user=sb.user)
    assert start.returncode == 0, start.stderr
    assert s6env.svstat(sb.slot("alice"))["up"] is True
    reliability_report.record("security.user.can_control_gateways", 4,
                              "s6-svc -d/-u and gateway.stop/start --wait (polling the status) "
                              "worked as the service user; s6-svc -wD was refused (exit 111)")
