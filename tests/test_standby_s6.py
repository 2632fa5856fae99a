"""A standby waits in the kernel (SPEC §14.4), against real s6.

The slot of a profile another host owns is up and never ready: data/own has become
``flock -F`` blocked on the ownership lock, and data/check waits on the standby's mark
instead of running every second. Nothing in the slot wakes up while it waits; s6-svc -d
still ends it at once; when the lock comes free it takes over, re-reads the intent, and
the gateway it starts becomes ready.
"""

import fcntl
import os
import subprocess
import time

import s6env
import standin
from test_fleet_s6 import (
    Host,
    alice_on_host_a,
    owner_record,
    second_sandbox,  # noqa: F401 (a fixture)
)

from hermes_tasks import svstatus


def stat_counters(pid: int) -> tuple[int, int] | None:
    """(context switches, CPU ticks incl. reaped children) of ``pid``; None once it is gone.

    A process blocked in the kernel neither switches nor burns ticks; a polling one (or one
    whose children come and go) grows both."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as fh:
            status = dict(line.split(":", 1) for line in fh if ":" in line)
    except OSError:
        return None
    if fields[0] in "ZX":
        return None
    switches = int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])
    return switches, sum(int(f) for f in fields[11:15])  # utime stime cutime cstime


def cmdline(pid: int) -> tuple[str, ...]:
    """Its argv; () once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return tuple(a.decode(errors="replace") for a in fh.read().split(b"\0") if a)
    except OSError:
        return ()


def open_files(pid: int) -> set[str]:
    """What its descriptors point to (gone ones skipped)."""
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return out


def slot_processes(slot, supervised: int) -> dict[int, tuple[str, ...]]:
    """Every process working for the slot: s6-supervise, the poller and its check (their
    cwd is the service directory) and the supervised process."""
    where = os.path.realpath(slot)
    return {p.pid: p.cmdline for p in s6env.processes()
            if p.pid == supervised or p.cwd == where}


def mark_waiters(procs: dict[int, tuple[str, ...]]) -> list[int]:
    """The slot's checks waiting on the standby's mark (a shared flock on data/own)."""
    return [p for p, argv in procs.items()
            if argv[:1] == ("/usr/bin/flock",) and "./data/own" in argv[:4]]


def standby_settled(slot):
    """The supervised pid once it is flock waiting, and its check waiting on the mark."""
    st = svstatus.read(str(slot))
    if not (st.up and st.pid):
        return None
    procs = slot_processes(slot, st.pid)
    if procs.get(st.pid, ("",))[0] != "flock":
        return None
    return (st.pid, procs) if mark_waiters(procs) else None


