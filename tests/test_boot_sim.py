"""The production image's boot, simulated under a real s6 tree (tests/bootsim.py).

The image's own cont-init scripts (docker/cont-init.d, paths mapped into a sandbox) run after
a real s6-svscan, with the image's own ENV as the container environment, then services-up.
"""

from __future__ import annotations

import json
import os
import stat
import time

import bootsim
import pytest
import s6env
import standin
from bootsim import REGISTRAR

SCRIPTS = ["01-hermes-volume", "02-reconcile-profiles"]
UP = ["gateway-default", "gateway-alice", "gateway-carol"]
DOWN = ["gateway-bob", "gateway-dave"]
BROKEN_ENV = {"S6_PROFILE_GATEWAY_SCANDIR": "run/service"}  # not absolute: an inventory error


def make_profile(sb, name, state=None):
    return s6env.make_profile(sb.home, name, state)


def give_volume_to(sb, user):
    s6env.give_tree(sb.home, user)


def populate(sb):
    """default and alice want to run, carol was draining (counts as running), bob stopped,
    dave has no state file, and one directory has an invalid name."""
    make_profile(sb, "default", {"gateway_state": "running"})
    make_profile(sb, "alice", {"desired_state": "running"})
    make_profile(sb, "bob", {"desired_state": "stopped", "gateway_state": "running"})
    make_profile(sb, "carol", {"gateway_state": "draining"})
    make_profile(sb, "dave")
    make_profile(sb, "Bad.Name", {"desired_state": "running"})
    give_volume_to(sb, sb.user)


def start_record(sb, name, pid):
    """The stand-in's "start" record of ``pid`` (it is written just after s6 reports up)."""
    return s6env.wait_for(
        lambda: [e for e in standin.starts(sb.home, name) if e["pid"] == pid], 10,
        what=f"{name}'s stand-in start record for pid {pid}")[0]


def rcs(boot):
    return [(s.name, s.returncode) for s in boot.scripts]


def profile_of(slot):
    return slot.removeprefix("gateway-")


def check_populated_boot(ctr, boot, *, registrar=True):
    """The right gateways are up as the service user, the others registered down."""
    sb = ctr.sb
    assert rcs(boot) == [(n, 0) for n in SCRIPTS], boot.console_text()
    assert not boot.stopped and boot.services_up
    assert bootsim.WARNING not in boot.console
    expected_slots = UP + DOWN + ([REGISTRAR] if registrar else [])
    assert sorted(boot.slots) == sorted(expected_slots)
    reconcile = boot.script("02-reconcile-profiles")
    assert "warning: skipping profile Bad.Name" in reconcile.stderr
    assert "Traceback" not in reconcile.stderr
    status = ctr.wait_all(UP + ([REGISTRAR] if registrar else []), DOWN)
    gateways = {}
    for slot in UP:
        name = profile_of(slot)
        st = status[slot]
        assert st["normallyup"] is True, slot
        start = start_record(sb, name, st["pid"])
        expected_argv = ["gateway", "run", "--replace"]
        if name != "default":
            expected_argv = ["-p", name, *expected_argv]
        assert start["argv"] == expected_argv
        assert start["env"]["HERMES_HOME"] == str(sb.home)
        assert s6env.wait_up(ctr.slot(slot) / "log")["up"] is True
        gateways[name] = start
    for slot in DOWN:
        assert status[slot]["up"] is False and status[slot]["normallyup"] is False, slot
        assert (ctr.slot(slot) / "down").exists()
        assert status[slot]["wantedup"] is False
    return gateways


# --------------------------------------------------------------------------- the simulation


