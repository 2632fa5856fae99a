"""Ansible-style convergence against a real s6-svscan (issue 4).

Idempotence (a second run is all ``ok`` and touches nothing), in-place updates with one
restart per affected gateway, safe structural swaps and removals, ``--check``/``--diff``
and concurrent runs. Gateways are the stand-in ``tests/bin/fake-gateway``; PIDs come from
``s6-svstat -o pid``.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import stat
import time
from pathlib import Path

import s6env
import standin

# ---------------------------------------------------------------------------- helpers


def make_profile(home, name, state=None):
    """A profile whose ``desired_state`` is ``state`` (a string), if given."""
    return s6env.make_profile(home, name, {"desired_state": state} if state else None)


def var_args(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--var", pair)]


def reconcile(sb, *args: str, vars=()):
    """``reconcile --json`` (plus ``args``); returns (process, {profile: row}, document)."""
    res = s6env.run_tasks(sb, "reconcile", "--json", *args, *var_args(*vars))
    assert "Traceback" not in res.stderr, res.stderr
    doc = json.loads(res.stdout) if res.stdout.strip() else {}
    return res, {r["profile"]: r for r in doc.get("results", [])}, doc


def gateway_pid(sb, name):
    return s6env.svstat(sb.slot(name))["pid"]


def logger_pid(sb, name):
    return s6env.svstat(sb.slot(name) / "log")["pid"]


def wait_running(sb, name, starts: int, old_pid: int | None = None, timeout: float = 10.0) -> int:
    """Wait until ``name`` is up with ``starts`` recorded starts, the last one being the
    pid s6 reports (and not ``old_pid``); return that pid."""
    def ready():
        st = s6env.svstat(sb.slot(name))
        recorded = standin.starts(sb.home, name)
        if (st["up"] and st["pid"] != old_pid and len(recorded) == starts
                and recorded[-1]["pid"] == st["pid"]):
            return st["pid"]
        return None

    s6env.wait_status_file(sb.slot(name), timeout)
    return s6env.wait_for(ready, timeout, what=f"{name} up with {starts} starts")


def wait_logged(sb, name, pid, timeout: float = 10.0) -> None:
    """Wait until the gateway ``pid``'s start line reached its s6-log directory."""
    current = sb.home / "logs" / "gateways" / name / "current"
    s6env.wait_for(lambda: current.exists() and f"pid={pid}" in current.read_text(), timeout,
                   what=f"{name}'s log line for pid {pid}")


def wait_logger_up(sb, name, old_pid=None, timeout: float = 10.0) -> int:
    log = sb.slot(name) / "log"
    s6env.wait_status_file(log, timeout)

    def up():
        st = s6env.svstat(log)
        return st["pid"] if st["up"] and st["pid"] != old_pid else None

    return s6env.wait_for(up, timeout, what=f"{name}/log up")


def boot(sb, running=("default", "alice"), stopped=("bob",), vars=()):
    """Profiles, first reconcile, wait until every running gateway logged its start.

    Returns {profile: gateway pid}.
    """
    for name in running:
        make_profile(sb.home, name, "running")
    for name in stopped:
        make_profile(sb.home, name, "stopped")
    res, rows, _ = reconcile(sb, vars=vars)
    assert res.returncode == 0, res.stderr
    assert all(r["result"] == "changed" for r in rows.values()), rows
    pids = {}
    for name in running:
        pids[name] = wait_running(sb, name, 1)
        wait_logged(sb, name, pids[name])
    for name in stopped:
        s6env.wait_status_file(sb.slot(name))
        assert s6env.svstat(sb.slot(name))["up"] is False
    settle_registrar(sb)
    return pids


def settle_registrar(sb):
    """As root, reconcile also publishes the registrar slot; its first start deletes its
    ``data/published`` marker. Wait for that, so later snapshots only see our doing."""
    registrar = sb.scandir / "hermes-tasks-registrar"
    if registrar.exists():
        s6env.wait_for(lambda: not (registrar / "data" / "published").exists(), 10,
                       what="the registrar's first start")


S6_DIRS = {"supervise", "event"}