def host_a_holds_alice(sb) -> int:
    """Host a's gateway of alice, played by this test: the lock (the service user's file),
    held through the returned descriptor, and host a's owner record."""
    d = s6env.make_profile(sb.home, "alice", {"desired_state": "running"})
    lock = d / ".gateway.lock"
    lock.touch()
    (d / ".gateway-owner.json").write_text('{"host_id": "host-a", "pid": 1, "since": "x"}')
    s6env.own(sb, sb.home)
    held = os.open(lock, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    return held


def boot_host_b(sb) -> Host:
    """Host b, placed to run alice only, booted."""
    b = Host(sb, "host-b", sb.home)
    b.vars.append("gateway_profiles=[alice]")
    b.boot()
    return b


def test_a_standby_sleeps_stops_at_once_and_takes_over_ready(root_sandbox):
    sb = root_sandbox
    home = sb.home
    held = host_a_holds_alice(sb)
    try:
        b = boot_host_b(sb)
        slot = sb.slot("alice")
        pid, procs = s6env.wait_for(lambda: standby_settled(slot), 15, what="alice a standby")
        assert standin.starts(home, "alice") == []
        assert not svstatus.read(str(slot)).ready
        # Over three seconds nothing working for the slot wakes up: no new process, no
        # context switch, no CPU tick (the old data/own woke every 2 s, its check every 1 s).
        before = {p: stat_counters(p) for p in procs}
        time.sleep(3)  # the observation window itself, not a synchronisation
        after = {p: stat_counters(p) for p in procs}
        assert slot_processes(slot, pid).keys() == procs.keys()
        assert after == before, {p: (procs[p], before[p], after[p]) for p in procs
                                 if before[p] != after[p]}
        log = home / "logs" / "gateways" / "alice" / "host-b" / "current"
        s6env.wait_for(lambda: log.exists() and "standby" in log.read_text(), 5, what="log")
        assert log.read_text().count("standby, owned by host-a") == 1
        # s6-svc -d: the waiting flock is the supervised process; it, the poller and the
        # check are gone at once (no orphan left waiting on the lock).
        subprocess.run([str(s6env.S6_BIN / "s6-svc"), "-d", str(slot)], check=True)
        s6env.wait_down(slot, 5)
        workers = set(procs) - set(s6env.supervise_pids(slot))
        s6env.wait_for(lambda: not any(stat_counters(p) for p in workers), 5,
                       what="the standby's processes gone")
        # Up again: a standby again; the lock comes free and host b takes over, ready.
        subprocess.run([str(s6env.S6_BIN / "s6-svc"), "-u", str(slot)], check=True)
        s6env.wait_for(lambda: standby_settled(slot), 15, what="alice a standby again")
        os.close(held)
        held = None
        gw = s6env.wait_for(lambda: b.gateway_pid("alice"), 15, what="host b runs alice")
        s6env.wait_for(lambda: svstatus.read(str(slot)).ready, 15, what="alice ready on host b")
        assert (owner_record(home, "alice")["host_id"], owner_record(home, "alice")["pid"]) == \
            ("host-b", gw)
        assert "own: host-b owns" in log.read_text()
        b.sup.stop()
    finally:
        if held is not None:
            os.close(held)


def test_the_owners_own_restart_keeps_the_profile(sandbox, second_sandbox):  # noqa: F811
    """A standby that sees the lock come free leaves the owner's host 1.5 s to re-lock (s6
    restarts a gateway about a second after it exits) before it takes the profile."""
    a, b = alice_on_host_a(sandbox, second_sandbox)
    old = a.gateway_pid("alice")
    b.boot()
    s6env.wait_for(lambda: standby_settled(b.sb.slot("alice")), 15, what="b a standby")
    subprocess.run([str(s6env.S6_BIN / "s6-svc"), "-r", str(a.sb.slot("alice"))], check=True)
    new = s6env.wait_for(lambda: a.gateway_pid("alice") not in (None, old) and
                         a.gateway_pid("alice"), 15, what="alice restarted on host a")
    assert owner_record(sandbox.home, "alice")["host_id"] == "host-a"
    assert owner_record(sandbox.home, "alice")["pid"] == new
    # b went back to waiting (it announces no new owner: the record still names host a).
    s6env.wait_for(lambda: standby_settled(b.sb.slot("alice")), 15, what="b a standby again")
    assert b.gateway_pid("alice") is None and len(standin.live_pids(sandbox.home, "alice")) == 1
    log = sandbox.home / "logs" / "gateways" / "alice" / "host-b" / "current"
    assert log.read_text().count("standby, owned by") == 1
    b.sup.stop()
    a.sup.stop()


def test_after_a_takeover_the_check_follows_the_new_gateway(root_sandbox):
    """The check that waited on the standby's mark goes on checking once the mark goes (the
    gateway is starting): readiness follows the gateway's "running" record, not the poller's
    next check a second later (issue 24: takeover no slower than the old 2 s poll)."""
    sb = root_sandbox
    home = sb.home
    held = host_a_holds_alice(sb)
    # Host b's gateway writes "running" only when this test says so.
    gate = home / ".standin" / "alice.running"
    standin.write_behaviour(home, profiles={"alice": {"running_gate": str(gate)}})
    try:
        b = boot_host_b(sb)
        slot = sb.slot("alice")
        _, procs = s6env.wait_for(lambda: standby_settled(slot), 15, what="alice a standby")
        [check] = mark_waiters(procs)
        os.close(held)
        held = None
        # data/own drops its mark before it writes this record and execs the gateway.
        s6env.wait_for(lambda: owner_record(home, "alice")["host_id"] == "host-b", 15,
                       what="host b owns alice")
        # The mark is gone and the gateway is not running yet: the check that waited is still
        # at work (it used to exit 1 here, leaving the next check to s6-notifyoncheck's -w).
        assert stat_counters(check) is not None, "the waiting check ended with the mark"
        assert "./data/check" in cmdline(check)
        # ... without its shared lock on data/own: a standby started later takes its mark.
        mark = os.path.realpath(slot / "data" / "own")
        s6env.wait_for(lambda: cmdline(check) and mark not in open_files(check), 5,
                       what="the woken check without data/own open")
        assert not svstatus.read(str(slot)).ready
        gate.touch()
        gw = s6env.wait_for(lambda: b.gateway_pid("alice"), 15, what="host b runs alice")
        s6env.wait_for(lambda: svstatus.read(str(slot)).ready, 15, what="alice ready on host b")
        assert standin.running_at(home, "alice", gw) is not None
        assert owner_record(home, "alice")["pid"] == gw
        b.sup.stop()
    finally:
        if held is not None:
            os.close(held)