def test_installed_scripts_are_the_images_own_with_only_paths_mapped(root_sandbox):
    ctr = bootsim.Container(root_sandbox)
    installed = sorted(p.name for p in root_sandbox.cont_init_dir.iterdir())
    assert installed == sorted(p.name for p in bootsim.CONT_INIT_SRC.iterdir()) == SCRIPTS
    keys = (*bootsim.PATH_KEYS, bootsim.IMAGE_SERVICE_IDS, "service_user=")
    for name in SCRIPTS:
        src = (bootsim.CONT_INIT_SRC / name).read_text().splitlines()
        dst = (root_sandbox.cont_init_dir / name).read_text().splitlines()
        assert len(src) == len(dst)
        for a, b in zip(src, dst):
            if not any(k in a for k in keys):
                assert a == b
        assert stat.S_IMODE((root_sandbox.cont_init_dir / name).stat().st_mode) == 0o755
    assert dst[0] == f"#!{root_sandbox.cmd_dir}/with-contenv sh"
    # The container environment is the image's own ENV, paths mapped, without PATH (stage 0
    # deletes it); stage 2 and the tree get S6_GLOBAL_PATH, which must reach the venv.
    env = {p.name: p.read_text() for p in root_sandbox.env_dir.iterdir()}
    assert env["HERMES_HOME"] == str(root_sandbox.home)
    assert env["S6_BEHAVIOUR_IF_STAGE2_FAILS"] == str(bootsim.dockerfile_stage2_behaviour())
    assert env["HERMES_TASKS_INVENTORY"] == str(ctr.inventory_path)
    assert "PATH" not in env
    venv_bin = f"{root_sandbox.root}/opt/hermes-tasks/venv/bin"
    assert ctr.path.split(":")[:2] == [str(root_sandbox.cmd_dir), venv_bin]
    # The inventory is the shipped one: container paths mapped, `hermes` found by name.
    assert ctr.inventory["hermes_bin"] == "hermes"
    assert ctr.inventory["s6_bin_dir"] == str(root_sandbox.cmd_dir)
    assert ctr.inventory["hermes_home"] == str(root_sandbox.home)
    assert ctr.inventory["scandir"] == str(root_sandbox.scandir)
    assert ctr.inventory["service_uid"] == root_sandbox.user.uid


# --------------------------------------------------------------------------- boots


def test_first_boot_of_an_empty_volume(root_sandbox):
    sb, user = root_sandbox, root_sandbox.user
    os.chown(sb.home, 0, 0)  # a fresh bind mount: empty and root's
    with bootsim.Container(sb) as ctr:
        boot = ctr.boot()
        assert rcs(boot) == [(n, 0) for n in SCRIPTS], boot.console_text()
        assert not boot.stopped and boot.services_up and bootsim.WARNING not in boot.console
        assert f"cont-init: info: /etc/cont-init.d/{SCRIPTS[-1]} exited 0" in boot.console
        # 01 handed the volume to the service user; reconcile's files are that user's too
        st = os.stat(sb.home)
        assert (st.st_uid, st.st_gid) == (user.uid, user.gid)
        assert "gave fresh volume" in boot.script("01-hermes-volume").stdout
        assert sorted(boot.slots) == ["gateway-default", REGISTRAR]
        status = ctr.wait_all([REGISTRAR], ["gateway-default"])
        # the default slot is registered down: no state file, so nothing auto-starts
        assert status["gateway-default"] == {"up": False, "wantedup": False,
                                             "normallyup": False, "pid": -1}
        assert (ctr.slot("gateway-default") / "down").exists()
        # the registrar is up, as root, and came up without re-running reconcile
        s6env.wait_for(lambda: s6env.svstat(ctr.slot(REGISTRAR), ("ready",))["ready"], 10,
                       what="the registrar's readiness")
        assert bootsim.proc_uid(s6env.svstat(ctr.slot(REGISTRAR))["pid"]) == 0
        assert not (ctr.slot(REGISTRAR) / "data" / "published").exists()
        assert not (ctr.slot(REGISTRAR) / "data" / "result.json").exists()
        boot_log = (sb.home / "logs" / "container-boot.log").read_text().splitlines()
        assert [line.split(" ", 1)[1] for line in boot_log] == [
            "profile=default prior_state=None action=registered result=changed"]
        for path in (sb.home / "logs", sb.home / "logs" / "container-boot.log"):
            assert os.stat(path).st_uid == user.uid, path
        # root owns what root runs; the scandir and s6-svscan's control stay root's
        for path in (sb.scandir, sb.scandir / ".s6-svscan", sb.scandir / ".s6-svscan" / "control",
                     ctr.slot(REGISTRAR), ctr.slot(REGISTRAR) / "run",
                     ctr.slot("gateway-default"), ctr.slot("gateway-default") / "run",
                     ctr.slot("gateway-default") / "log" / "run"):
            st = os.lstat(path)
            assert st.st_uid == 0 and not st.st_mode & 0o022, path
        time.sleep(0.3)
        assert standin.starts(sb.home) == []