def tree(*roots, skip=()) -> dict[str, tuple]:
    """Every entry below ``roots`` with type/mode/owner/size/inode/mtime.

    s6's own state is left out: the contents of ``.s6-svscan/`` and of each ``supervise/``
    and ``event/`` (status, lock, death_tally, subscriber FIFOs, which s6 rewrites itself),
    and the mtimes of those two directories. Our pre-seeded ``supervise/control`` FIFO is
    kept, mtime included: a control command written to it would change that. With
    ``skip``, the roots' own mtimes are left out too (see below).
    """
    out: dict[str, tuple] = {}

    def record(path, with_time=True):
        st = os.lstat(path)
        entry = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                 st.st_ino)
        if with_time:
            entry += (st.st_size if not stat.S_ISDIR(st.st_mode) else 0, st.st_mtime_ns)
        out[str(path)] = entry

    for root in roots:
        # A skipped entry of root (the tool's own cache file, written by whichever run finds
        # it due) changes root's mtime by its rename: root's other entries are compared.
        record(root, with_time=not skip)
        for dirpath, dirs, files in os.walk(root):
            base = os.path.basename(dirpath)
            if base in S6_DIRS or base == ".s6-svscan":
                if base == "supervise" and "control" in files:
                    record(os.path.join(dirpath, "control"))
                dirs[:] = []
                continue
            for name in dirs + files:
                path = os.path.join(dirpath, name)
                if name in skip:
                    continue
                record(path, with_time=name not in S6_DIRS and name != ".s6-svscan")
    return out


def visible_slots(sb):
    return sorted(n for n in os.listdir(sb.scandir) if not n.startswith("."))


def our_dot_entries(sb):
    return sorted(n for n in os.listdir(sb.scandir)
                  if n.startswith(".") and n not in s6env.OWN_DOT_ENTRIES)


def supervisors_named(sb, fragment: str) -> list[int]:
    """s6-supervise processes whose cwd (even deleted) is inside the scandir and names
    ``fragment`` (e.g. ``.gateway-alice`` for any staging or retired copy)."""
    scandir = str(sb.scandir)
    return sorted(p.pid for p in s6env.processes()
                  if p.comm == "s6-supervise" and p.cwd.startswith(scandir + "/")
                  and fragment in p.cwd[len(scandir) + 1:].split("/")[0])


def no_lock_errors(sup):
    text = sup.log_text()
    assert "unable to lock" not in text, text[-2000:]
    assert "unable to spawn" not in text, text[-2000:]


# ---------------------------------------------------------------------------- idempotence


def test_second_reconcile_is_all_ok_and_touches_nothing(sandbox, supervisor):
    sb = sandbox
    pids = boot(sb)
    loggers = {n: logger_pid(sb, n) for n in ("default", "alice", "bob")}
    sups = {n: s6env.supervise_pids(sb.slot(n)) for n in ("default", "alice", "bob")}
    # The slot cache records a file only once its ctime is a second old (slotcache.MARGIN):
    # whether the boot or this run writes it first depends on the machine's speed. It is
    # the tool's own cache, not a slot: every slot entry must stay as it is.
    own = {".hermes-tasks.lock", ".hermes-tasks.slots"}
    before = tree(sb.scandir, skip=own)

    res, rows, doc = reconcile(sb)
    assert res.returncode == 0, res.stderr
    assert [(p, r["result"]) for p, r in rows.items()] == [
        ("default", "ok"), ("alice", "ok"), ("bob", "ok")]
    assert doc["stats"] == {"ok": 3, "changed": 0, "skipped": 0, "failed": 0}
    if "registrar" in doc:  # published when running as root
        assert doc["registrar"]["result"] == "ok"
    assert tree(sb.scandir, skip=own) == before
    assert {n: gateway_pid(sb, n) for n in pids} == pids
    assert {n: logger_pid(sb, n) for n in loggers} == loggers
    assert {n: s6env.supervise_pids(sb.slot(n)) for n in sups} == sups
    assert [len(standin.starts(sb.home, n)) for n in ("default", "alice", "bob")] == [1, 1, 0]

    human = s6env.run_tasks(sb, "reconcile")
    assert human.returncode == 0, human.stderr
    assert "ok: [gateway-alice] => started" in human.stdout
    assert "ok: [gateway-bob] => registered" in human.stdout
    assert "ok=3    changed=0    unreachable=0    failed=0    skipped=0" in human.stdout
    assert tree(sb.scandir, skip=own) == before
    assert {n: gateway_pid(sb, n) for n in pids} == pids


