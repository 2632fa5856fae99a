"""The service user's ids follow the deployment (SPEC §15, hermes-agent's stage-2 hook).

HERMES_UID/HERMES_GID (aliases PUID/PGID, the former winning) remap the image's account at
boot, before anything else, and the volume's entries of the old ids are handed over without
following a link or leaving the volume; every slot and the registrar use the new ids. Each
test remaps an account of its own (created here, removed afterwards), never a shared one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import pwd
import subprocess

import bootsim
import pytest
import s6env
import standin
from s6env import ServiceUser
from test_boot_sim import SCRIPTS, rcs, start_record

_SERIAL = itertools.count()


@contextlib.contextmanager
def own_account(home):
    name = f"hermesremap{os.getpid() % 100000}x{next(_SERIAL)}"
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "-d", str(home),
                    "-s", "/usr/sbin/nologin", name], check=True, capture_output=True)
    try:
        pw = pwd.getpwnam(name)
        yield ServiceUser(name, pw.pw_uid, pw.pw_gid)
    finally:
        # -f: the new uid may be another account's too (-o), which may have processes
        subprocess.run(["userdel", "-f", name], capture_output=True)
        # -f: its gid may be another account's primary gid too (-o); only our entry goes
        subprocess.run(["groupdel", "-f", name], capture_output=True)
        for db in ("/etc/passwd", "/etc/group"):
            with open(db) as fh:
                assert not any(line.startswith(name + ":") for line in fh), f"{name} left in {db}"


@pytest.mark.parametrize("env,ids", [
    ({"PUID": "1000", "PGID": "1000"}, (1000, 1000)),
    ({"HERMES_UID": "99", "HERMES_GID": "100", "PUID": "5", "PGID": "6"}, (99, 100)),
])
def test_ids_follow_the_deployment(root_sandbox, env, ids):
    with own_account(root_sandbox.home) as user, contextlib.ExitStack() as stack:
        sb = dataclasses.replace(root_sandbox, user=user)
        s6env.make_profile(sb.home, "default", {"desired_state": "running"})
        s6env.make_profile(sb.home, "alice", {"desired_state": "running"})
        outside = root_sandbox.root / "outside"  # a root-held path beside the volume
        outside.write_text("not the volume's\n")
        os.chown(outside, user.uid, user.gid)
        os.symlink(outside, sb.home / "profiles" / "alice" / "link")
        s6env.give_tree(sb.home, user)
        # a boot stopped between the remap's two usermods left the account's home pointing
        # away: this boot puts the volume back as its home
        subprocess.run(["usermod", "-d", "/nonexistent", user.name], check=True)
        # another file system mounted inside the volume, holding an entry of the old ids
        mounted = sb.home / "mnt"
        mounted.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mounted)],
                       check=True)
        stack.callback(subprocess.run, ["umount", str(mounted)], check=True)
        (mounted / "kept").write_text("another device\n")
        os.chown(mounted / "kept", user.uid, user.gid)
        with bootsim.Container(sb, env=env) as ctr:
            boot = ctr.boot()
            assert rcs(boot) == [(n, 0) for n in SCRIPTS], boot.console_text()
            assert (f"service user {user.name} remapped from {user.uid}:{user.gid} to "
                    f"{ids[0]}:{ids[1]}") in boot.script("01-hermes-volume").stdout
            pw = pwd.getpwnam(user.name)
            assert (pw.pw_uid, pw.pw_gid, pw.pw_dir) == (*ids, str(sb.home))
            for name in ("default", "alice"):
                st = s6env.wait_up(ctr.slot(f"gateway-{name}"), 10)
                start = start_record(sb, name, st["pid"])
                assert (start["uid"], start["gid"]) == ids, name
                # the gateway writes its own state on the volume as the new ids
                s6env.wait_for(lambda n=name: any(e["event"] == "running" for e in
                               standin.events(sb.home, n, ("running",))), 10,
                               what=f"{name} running")
            for path in (sb.home, sb.home / "gateway_state.json", sb.home / "profiles",
                         sb.home / "profiles" / "alice" / "SOUL.md",
                         sb.home / "profiles" / "alice" / "gateway_state.json",
                         sb.home / "logs" / "container-boot.log"):
                st = os.lstat(path)
                assert (st.st_uid, st.st_gid) == ids, path
            # never through a link, never outside the volume
            assert (os.stat(outside).st_uid, os.stat(outside).st_gid) == (user.uid, user.gid)
            kept = os.lstat(mounted / "kept")
            assert (kept.st_uid, kept.st_gid) == (user.uid, user.gid)
            # the slots' shared control entries and the registrar use the new group
            control = ctr.slot("gateway-alice") / "supervise" / "control"
            assert os.stat(control).st_gid == ids[1]
            s6env.wait_for(lambda: s6env.svstat(ctr.slot(bootsim.REGISTRAR), ("ready",))["ready"],
                           10, what="the registrar's readiness")
            # a second boot with the same ids changes nothing more
            again = ctr.restart()
            assert rcs(again) == [(n, 0) for n in SCRIPTS], again.console_text()
            assert "remapped" not in again.script("01-hermes-volume").stdout


@pytest.mark.parametrize("env,var", [({"PUID": "abc"}, "PUID"), ({"HERMES_GID": "0"}, "HERMES_GID"),
                                     ({"HERMES_UID": "-5"}, "HERMES_UID")])
def test_a_bad_id_fails_the_boot_with_one_line(root_sandbox, env, var):
    with own_account(root_sandbox.home) as user:
        sb = dataclasses.replace(root_sandbox, user=user)
        s6env.make_profile(sb.home, "default", {"desired_state": "running"})
        s6env.give_tree(sb.home, user)
        with bootsim.Container(sb, env=env) as ctr:
            boot = ctr.boot()
            first = boot.script("01-hermes-volume")
            assert first.returncode == 1
            lines = first.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"01-hermes-volume: {var}="), lines
            second = boot.script("02-reconcile-profiles")
            assert second.returncode == 1
            assert second.stderr.splitlines() == [
                line for line in second.stderr.splitlines() if "error" in line][:1]
            assert f"{var}=" in second.stderr and "Traceback" not in second.stderr
            assert boot.slots == []  # no gateway runs with the wrong ids
            assert bootsim.WARNING in boot.console
            pw = pwd.getpwnam(user.name)
            assert (pw.pw_uid, pw.pw_gid) == (user.uid, user.gid)  # left as it was