def test_boot_with_running_and_stopped_profiles(root_sandbox):
    sb = root_sandbox
    populate(sb)
    with bootsim.Container(sb) as ctr:
        boot = ctr.boot()
        gateways = check_populated_boot(ctr, boot)
        for name, start in gateways.items():
            assert (start["uid"], start["gid"]) == (sb.user.uid, sb.user.gid), name
        for name in ("bob", "dave"):
            assert standin.starts(sb.home, name) == []
        rows = [line.split(" ", 1)[1] for line in
                (sb.home / "logs" / "container-boot.log").read_text().splitlines()]
        assert rows == [
            "profile=default prior_state=running action=started result=changed",
            "profile=alice prior_state=running action=started result=changed",
            "profile=bob prior_state=stopped action=registered result=changed",
            "profile=carol prior_state=draining action=started result=changed",
            "profile=dave prior_state=None action=registered result=changed",
            "profile=Bad.Name prior_state=None action=skipped result=skipped"]
        # the volume was already the service user's: 01 left it alone, quietly
        assert boot.script("01-hermes-volume").stdout == ""
        assert boot.script("01-hermes-volume").stderr == ""


def test_health_check_fails_before_the_gateways_are_ready_and_passes_after(root_sandbox):
    """The image's HEALTHCHECK command, as Docker runs it, during and after a boot."""
    sb = root_sandbox
    populate(sb)
    standin.write_behaviour(sb.home, profiles={"alice": {"running_delay": 4}})
    give_volume_to(sb, sb.user)
    with bootsim.Container(sb) as ctr:
        before = ctr.health()  # the stand-in for alice takes 4 s to say running
        check_populated_boot(ctr, ctr.boots[-1] if ctr.boots else ctr.boot())
        res = ctr.health()
        assert "Traceback" not in res.stderr + before.stderr
        assert before.returncode == 1, (before.stdout, before.stderr)
        assert res.returncode == 1 and "gateway-alice: starting" in res.stderr, res.stderr
        for slot in UP:  # the same "ready" as --wait
            s6env.wait_for(lambda slot=slot: ctr.exec_tasks(
                "gateway.status", "--json", "-p", profile_of(slot)).stdout.count(
                '"ready": true'), 20, what=f"{slot} ready")
        res = ctr.health()
        assert (res.returncode, res.stdout) == (0, ""), res.stderr
        assert "unhealthy" not in res.stderr  # only the warning about Bad.Name


def test_second_boot_after_a_restart_gives_the_same_result(root_sandbox):
    sb = root_sandbox
    populate(sb)
    with bootsim.Container(sb) as ctr:
        first = check_populated_boot(ctr, ctr.boot())
        first_pids = [g["pid"] for g in first.values()]

        # docker stop: s6-svscanctl -t takes the whole tree down, nothing is left to kill
        assert ctr.shutdown() == []
        assert not ctr.supervisor.alive()
        bootsim.wait_gone(first_pids)
        ctr.wipe_run()  # a new start gets a fresh /run
        assert list(sb.scandir.iterdir()) == []
        # what the previous container's gateways left behind on the volume
        stale = []
        for name in ("default", "alice", "bob"):
            d = sb.home if name == "default" else sb.home / "profiles" / name
            for f in ("gateway.pid", "processes.json"):
                (d / f).write_text("12345\n" if f == "gateway.pid" else "{}\n")
                os.chown(d / f, sb.user.uid, sb.user.gid)
                stale.append(d / f)

        second_boot = ctr.boot()
        second = check_populated_boot(ctr, second_boot)
        assert sorted(second) == sorted(first)
        assert not {g["pid"] for g in second.values()} & set(first_pids)
        for name, start in second.items():
            assert start["uid"] == sb.user.uid, name
        assert [p for p in stale if os.path.lexists(p)] == []
        for name in ("bob", "dave"):
            assert standin.starts(sb.home, name) == []
        rows = [line.split(" ", 1)[1] for line in
                (sb.home / "logs" / "container-boot.log").read_text().splitlines()]
        # carol's gateway ran meanwhile and rewrote its own state: draining is now running
        first_rows = [r.replace("prior_state=draining", "prior_state=running") for r in rows[:6]]
        assert len(rows) == 12 and first_rows == rows[6:]


# --------------------------------------------------------------------------- stage 2 failures


def test_the_image_chooses_to_warn_when_a_cont_init_script_fails():
    """The Dockerfile's deliberate S6_BEHAVIOUR_IF_STAGE2_FAILS, which the simulation applies."""
    assert bootsim.dockerfile_stage2_behaviour() == 1
    assert bootsim.image_env()["S6_CMD_WAIT_FOR_SERVICES_MAXTIME"] == "0"


def broken_boot(sb, behaviour):
    make_profile(sb, "alice", {"desired_state": "running"})
    give_volume_to(sb, sb.user)
    env = dict(BROKEN_ENV)
    if behaviour is not None:
        env["S6_BEHAVIOUR_IF_STAGE2_FAILS"] = str(behaviour)
    ctr = bootsim.Container(sb, env=env)
    boot = ctr.boot()
    assert rcs(boot) == [("01-hermes-volume", 0), ("02-reconcile-profiles", 1)]
    err = boot.script("02-reconcile-profiles").stderr
    assert "hermes-tasks: error:" in err and "'scandir' must be an absolute path" in err, err
    assert "Traceback" not in err
    assert "cont-init: info: /etc/cont-init.d/02-reconcile-profiles exited 1" in boot.console
    return ctr, boot