# ---------------------------------------------------------------------------- in-place updates


def test_template_change_restarts_each_running_gateway_once(sandbox, supervisor):
    sb = sandbox
    pids = boot(sb)
    loggers = {n: logger_pid(sb, n) for n in ("default", "alice", "bob")}
    sups = {n: s6env.supervise_pids(sb.slot(n)) for n in ("default", "alice", "bob")}
    inodes = {n: os.stat(sb.slot(n)).st_ino for n in ("default", "alice", "bob")}

    res, rows, _ = reconcile(sb, vars=['extra_env={HT_X: "1"}'])
    assert res.returncode == 0, res.stderr
    assert {p: r["result"] for p, r in rows.items()} == {
        "default": "changed", "alice": "changed", "bob": "changed"}
    assert "rewrote run" in rows["alice"]["message"]
    assert "restarted the gateway" in rows["alice"]["message"]
    assert "restarted the gateway" not in rows["bob"]["message"]
    for name in ("default", "alice"):
        new = wait_running(sb, name, 2, old_pid=pids[name])
        assert new != pids[name]
        assert standin.starts(sb.home, name)[-1]["env"]["HT_X"] == "1"
        standin.assert_never_overlapping(standin.events(sb.home, name))
        pids[name] = new
    # bob was down: its new run is read at its next start; it was not started now
    assert standin.starts(sb.home, "bob") == []
    assert s6env.svstat(sb.slot("bob"))["up"] is False
    # same supervisors, same slot directories, loggers untouched (log/run did not change)
    assert {n: s6env.supervise_pids(sb.slot(n)) for n in sups} == sups
    assert {n: os.stat(sb.slot(n)).st_ino for n in inodes} == inodes
    assert {n: logger_pid(sb, n) for n in loggers} == loggers
    assert "HT_X=1" in (sb.slot("alice") / "run").read_text()
    assert os.stat(sb.slot("alice") / "run").st_mode & 0o7777 == 0o750
    assert [n for n in os.listdir(sb.slot("alice")) if n.startswith(".")] == []
    assert not (sb.slot("alice") / "data" / "restart-pending").exists()  # no restart left owed

    # converged: the same variables again change nothing and restart nothing
    res, rows, _ = reconcile(sb, vars=['extra_env={HT_X: "1"}'])
    assert {r["result"] for r in rows.values()} == {"ok"}, rows
    time.sleep(0.2)
    assert {n: gateway_pid(sb, n) for n in pids} == pids
    assert [len(standin.starts(sb.home, n)) for n in ("default", "alice", "bob")] == [2, 2, 0]
    no_lock_errors(supervisor)


def test_desired_state_change_converges_what_runs(sandbox, supervisor):
    """SPEC §6: reconcile brings a gateway set stopped down and one set running up."""
    sb = sandbox
    pids = boot(sb)
    make_profile(sb.home, "alice", "stopped")
    make_profile(sb.home, "bob", "running")

    check, crows, _ = reconcile(sb, "--check")
    assert crows["alice"]["message"] == "would add the down marker; would bring down"
    assert crows["bob"]["message"] == "would remove the down marker; would bring up"
    res, rows, _ = reconcile(sb)
    assert res.returncode == 0, res.stderr
    assert {p: (r["action"], r["result"]) for p, r in rows.items()} == {
        "default": ("started", "ok"), "alice": ("registered", "changed"),
        "bob": ("started", "changed")}
    assert {p: (r["action"], r["result"]) for p, r in crows.items()} == {
        p: (r["action"], r["result"]) for p, r in rows.items()}
    assert rows["alice"]["message"] == "added the down marker; brought down"
    assert rows["bob"]["message"] == "removed the down marker; brought up"
    assert (sb.slot("alice") / "down").exists() and not (sb.slot("bob") / "down").exists()
    s6env.wait_down(sb.slot("alice"))
    s6env.wait_up(sb.slot("bob"))
    assert gateway_pid(sb, "default") == pids["default"]  # untouched
    assert standin.live_pids(sb.home, "alice") == []
    st = s6env.svstat(sb.slot("alice"))
    assert (st["up"], st["wantedup"], st["normallyup"]) == (False, False, False)
    again, rows, _ = reconcile(sb)
    assert {r["result"] for r in rows.values()} == {"ok"}


