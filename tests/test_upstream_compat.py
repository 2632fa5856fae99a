"""Smaller behaviours hermes-agent's users rely on (SPEC §15, issue 20 items 6 and 7)."""

from __future__ import annotations

import json
import os

import s6env


def vars_without(sb, key: str) -> list[str]:
    args = s6env.inventory_args(sb)
    out = []
    for flag, value in zip(args[::2], args[1::2]):
        if not value.startswith(key + "="):
            out += [flag, value]
    return out


def tasks_without_scandir(sb, *args):
    missing = sb.root / "no-such-scandir"
    return s6env.run_tasks(sb, None, argv=["python", "-m", "hermes_tasks", *args,
                                           *vars_without(sb, "scandir"), "--var",
                                           f"scandir={missing}"])


def state(path):
    return json.loads((path / "gateway_state.json").read_text())


def test_default_profile_tasks_inside_a_named_gateway_act_on_the_root(sandbox, supervisor):
    """HERMES_HOME=<root>/profiles/coder (a named gateway's environment): default is <root>."""
    sb = sandbox
    s6env.make_profile(sb.home, "default", {"desired_state": "stopped"})
    s6env.make_profile(sb.home, "coder", {"desired_state": "running"})
    assert s6env.run_tasks(sb, "reconcile").returncode == 0
    env = {"HERMES_HOME": str(sb.home / "profiles" / "coder")}
    res = s6env.run_tasks(sb, None, env=env, argv=[
        "python", "-m", "hermes_tasks", "gateway.start", "--wait", *vars_without(sb, "hermes_home")])
    assert res.returncode == 0, res.stdout + res.stderr
    assert state(sb.home)["desired_state"] == "running"
    coder = state(sb.home / "profiles" / "coder")
    assert coder == {"desired_state": "running", **{k: v for k, v in coder.items()
                                                    if k != "desired_state"}}
    assert not (sb.home / "profiles" / "coder" / "profiles").exists()
    assert s6env.svstat(sb.slot("default"))["up"] is True


def test_a_failed_rescan_removes_the_slots_it_just_published(sandbox, supervisor):
    sb = sandbox
    s6env.make_profile(sb.home, "default", {"desired_state": "running"})
    s6env.make_profile(sb.home, "alice", {"desired_state": "running"})
    ctl = sb.cmd_dir / "s6-svscanctl"
    ctl.unlink()
    ctl.write_text("#!/bin/sh\necho 's6-svscanctl: fatal: unable to control: Broken pipe' >&2\n"
                   "exit 111\n")
    ctl.chmod(0o755)
    res = s6env.run_tasks(sb, "reconcile", "--json")
    assert res.returncode == 2, res.stdout + res.stderr
    rows = {r["slot"]: r for r in json.loads(res.stdout)["results"]}
    for slot in ("gateway-default", "gateway-alice"):
        assert rows[slot]["result"] == "failed"
        assert "was removed again: the rescan failed" in rows[slot]["message"], rows[slot]
    left = [p.name for p in sb.scandir.iterdir() if "gateway" in p.name]
    assert left == [], left  # no unsupervised orphan, no litter
    assert "Traceback" not in res.stderr


def test_profile_create_without_a_scandir_creates_the_profile_and_warns(sandbox):
    sb = sandbox
    missing = sb.root / "no-such-scandir"
    res = tasks_without_scandir(sb, "profile.create", "alice")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (sb.home / "profiles" / "alice" / "SOUL.md").is_file()
    assert "warning: no gateway slot registered for alice" in res.stderr
    assert "changed: [profiles/alice] => registered: created profiles/alice" in res.stdout
    assert not missing.exists()
    again = tasks_without_scandir(sb, "profile.create", "alice")
    assert again.returncode == 0 and "ok: [profiles/alice]" in again.stdout


def test_slot_list_without_a_scandir_is_an_empty_list(sandbox):
    res = tasks_without_scandir(sandbox, "slot.list", "--json")
    assert (res.returncode, json.loads(res.stdout)) == (0, {"slots": []}), res.stderr
    res = tasks_without_scandir(sandbox, "slot.list")
    assert res.returncode == 0 and res.stderr == ""


def test_boot_log_lines_carry_prior_exit_when_known(sandbox, supervisor):
    sb = sandbox
    s6env.make_profile(sb.home, "default", {"desired_state": "running"})
    s6env.make_profile(sb.home, "alice", {"desired_state": "running"})
    (sb.home / ".standin").mkdir()
    (sb.home / ".standin" / "behaviour.json").write_text(json.dumps(
        {"profiles": {"alice": {"exit_at_start": 78, "exit_reason": "bad config"}}}))
    s6env.run_tasks(sb, "reconcile")
    s6env.wait_up(sb.slot("default"), 10)
    s6env.wait_for(lambda: s6env.svstat(sb.slot("alice"), ("up", "exitcode", "wantedup"))
                   == {"up": False, "exitcode": 78, "wantedup": False}, 10,
                   what="alice exiting 78 and kept down")
    log = sb.home / "logs" / "container-boot.log"
    before = len(log.read_text().splitlines())
    res = s6env.run_tasks(sb, "reconcile")
    assert res.returncode == 2, res.stdout + res.stderr  # alice: failed, exited 78
    lines = [line.split(" ", 1)[1] for line in log.read_text().splitlines()[before:]]
    assert "profile=alice prior_state=running action=started result=failed prior_exit=78" \
        in lines, lines
    default = next(line for line in lines if line.startswith("profile=default "))
    assert "prior_exit" not in default  # up: its previous exit is not known
    assert os.path.exists(log)