def test_cont_init_failure_with_the_images_choice_warns_and_boot_goes_on(root_sandbox):
    sb = root_sandbox
    ctr, boot = broken_boot(sb, None)  # S6_BEHAVIOUR_IF_STAGE2_FAILS as the Dockerfile sets it
    with ctr:
        assert boot.behaviour == 1
        assert boot.console.count(bootsim.WARNING) == 1
        assert boot.console.index(bootsim.WARNING) > boot.console.index(
            "cont-init: info: /etc/cont-init.d/02-reconcile-profiles exited 1")
        assert bootsim.FATAL not in boot.console
        assert not boot.stopped and boot.services_up and ctr.supervisor.alive()
        # The container stays up, so the operator can repair it with `docker exec`.
        fixed = ctr.exec_tasks("reconcile", env={"S6_PROFILE_GATEWAY_SCANDIR": ""})
        assert fixed.returncode == 0, fixed.stderr
        st = s6env.wait_up(ctr.slot("gateway-alice"))
        assert start_record(sb, "alice", st["pid"])["uid"] == sb.user.uid


def test_cont_init_failure_with_behaviour_2_stops_the_container(root_sandbox):
    sb = root_sandbox
    ctr, boot = broken_boot(sb, 2)
    with ctr:
        assert boot.behaviour == 2
        assert boot.stopped and not boot.services_up
        assert boot.console[-1] == bootsim.FATAL
        assert boot.console.count(bootsim.WARNING) == 1
        assert not ctr.supervisor.alive()
        assert ctr.supervisor.proc.returncode is not None
        assert ctr.killed_at_stop == []  # s6-svscanctl -t took everything down
        assert s6env.pids_in(sb.root) == []


def test_cont_init_failure_with_behaviour_0_is_silent(root_sandbox):
    ctr, boot = broken_boot(root_sandbox, 0)
    with ctr:
        assert boot.behaviour == 0
        assert bootsim.WARNING not in boot.console and bootsim.FATAL not in boot.console
        assert not boot.stopped and boot.services_up and ctr.supervisor.alive()


def test_gateways_need_the_images_global_path(root_sandbox):
    """Without S6_GLOBAL_PATH the tree gets /command:/usr/bin:/bin and `hermes` is not found:
    reconcile's preflight says so and publishes nothing (no gateway crash-looping)."""
    sb = root_sandbox
    make_profile(sb, "alice", {"desired_state": "running"})
    give_volume_to(sb, sb.user)
    with bootsim.Container(sb, env={"S6_GLOBAL_PATH": ""}) as ctr:
        assert ctr.path == f"{sb.cmd_dir}:/usr/bin:/bin"
        boot = ctr.boot()
        assert rcs(boot) == [(SCRIPTS[0], 0), (SCRIPTS[1], 1)], boot.console_text()
        assert any("preflight" in line and "hermes_bin 'hermes'" in line
                   for line in boot.console), boot.console_text()
        assert not ctr.slot("gateway-alice").exists()
        assert standin.starts(sb.home, "alice") == []


# --------------------------------------------------------------------------- privileges