def test_temp_files_left_by_an_interrupted_run_are_removed(sandbox, supervisor):
    sb = sandbox
    pids = boot(sb, running=("alice",), stopped=())
    slot = sb.slot("alice")
    (slot / ".run.hermes-tasks.tmp").write_text("#!/bin/sh\nexec half")
    (slot / "log" / ".run.hermes-tasks.tmp").write_text("")

    res, rows, _ = reconcile(sb)
    assert res.returncode == 0, res.stderr
    assert rows["alice"]["result"] == "changed"
    assert rows["alice"]["message"] == ("removed temp files left by an interrupted run: "
                                        ".run.hermes-tasks.tmp, log/.run.hermes-tasks.tmp")
    assert not (slot / ".run.hermes-tasks.tmp").exists()
    assert not (slot / "log" / ".run.hermes-tasks.tmp").exists()
    time.sleep(0.2)
    assert gateway_pid(sb, "alice") == pids["alice"]
    res, rows, _ = reconcile(sb)
    assert rows["alice"]["result"] == "ok"


def test_log_run_change_restarts_loggers_not_gateways(sandbox, supervisor):
    sb = sandbox
    pids = boot(sb)
    loggers = {n: logger_pid(sb, n) for n in ("default", "alice", "bob")}

    res, rows, _ = reconcile(sb, vars=["gateway_log_archives=3"])
    assert res.returncode == 0, res.stderr
    assert {r["result"] for r in rows.values()} == {"changed"}
    for name, row in rows.items():
        assert row["message"] == "rewrote log/run; restarted the logger", row
        new = wait_logger_up(sb, name, old_pid=loggers[name])
        # the run script execs s6-log once it has made the log directory
        cmdline = Path(f"/proc/{new}/cmdline")
        s6env.wait_for(lambda c=cmdline: b"n3" in c.read_bytes().split(b"\0"), 5,
                       what=f"{name}'s s6-log with n3")
    assert {n: gateway_pid(sb, n) for n in pids} == pids
    assert [len(standin.starts(sb.home, n)) for n in ("default", "alice", "bob")] == [1, 1, 0]
    no_lock_errors(supervisor)


def test_restart_brings_back_a_gateway_that_exits_0_on_sigterm(sandbox, supervisor):
    sb = sandbox
    standin.write_behaviour(sb.home, term_exit=0)
    pids = boot(sb, running=("alice",), stopped=())

    res, rows, _ = reconcile(sb, vars=['extra_env={HT_X: "2"}'])
    assert res.returncode == 0, res.stderr
    assert rows["alice"]["result"] == "changed"
    new = wait_running(sb, "alice", 2, old_pid=pids["alice"])
    stops = [e for e in standin.events(sb.home, "alice") if e["event"] == "stop"]
    assert [(e["pid"], e["code"]) for e in stops] == [(pids["alice"], 0)]
    st = s6env.svstat(sb.slot("alice"))
    assert (st["up"], st["wantedup"], st["pid"]) == (True, True, new)
    standin.assert_never_overlapping(standin.events(sb.home, "alice"))


def test_twenty_updates_never_run_a_gateway_twice(sandbox, supervisor):
    """Repeated run (and every other time log/run) updates of one running slot."""
    sb = sandbox
    pid = boot(sb, running=("alice",), stopped=())["alice"]
    sups = s6env.supervise_pids(sb.slot("alice"))
    assert len(sups) == 2
    logger = logger_pid(sb, "alice")
    for i in range(1, 21):
        res, rows, _ = reconcile(sb, vars=[f'extra_env={{HT_X: "{i}"}}',
                                           f"gateway_log_archives={3 + i % 2}"])
        assert res.returncode == 0, res.stderr
        assert rows["alice"]["result"] == "changed", rows["alice"]
        assert "restarted the gateway" in rows["alice"]["message"]
        pid = wait_running(sb, "alice", i + 1, old_pid=pid)
        assert standin.starts(sb.home, "alice")[-1]["env"]["HT_X"] == str(i)
        assert standin.live_pids(sb.home, "alice") == [pid]
        assert s6env.supervise_pids(sb.slot("alice")) == sups
        logger = wait_logger_up(sb, "alice", old_pid=logger)
        standin.assert_never_overlapping(standin.events(sb.home, "alice"))
    wait_logged(sb, "alice", pid)
    assert len(standin.starts(sb.home, "alice")) == 21
    no_lock_errors(supervisor)


