"""reconcile against a real s6-svscan: the right gateways come up, the rest stay down."""

import json
import os

import s6env
import standin

make_profile, own = s6env.make_profile, s6env.own


def three_profiles(sb):
    make_profile(sb.home, "default", {"gateway_state": "running"})
    make_profile(sb.home, "alice", {"desired_state": "running"})
    make_profile(sb.home, "bob", {"desired_state": "stopped"})
    own(sb, sb.home)


def check_converged(sb, sup):
    res = s6env.run_tasks(sb, "reconcile", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    rows = {r["profile"]: r for r in doc["results"]}
    assert [r["profile"] for r in doc["results"]] == ["default", "alice", "bob"]
    assert rows["default"]["action"] == "started" and rows["alice"]["action"] == "started"
    assert rows["bob"]["action"] == "registered" and rows["bob"]["prior_state"] == "stopped"
    assert doc["stats"] == {"ok": 0, "changed": 3, "skipped": 0, "failed": 0}
    sup.rescan()  # what s6-overlay's services-up does after cont-init
    for name in ("default", "alice"):
        s6env.wait_up(sb.slot(name))
        s6env.wait_for(lambda n=name: standin.starts(sb.home, n), 5, what=f"{name} started")
    s6env.wait_status_file(sb.slot("bob"))
    assert s6env.svstat(sb.slot("bob"))["up"] is False
    assert s6env.svstat(sb.slot("bob"))["normallyup"] is False
    assert standin.starts(sb.home, "bob") == []
    default, alice = standin.starts(sb.home, "default")[0], standin.starts(sb.home, "alice")[0]
    assert default["argv"] == ["gateway", "run", "--replace"]
    assert alice["argv"] == ["-p", "alice", "gateway", "run", "--replace"]
    assert alice["env"]["HERMES_S6_SUPERVISED_CHILD"] == "1"
    assert alice["env"]["HOME"] == str(sb.home) and alice["cwd"] == str(sb.home)
    # the logger is attached: the gateway's stdout lands in its s6-log directory
    current = sb.home / "logs" / "gateways" / "alice" / "current"
    s6env.wait_for(lambda: current.exists() and "started profile=alice" in current.read_text(), 5,
                   what="alice's log line")
    assert s6env.svstat(sb.slot("alice") / "log")["up"] is True
    assert [n for n in os.listdir(sb.scandir) if n.startswith(".") and n not in
            s6env.OWN_DOT_ENTRIES] == []
    return alice


def test_reconcile_brings_up_running_profiles(sandbox, supervisor):
    three_profiles(sandbox)
    check_converged(sandbox, supervisor)
    log = (sandbox.home / "logs" / "container-boot.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in log] == [
        "profile=default prior_state=running action=started result=changed",
        "profile=alice prior_state=running action=started result=changed",
        "profile=bob prior_state=stopped action=registered result=changed"]


def test_as_root_gateways_and_loggers_run_as_the_service_user(root_sandbox, supervisor):
    sb = root_sandbox
    three_profiles(sb)
    alice = check_converged(sb, supervisor)
    assert alice["uid"] == sb.user.uid
    logdir = sb.home / "logs" / "gateways" / "alice"
    assert logdir.stat().st_uid == sb.user.uid
    boot_log = sb.home / "logs" / "container-boot.log"
    assert boot_log.stat().st_uid == sb.user.uid and (sb.home / "logs").stat().st_uid == sb.user.uid
    slot = sb.slot("alice")
    for rel in ("run", "finish", "log/run", "type", "."):
        st = os.lstat(slot / rel)
        assert st.st_uid == 0 and not st.st_mode & 0o022, rel
    st = os.lstat(slot / "supervise")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, sb.user.gid, 0o710)


def test_invalid_profile_name_is_skipped_and_others_reconciled(sandbox, supervisor):
    make_profile(sandbox.home, "alice", {"desired_state": "running"})
    make_profile(sandbox.home, "Bad.Name")
    make_profile(sandbox.home, "zoe")
    res = s6env.run_tasks(sandbox, "reconcile", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [(r["profile"], r["result"]) for r in doc["results"]] == [
        ("default", "changed"), ("alice", "changed"), ("zoe", "changed"), ("Bad.Name", "skipped")]
    assert "warning: skipping profile Bad.Name" in res.stderr
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in sandbox.scandir.iterdir() if p.name.startswith("gateway-")) == [
        "gateway-alice", "gateway-default", "gateway-zoe"]


def test_human_output_and_recap(sandbox):
    make_profile(sandbox.home, "alice")
    res = s6env.run_tasks(sandbox, "reconcile")
    assert res.returncode == 0, res.stderr
    assert "changed: [gateway-alice] => registered" in res.stdout
    # every changed line is counted: the registrar's too, when root publishes it
    registrar = int("changed: [hermes-tasks-registrar]" in res.stdout)
    assert registrar == int(os.geteuid() == 0)
    assert (f"ok=0    changed={2 + registrar:<4} unreachable=0    failed=0    skipped=0"
            in res.stdout)
    again = s6env.run_tasks(sandbox, "reconcile")
    assert "ok: [gateway-alice] => registered" in again.stdout
    assert "ok=2    changed=0" in again.stdout