def test_service_user_drives_gateways_but_cannot_touch_the_supervisor(root_sandbox):
    sb, user = root_sandbox, root_sandbox.user
    populate(sb)
    with bootsim.Container(sb) as ctr:
        check_populated_boot(ctr, ctr.boot())

        # docker exec -u hermes <ctr> hermes-tasks gateway.stop / gateway.start
        res = ctr.exec_tasks("gateway.stop", "-p", "alice", "--wait", user=user)
        assert res.returncode == 0, res.stderr
        assert s6env.svstat(ctr.slot("gateway-alice"))["up"] is False
        state = json.loads((sb.home / "profiles" / "alice" / "gateway_state.json").read_text())
        assert state["desired_state"] == "stopped"
        res = ctr.exec_tasks("gateway.start", "-p", "bob", "--wait", user=user)
        assert res.returncode == 0, res.stderr
        bob = s6env.wait_up(ctr.slot("gateway-bob"))
        assert start_record(sb, "bob", bob["pid"])["uid"] == user.uid

        # docker exec -u hermes <ctr> hermes-tasks profile.create erin --start: the slot is
        # published by the root registrar, and is root's
        res = ctr.exec_tasks("profile.create", "erin", "--start", user=user)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "gateway-erin" in res.stdout
        erin = s6env.wait_up(ctr.slot("gateway-erin"))
        assert start_record(sb, "erin", erin["pid"])["uid"] == user.uid
        assert os.lstat(ctr.slot("gateway-erin") / "run").st_uid == 0
        assert os.stat(sb.home / "profiles" / "erin" / "SOUL.md").st_uid == user.uid
        assert "changed: [gateway-erin] => started" in res.stdout  # root's row, printed

        # ... but cannot halt (or even rescan) the supervision tree
        svscanctl = str(sb.cmd_dir / "s6-svscanctl")
        for flag in ("-t", "-an"):
            res = ctr.run_as(user, [svscanctl, flag, str(sb.scandir)])
            assert res.returncode != 0, flag
        time.sleep(0.3)
        assert ctr.supervisor.alive()
        assert s6env.svstat(ctr.slot("gateway-default"))["up"] is True

        # ... nor change what root runs, in any slot, nor add a slot
        slots = [d for d in sb.scandir.iterdir() if not d.name.startswith(".")]
        assert len(slots) == 7
        for slot in slots:
            for rel in ("run", "finish", "log/run", "data/inventory.yml"):
                path = slot / rel
                if not path.exists():
                    continue
                before = path.read_bytes()
                res = ctr.run_as(user, ["sh", "-c", 'printf "exit 0\\n" >> "$1"', "sh",
                                        str(path)])
                assert res.returncode != 0 and "Permission denied" in res.stderr, path
                assert path.read_bytes() == before
            res = ctr.run_as(user, ["mv", str(slot / "run"), str(slot / "run.old")])
            assert res.returncode != 0, slot
        res = ctr.run_as(user, ["mkdir", str(sb.scandir / "gateway-evil")])
        assert res.returncode != 0 and not (sb.scandir / "gateway-evil").exists()


def test_a_container_run_entirely_as_an_unprivileged_user_boots(root_sandbox):
    """docker run --user: svscan, cont-init and every service run as one user."""
    sb, user = root_sandbox, root_sandbox.user
    populate(sb)
    # The shipped inventory's service account need not exist: nothing switches users.
    ctr = bootsim.Container(sb, unprivileged=True, inventory={
        "service_user": "hermes", "service_uid": 10000, "service_gid": 10000})
    with ctr:
        boot = ctr.boot()
        assert bootsim.proc_uid(ctr.supervisor.pid) == user.uid
        gateways = check_populated_boot(ctr, boot, registrar=False)
        for name, start in gateways.items():
            assert (start["uid"], start["gid"]) == (user.uid, user.gid), name
        # 01 has nothing to hand over when not root
        assert boot.script("01-hermes-volume").stdout == ""
        assert boot.script("01-hermes-volume").stderr == ""
        assert os.stat(sb.home).st_uid == user.uid
        for slot in UP + DOWN:
            assert os.lstat(ctr.slot(slot) / "run").st_uid == user.uid
        # the one user changes slots itself (no registrar needed)
        res = ctr.exec_tasks("profile.create", "erin", "--start", user=user)
        assert res.returncode == 0, res.stdout + res.stderr
        erin = s6env.wait_up(ctr.slot("gateway-erin"))
        assert start_record(sb, "erin", erin["pid"])["uid"] == user.uid


# --------------------------------------------------------------------------- the volume script


@pytest.mark.parametrize("case", ["symlink", "user-held-parent", "foreign-owner"])
def test_volume_script_never_takes_over_what_it_should_not(root_sandbox, case):
    sb, user = root_sandbox, root_sandbox.user
    env = {}
    if case == "symlink":
        target = sb.root / "elsewhere"
        target.mkdir(mode=0o755)
        sb.home.rmdir()
        sb.home.symlink_to(target)
        watched, expect = target, "not a plain root-held directory path"
    elif case == "user-held-parent":
        # root's directory inside a directory the user controls (and could swap)
        watched = sb.home / "nested"
        watched.mkdir(mode=0o755)
        env["HERMES_HOME"] = str(watched)
        expect = "not a plain root-held directory path"
    else:
        os.chown(sb.home, 4242, 4242)
        watched, expect = sb.home, "belongs to uid:gid 4242:4242"
    before = os.stat(watched)
    with bootsim.Container(sb, env=env) as ctr:
        boot = ctr.boot()
        volume = boot.script("01-hermes-volume")
        assert volume.returncode == 0
        assert expect in volume.stderr, volume.stderr
        after = os.stat(watched)
        assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
        assert after.st_uid != user.uid