FAILING_SVC = """#!/bin/sh
# s6-svc that refuses to act on gateway-alice (and only on it)
for a; do
  case "$a" in */gateway-alice) echo "s6-svc: fatal: injected failure" >&2; exit 111 ;; esac
done
exec /usr/bin/s6-svc "$@"
"""


def test_failed_restart_fails_its_slot_alone_and_is_finished_next_run(sandbox, supervisor):
    sb = sandbox
    pids = boot(sb, running=("default", "alice"), stopped=())
    svc = sb.cmd_dir / "s6-svc"
    svc.unlink()
    svc.write_text(FAILING_SVC)
    svc.chmod(0o755)
    new_vars = var_args('extra_env={HT_X: "1"}')

    res = s6env.run_tasks(sb, "reconcile", *new_vars)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stdout.splitlines()
    failed = [line for line in lines if line.startswith("failed: [gateway-alice] => started: ")]
    assert len(failed) == 1 and "injected failure" in failed[0], res.stdout
    assert any(line.startswith("changed: [gateway-default] => started: rewrote run")
               for line in lines), res.stdout
    # every changed line is counted, the registrar's (its settings copy changed) included
    registrar = sum(line.startswith("changed: [hermes-tasks-registrar]") for line in lines)
    assert registrar == int(os.geteuid() == 0)
    assert (f"ok=0    changed={1 + registrar:<4} unreachable=0    failed=1    skipped=0"
            in res.stdout)
    wait_running(sb, "default", 2, old_pid=pids["default"])  # the other slot converged
    assert gateway_pid(sb, "alice") == pids["alice"]
    assert "HT_X=1" in (sb.slot("alice") / "run").read_text()  # written, restart owed
    boot_log = (sb.home / "logs" / "container-boot.log").read_text().splitlines()
    assert boot_log[-1].endswith("profile=alice prior_state=running action=started result=failed")

    svc.unlink()
    svc.symlink_to("/usr/bin/s6-svc")
    res, rows, _ = reconcile(sb, "--check", *new_vars)
    assert rows["alice"]["message"] == ("would finish a restart an earlier run left pending; "
                                        "would restart the gateway")
    assert rows["default"]["result"] == "ok"
    res, rows, _ = reconcile(sb, *new_vars)
    assert res.returncode == 0, res.stderr
    assert (rows["alice"]["result"], rows["default"]["result"]) == ("changed", "ok")
    assert rows["alice"]["message"] == ("finished a restart an earlier run left pending; "
                                        "restarted the gateway")
    wait_running(sb, "alice", 2, old_pid=pids["alice"])
    assert standin.starts(sb.home, "alice")[-1]["env"]["HT_X"] == "1"
    assert not (sb.slot("alice") / "data" / "restart-pending").exists()
    res, rows, _ = reconcile(sb, *new_vars)
    assert {r["result"] for r in rows.values()} == {"ok"}


def test_gateway_left_down_by_an_interrupted_restart_is_brought_back(sandbox, supervisor):
    """The state a run killed between its restart's down and up leaves behind."""
    sb = sandbox
    pids = boot(sb, running=("alice",), stopped=())
    (sb.slot("alice") / "data").mkdir(exist_ok=True)
    (sb.slot("alice") / "data" / "restart-pending").write_text("gateway\ngateway-up\n")
    s6env.subprocess.run(["s6-svc", "-wD", "-d", str(sb.slot("alice"))], check=True, timeout=10)
    assert s6env.svstat(sb.slot("alice"))["up"] is False

    res, rows, _ = reconcile(sb)
    assert res.returncode == 0, res.stderr
    assert rows["alice"]["result"] == "changed"
    wait_running(sb, "alice", 2, old_pid=pids["alice"])
    assert not (sb.slot("alice") / "data" / "restart-pending").exists()


# ---------------------------------------------------------------------------- structure


