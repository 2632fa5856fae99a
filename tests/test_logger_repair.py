"""A logger on a volume carried over from an older image (SPEC §15, hermes-agent #45258).

``logs/gateways`` owned by root kept every logger down (s6-log exiting 111 each second)
while reconcile and gateway.status said nothing. Now log/run gives root-owned log
directories back to the service user (no-follow descriptors, never recursive) before it
starts s6-log, and a logger that still cannot start is a failed row and a status reason.
"""

from __future__ import annotations

import json
import os

import bootsim
import s6env
from test_boot_sim import SCRIPTS, rcs


def test_root_owned_logs_gateways_is_repaired_and_lines_reach_current(root_sandbox):
    sb = root_sandbox
    s6env.make_profile(sb.home, "default", {"desired_state": "running"})
    s6env.make_profile(sb.home, "alice", {"desired_state": "running"})
    s6env.give_tree(sb.home, sb.user)
    gateways = sb.home / "logs" / "gateways"
    (gateways / "alice").mkdir(parents=True)
    (gateways / "alice" / "keep").write_text("old\n")
    for path in (gateways, gateways / "alice", gateways / "alice" / "keep"):
        os.chown(path, 0, 0)  # an older image's root-owned tree
    with bootsim.Container(sb) as ctr:
        boot = ctr.boot()
        assert rcs(boot) == [(n, 0) for n in SCRIPTS], boot.console_text()
        for name in ("default", "alice"):
            s6env.wait_up(ctr.slot(f"gateway-{name}"), 10)
            current = gateways / name / "current"
            s6env.wait_for(lambda c=current: c.exists() and b"fake-gateway: started"
                           in c.read_bytes(), 15, what=f"{current} to hold the gateway's line")
            assert os.stat(current).st_uid == sb.user.uid
        for path in (gateways, gateways / "alice"):
            st = os.stat(path)
            assert (st.st_uid, st.st_gid) == (sb.user.uid, sb.user.gid), path
        # never recursive: a file below keeps its owner
        assert os.stat(gateways / "alice" / "keep").st_uid == 0
        res = ctr.exec_tasks("reconcile", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        assert all(r["result"] == "ok" for r in json.loads(res.stdout)["results"])


def test_repair_never_follows_a_symlink(root_sandbox):
    sb = root_sandbox
    s6env.make_profile(sb.home, "default", {"desired_state": "running"})
    s6env.give_tree(sb.home, sb.user)
    target = root_sandbox.root / "gateways"  # a root-owned directory outside the volume
    target.mkdir()
    (sb.home / "logs").mkdir()
    os.chown(sb.home / "logs", sb.user.uid, sb.user.gid)
    os.symlink(target, sb.home / "logs" / "gateways")
    os.lchown(sb.home / "logs" / "gateways", sb.user.uid, sb.user.gid)
    from hermes_tasks import logdir

    assert logdir.main([str(sb.user.uid), str(sb.user.gid), str(sb.home), "default"]) == 1
    assert os.stat(target).st_uid == 0


def test_a_logger_that_cannot_start_is_a_failed_row_and_a_status_reason(root_sandbox):
    sb = root_sandbox
    s6env.make_profile(sb.home, "default", {"desired_state": "running"})
    s6env.make_profile(sb.home, "alice", {"desired_state": "stopped"})
    (sb.home / "logs" / "gateways").mkdir(parents=True)
    (sb.home / "logs" / "gateways" / "alice").write_text("not a directory\n")
    s6env.give_tree(sb.home, sb.user)
    with bootsim.Container(sb) as ctr:
        ctr.boot()
        log = ctr.slot("gateway-alice") / "log"

        def failing():
            st = s6env.svstat(log, ("up", "wantedup", "exitcode"))
            return not st["up"] and st["wantedup"] and st["exitcode"] == 111
        s6env.wait_for(failing, 15, what="alice's logger to exit 111")
        res = ctr.exec_tasks("reconcile", "--json")
        assert res.returncode == 2, res.stdout + res.stderr
        rows = {r["profile"]: r for r in json.loads(res.stdout)["results"]}
        assert rows["alice"]["result"] == "failed"
        assert "logger not running: s6-log exited 111" in rows["alice"]["message"]
        assert rows["default"]["result"] == "ok"
        res = ctr.exec_tasks("gateway.status", "-p", "alice", "--json")
        doc = json.loads(res.stdout)["gateways"][0]
        # alice is stopped, so that is its reason line; the logger's own state says why
        # nothing would be logged (a running one's reason: tests/test_status_s6.py)
        assert (doc["logger"]["up"], doc["logger"]["exit_code"]) == (False, 111), doc