def test_removed_profile_slot_is_retired(sandbox, supervisor):
    sb = sandbox
    pids = boot(sb, running=("default", "alice", "bob"), stopped=())
    alice_slot = sb.slot("alice")
    others = {n: s6env.supervise_pids(sb.slot(n)) for n in ("default", "bob")}
    assert len(s6env.supervise_pids(alice_slot)) == 2

    shutil.rmtree(sb.home / "profiles" / "alice")
    res, rows, _ = reconcile(sb)
    assert res.returncode == 0, res.stderr
    assert (rows["alice"]["slot"], rows["alice"]["action"], rows["alice"]["result"]) == (
        "gateway-alice", "removed", "changed")
    assert rows["default"]["result"] == rows["bob"]["result"] == "ok"
    assert not alice_slot.exists()
    assert our_dot_entries(sb) == []
    assert s6env.supervise_pids(alice_slot) == []
    assert supervisors_named(sb, "gateway-alice") == []
    assert standin.live_pids(sb.home, "alice") == []
    assert [e["event"] for e in standin.events(sb.home, "alice")] == ["start", "stop"]
    assert {n: gateway_pid(sb, n) for n in ("default", "bob")} == {
        n: pids[n] for n in ("default", "bob")}
    assert {n: s6env.supervise_pids(sb.slot(n)) for n in others} == others

    res, rows, _ = reconcile(sb)
    assert list(rows) == ["default", "bob"] and {r["result"] for r in rows.values()} == {"ok"}
    no_lock_errors(supervisor)


def test_slot_without_log_dir_is_swapped_safely(sandbox, supervisor):
    """A hand-made, supervised, unlogged gateway-alice is replaced by sequence B′.

    Its run script takes half a second to stop the gateway after SIGTERM: a swap that did
    not wait for the old gateway to be down would start the new one meanwhile.
    """
    sb = sandbox
    make_profile(sb.home, "alice", "running")
    run = ("#!/bin/sh\nexec 2>&1\n"
           f"HERMES_HOME='{sb.home}'\nexport HERMES_HOME\ncd \"$HERMES_HOME\" || exit 111\n"
           f"'{s6env.FAKE_GATEWAY}' -p alice gateway run &\nchild=$!\n"
           "trap 'sleep 0.5; kill $child; wait $child; exit 1' TERM\n"
           "wait $child\nwait $child\n")
    s6env.publish_test_slot(sb.scandir, "gateway-alice", run)
    supervisor.rescan()
    s6env.wait_status_file(sb.slot("alice"))
    old = s6env.wait_for(lambda: standin.live_pids(sb.home, "alice"), 10, what="old alice")[0]
    old_sups = s6env.supervise_pids(sb.slot("alice"))
    assert len(old_sups) == 1

    res, rows, _ = reconcile(sb)
    assert res.returncode == 0, res.stderr
    assert rows["alice"]["result"] == "changed"
    assert rows["alice"]["message"] == "replaced: gateway-alice has no log/ directory"
    new = wait_running(sb, "alice", 2, old_pid=old)
    wait_logged(sb, "alice", new)  # the new slot has its logger attached
    events = standin.events(sb.home, "alice")
    assert [(e["event"], e["pid"]) for e in events] == [("start", old), ("stop", old),
                                                         ("start", new)]
    standin.assert_never_overlapping(events)
    assert standin.live_pids(sb.home, "alice") == [new]
    sups = s6env.supervise_pids(sb.slot("alice"))
    assert len(sups) == 2 and not set(sups) & set(old_sups)
    assert supervisors_named(sb, ".gateway-alice") == []
    assert our_dot_entries(sb) == []

    res, rows, _ = reconcile(sb)
    assert rows["alice"]["result"] == "ok"
    assert gateway_pid(sb, "alice") == new
    no_lock_errors(supervisor)


def test_logged_slot_needing_a_swap_keeps_one_logger(sandbox, supervisor):
    """A structural change of a logged slot (here: its ``type`` is a directory) goes
    through B′ without two s6-log ever competing for the shared log directory."""
    sb = sandbox
    pids = boot(sb, running=("default", "alice"), stopped=())
    old_sups = s6env.supervise_pids(sb.slot("alice"))
    old_logger = logger_pid(sb, "alice")
    (sb.slot("alice") / "type").unlink()
    (sb.slot("alice") / "type").mkdir()

    res, rows, _ = reconcile(sb)
    assert res.returncode == 0, res.stderr
    assert rows["alice"]["message"] == "replaced: gateway-alice type is not a regular file"
    assert rows["default"]["result"] == "ok"
    new = wait_running(sb, "alice", 2, old_pid=pids["alice"])
    wait_logger_up(sb, "alice", old_pid=old_logger)
    wait_logged(sb, "alice", new)
    standin.assert_never_overlapping(standin.events(sb.home, "alice"))
    sups = s6env.supervise_pids(sb.slot("alice"))
    assert len(sups) == 2 and not set(sups) & set(old_sups)
    assert supervisors_named(sb, ".gateway-alice") == []
    assert our_dot_entries(sb) == []
    assert (sb.slot("alice") / "type").read_text() == "longrun\n"
    assert gateway_pid(sb, "default") == pids["default"]
    time.sleep(1.2)  # a new s6-log losing the lock race retries after one second
    no_lock_errors(supervisor)


def test_symlinked_slot_is_replaced_by_a_real_directory(sandbox, supervisor):
    """A ``gateway-*`` symlink (s6 supervises its target) is swapped, never followed for
    deletion: the target directory it pointed to is left alone."""
    sb = sandbox
    make_profile(sb.home, "alice", "running")
    target = sb.root / "elsewhere" / "gateway-alice"
    res = s6env.run_tasks(sb, "slot.render", "alice", "--dest", str(target))
    assert res.returncode == 0, res.stderr
    os.symlink(target, sb.slot("alice"))
    supervisor.rescan()
    old = wait_running(sb, "alice", 1)
    old_sups = s6env.supervise_pids(target)
    assert len(old_sups) == 2

    res, rows, _ = reconcile(sb)
    assert res.returncode == 0, res.stderr
    assert rows["alice"]["message"] == "replaced: gateway-alice is not a real directory"
    new = wait_running(sb, "alice", 2, old_pid=old)
    wait_logged(sb, "alice", new)
    assert not sb.slot("alice").is_symlink() and sb.slot("alice").is_dir()
    assert (target / "run").is_file()  # the symlink's target was not deleted
    s6env.wait_for(lambda: s6env.supervise_pids(target) == [], 5, what="old supervisors gone")
    standin.assert_never_overlapping(standin.events(sb.home, "alice"))
    assert our_dot_entries(sb) == []
    no_lock_errors(supervisor)


# ---------------------------------------------------------------------------- check and diff


def test_check_reports_changes_and_writes_nothing(sandbox, supervisor):
    sb = sandbox
    pids = boot(sb, running=("default", "alice", "bob"), stopped=("dan",))
    sups = {n: s6env.supervise_pids(sb.slot(n)) for n in ("default", "alice", "bob", "dan")}
    loggers = {n: logger_pid(sb, n) for n in sups}
    # the home changes: a new profile, a vanished one, a state flip; the template too
    make_profile(sb.home, "carol", "running")
    shutil.rmtree(sb.home / "profiles" / "bob")
    make_profile(sb.home, "alice", "stopped")
    new_vars = ['extra_env={HT_X: "1"}']
    before = tree(sb.home, sb.scandir)

    res, rows, doc = reconcile(sb, "--check", vars=new_vars)
    assert res.returncode == 0, res.stderr
    assert doc["check"] is True
    assert {p: (r["action"], r["result"]) for p, r in rows.items()} == {
        "default": ("started", "changed"), "alice": ("registered", "changed"),
        "dan": ("registered", "changed"), "carol": ("started", "changed"),
        "bob": ("removed", "changed")}
    assert rows["carol"]["message"] == "would be published"
    assert rows["bob"]["message"] == "would be retired: its profile no longer exists"
    assert rows["alice"]["message"] == ("would rewrite run; would add the down marker; "
                                        "would bring down")
    assert doc["stats"] == {"ok": 0, "changed": 5, "skipped": 0, "failed": 0}

    human = s6env.run_tasks(sb, "reconcile", "--check", "--diff", *var_args(*new_vars))
    assert human.returncode == 0, human.stderr
    out = human.stdout
    assert "TASK [reconcile] [CHECK MODE]" in out and "DRY RUN" in out
    assert "--- before: gateway-alice/run\n+++ after: gateway-alice/run\n" in out
    assert "\n+export HT_X=1\n" in out
    assert ("--- before: gateway-alice/down (absent)\n"
            "+++ after: gateway-alice/down (present)\n") in out
    assert "--- before: gateway-carol/run (absent)\n+++ after: gateway-carol/run\n" in out
    assert "--- before: gateway-bob (present)\n+++ after: gateway-bob (absent)\n" in out
    assert "changed: [gateway-carol] => started: would be published" in out

    # Invoke's core --dry (before the task name) is the same check mode
    dry = s6env.run_tasks(sb, None, argv=["python", "-m", "hermes_tasks", "--dry", "reconcile",
                                          "--json", *s6env.inventory_args(sb),
                                          *var_args(*new_vars)])
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["stats"]["changed"] == 5

    time.sleep(0.3)  # let any stray effect show
    assert tree(sb.home, sb.scandir) == before
    assert {n: gateway_pid(sb, n) for n in pids} == pids
    assert {n: logger_pid(sb, n) for n in loggers} == loggers
    assert {n: s6env.supervise_pids(sb.slot(n)) for n in sups} == sups
    assert visible_slots(sb)[:4] == ["gateway-alice", "gateway-bob", "gateway-dan",
                                     "gateway-default"]

    # and the real run then does what check announced
    res, rows, doc = reconcile(sb, vars=new_vars)
    assert res.returncode == 0, res.stderr
    assert doc["stats"] == {"ok": 0, "changed": 5, "skipped": 0, "failed": 0}
    assert not sb.slot("bob").exists() and sb.slot("carol").exists()


def test_diff_without_check_shows_what_was_changed(sandbox):
    make_profile(sandbox.home, "alice", "running")
    assert s6env.run_tasks(sandbox, "reconcile").returncode == 0
    res = s6env.run_tasks(sandbox, "reconcile", "--diff", "--var", "gateway_log_archives=3")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "--- before: gateway-alice/log/run\n+++ after: gateway-alice/log/run\n" in out
    assert "-exec /" in out and " n10 " in out and " n3 " in out
    assert "changed: [gateway-alice] => started: rewrote log/run" in out
    assert "gateway-alice/run" not in out  # unchanged files are not shown
    assert " n3 " in (sandbox.slot("alice") / "log" / "run").read_text()
    again = s6env.run_tasks(sandbox, "reconcile", "--diff", "--var", "gateway_log_archives=3")
    assert again.returncode == 0 and "--- before" not in again.stdout
    assert "ok=2    changed=0" in again.stdout


def test_check_on_an_empty_scandir_creates_nothing(sandbox):
    make_profile(sandbox.home, "alice", "running")
    res, rows, _ = reconcile(sandbox, "--check", "--diff")
    assert res.returncode == 0, res.stderr
    assert [(p, r["result"], r["message"]) for p, r in rows.items()] == [
        ("default", "changed", "would be published"),
        ("alice", "changed", "would be published; not supervised: no s6-svscan runs on "
         f"{sandbox.scandir}, so nothing starts it until one does")]  # SPEC §15: truthfully
    assert os.listdir(sandbox.scandir) == []
    assert not (sandbox.home / "logs").exists()


# ---------------------------------------------------------------------------- concurrency


def test_two_concurrent_reconciles_converge_once(sandbox, supervisor):
    sb = sandbox
    running, stopped = ("default", "alice", "carol"), ("bob", "dan")
    for name in running:
        make_profile(sb.home, name, "running")
    for name in stopped:
        make_profile(sb.home, name, "stopped")

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: reconcile(sb), range(2)))
    for res, _, _ in runs:
        assert res.returncode == 0, res.stderr
    profiles = ["default", "alice", "bob", "carol", "dan"]
    for name in profiles:  # each slot was changed by exactly one of the two runs
        assert sorted(rows[name]["result"] for _, rows, _ in runs) == ["changed", "ok"], name

    res, rows, doc = reconcile(sb)
    assert res.returncode == 0, res.stderr
    assert list(rows) == profiles and doc["stats"]["ok"] == 5 and doc["stats"]["changed"] == 0
    assert our_dot_entries(sb) == []
    for name in running:
        wait_running(sb, name, 1)
        standin.assert_never_overlapping(standin.events(sb.home, name))
    for name in profiles:
        assert len(s6env.supervise_pids(sb.slot(name))) == 2, name
    for name in stopped:
        assert standin.starts(sb.home, name) == []
    no_lock_errors(supervisor)
