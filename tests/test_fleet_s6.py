"""Placement and one owner per profile across hosts, against real s6 (SPEC §12, §13.1-13.3).

A "host" is a sandbox with its own scandir and s6-svscan; hosts sharing a volume point
``hermes_home`` at the first host's home.
"""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import s6env
import standin

from hermes_tasks import svstatus

make_profile, own = s6env.make_profile, s6env.own


def run(sb, task, *args, host_vars=(), **kw):
    """A task on host ``sb``; ``host_vars`` come last, so they win over the sandbox's."""
    extra = [a for pair in host_vars for a in ("--var", pair)]
    return s6env.run_tasks(sb, task, *args, *s6env.inventory_args(sb), *extra,
                           inventory_vars=False, **kw)


def rows_of(res):
    assert res.returncode == 0, res.stderr
    return {r["profile"]: r for r in json.loads(res.stdout)["results"]}


def gateway_slots(sb):
    return sorted(n for n in os.listdir(sb.scandir) if n.startswith("gateway-"))


# ----------------------------------------------------------------------------- placement


def test_host_with_no_gateway_profiles_publishes_no_gateway_slot(sandbox, supervisor):
    make_profile(sandbox.home, "default", {"desired_state": "running"})
    make_profile(sandbox.home, "alice", {"desired_state": "running"})
    rows = rows_of(run(sandbox, "reconcile", "--json",
                       host_vars=["gateway_profiles=[]", "host_id=spare"]))
    assert gateway_slots(sandbox) == []
    assert {p: (r["action"], r["result"], r["message"]) for p, r in rows.items()} == {
        "default": ("skipped", "skipped", "not placed on spare"),
        "alice": ("skipped", "skipped", "not placed on spare")}
    assert standin.starts(sandbox.home, "alice") == []
    log = (sandbox.home / "logs" / "container-boot.log").read_text()
    assert "profile=alice prior_state=None action=skipped result=skipped" in log


def test_patterns_place_only_matching_profiles_and_retire_the_rest(sandbox, supervisor):
    for name in ("alice", "albert", "bob"):
        make_profile(sandbox.home, name, {"desired_state": "running"})
    rows = rows_of(run(sandbox, "reconcile", "--json", host_vars=["host_id=h1"]))
    assert gateway_slots(sandbox) == ["gateway-albert", "gateway-alice", "gateway-bob",
                                      "gateway-default"]
    supervisor.rescan()
    s6env.wait_up(sandbox.slot("bob"))
    s6env.wait_for(lambda: standin.live_pids(sandbox.home, "bob"), 5, what="bob up")
    res = run(sandbox, "reconcile", "--json", host_vars=["host_id=h1", "gateway_profiles=[al*]"])
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout)["results"]
    assert gateway_slots(sandbox) == ["gateway-albert", "gateway-alice"]
    assert standin.live_pids(sandbox.home, "bob") == []  # retired, gateway stopped
    by = {(r["profile"], r["action"]): r for r in results}
    assert by[("bob", "removed")]["result"] == "changed"
    assert "not placed on h1" in by[("bob", "removed")]["message"]
    assert by[("bob", "skipped")]["message"] == "not placed on h1"
    assert by[("default", "skipped")]["message"] == "not placed on h1"
    # Settled: a second run changes nothing and still says why bob has no slot here.
    rows = rows_of(run(sandbox, "reconcile", "--json",
                       host_vars=["host_id=h1", "gateway_profiles=[al*]"]))
    assert {p: r["result"] for p, r in rows.items()} == {
        "albert": "ok", "alice": "ok", "default": "skipped", "bob": "skipped"}


def test_gateway_tasks_refuse_a_profile_placed_elsewhere(sandbox, supervisor):
    make_profile(sandbox.home, "bob", {"desired_state": "stopped"})
    place = ["host_id=h1", "gateway_profiles=[al*]"]
    for task in ("gateway.start", "gateway.stop", "gateway.restart"):
        res = run(sandbox, task, "-p", "bob", host_vars=place)
        assert res.returncode == 1, (task, res.stdout, res.stderr)
        assert "not placed on h1" in res.stderr and "Traceback" not in res.stderr
    # gateway.status lists it with the reason instead (SPEC §14.7, §14.8)
    res = run(sandbox, "gateway.status", "-p", "bob", host_vars=place)
    assert res.returncode == 0 and "why: not placed here: not placed on h1" in res.stdout
    assert gateway_slots(sandbox) == []
    assert json.loads((sandbox.home / "profiles/bob/gateway_state.json").read_text()) == {
        "desired_state": "stopped"}


def test_profile_create_on_a_host_not_placing_it_makes_only_the_directory(sandbox, supervisor):
    place = ["host_id=h1", "gateway_profiles=[al*]"]
    res = run(sandbox, "profile.create", "carol", "--json", host_vars=place)
    rows = rows_of(res)
    assert rows["carol"]["result"] == "changed"
    assert "not placed on h1" in rows["carol"]["message"]
    assert (sandbox.home / "profiles/carol/SOUL.md").is_file()
    assert gateway_slots(sandbox) == []
    rows = rows_of(run(sandbox, "profile.create", "carol", "--json", host_vars=place))
    assert rows["carol"]["result"] == "skipped"
    rows = rows_of(run(sandbox, "profile.create", "alma", "--json", host_vars=place))
    assert rows["alma"]["result"] == "changed" and gateway_slots(sandbox) == ["gateway-alma"]


# ----------------------------------------------------------------------------- ownership


class Host:
    """One "host": its own scandir and s6-svscan, the shared volume ``home``."""

    def __init__(self, sb, host_id, home, shared=True):
        self.sb, self.id, self.home = sb, host_id, Path(home)
        self.vars = [f"host_id={host_id}", f"hermes_home={home}",
                     f"shared_volume={'true' if shared else 'false'}"]
        self.sup = None

    def run(self, task, *args, **kw):
        return run(self.sb, task, *args, host_vars=self.vars, **kw)

    def boot(self):
        res = self.run("reconcile", "--json")
        assert res.returncode == 0, res.stderr
        self.sup = s6env.Supervisor(self.sb).start()
        return res

    def gateway_pid(self, profile):
        """The pid of a live stand-in gateway s6 supervises here that holds the lock."""
        st = svstatus.read(str(self.sb.slot(profile)))
        if not st.up or not st.pid or not is_gateway(st.pid):
            return None
        return st.pid if holds_lock(st.pid, self.home, profile) else None


def is_gateway(pid):
    """A live stand-in gateway, not data/own about to exec one (its argv names both)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return standin.is_alive(pid) and not any(a.endswith(b"data/own") for a in argv)


def profile_dir(home, profile):
    return Path(home) if profile == "default" else Path(home) / "profiles" / profile


def holds_lock(pid, home, profile):
    """Whether ``pid`` has the profile's .gateway.lock open with an flock on it."""
    want = str(profile_dir(home, profile) / ".gateway.lock")
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        # The gateway opens and closes its state and event files meanwhile: a descriptor
        # gone between the listing and the look is not the lock's, so look at the next.
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                return "FLOCK" in Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
    return False


def diagnose(hosts, profile):
    """What a failed takeover assertion needs: the stand-in's lifecycle, each host's
    s6-svscan output (its slots' and the agent's lines) and slot status."""
    out = [f"events: {standin.events(hosts[0].home, profile)}"]
    for h in hosts:
        st = svstatus.read(str(h.sb.slot(profile)))
        out.append(f"{h.id} status: {st}")
        for log in (h.sb.root / "svscan.log",
                    h.home / "logs" / "gateways" / profile / h.id / "current"):
            try:
                out.append(f"{h.id} {log.name}:\n" + log.read_text(errors="replace")[-6000:])
            except OSError as exc:
                out.append(f"{h.id} {log.name}: {exc}")
    return "\n".join(out)


def owner_record(home, profile):
    return json.loads((profile_dir(home, profile) / ".gateway-owner.json").read_text())


def runners(hosts, profile):
    """The hosts running the profile's gateway now; also every live stand-in of it."""
    return [h.id for h in hosts if h.gateway_pid(profile)], standin.live_pids(hosts[0].home,
                                                                              profile)


def sample(hosts, profiles, seconds):
    """Every 50 ms for ``seconds``: at most one host runs each profile, never two gateways."""
    end = time.monotonic() + seconds
    seen = {p: set() for p in profiles}
    while time.monotonic() < end:
        for p in profiles:
            on, live = runners(hosts, p)
            assert len(on) <= 1 and len(live) <= 1, (p, on, live)
            seen[p].update(on)
        time.sleep(0.05)
    return seen


@pytest.fixture
def second_sandbox():
    sb = s6env.make_sandbox(service_user=False)
    yield sb
    sb.cleanup()


def test_two_hosts_one_volume_one_owner_each_and_handover(sandbox, second_sandbox):
    home = sandbox.home
    make_profile(home, "default", {"desired_state": "running"})
    make_profile(home, "alice", {"desired_state": "running"})
    a = Host(sandbox, "host-a", home)
    b = Host(second_sandbox, "host-b", home)
    a.boot()
    for p in ("default", "alice"):
        s6env.wait_for(lambda p=p: a.gateway_pid(p), 10, what=f"{p} owned by host-a")
        assert owner_record(home, p)["host_id"] == "host-a"
        assert owner_record(home, p)["pid"] == a.gateway_pid(p)
    b.boot()
    for p in ("default", "alice"):  # b's slots come up as standbys
        s6env.wait_up(b.sb.slot(p), 10)
    seen = sample([a, b], ("default", "alice"), 3)
    assert seen == {"default": {"host-a"}, "alice": {"host-a"}}
    # b says so; a says it owns them.
    res = b.run("gateway.status", "--json")
    assert res.returncode == 0, res.stderr
    docs = {d["profile"]: d for d in json.loads(res.stdout)["gateways"]}
    for p in ("default", "alice"):
        assert docs[p]["up"] is True and docs[p]["standby"] is True, docs[p]
        assert docs[p]["owner"]["host_id"] == "host-a"
    text = b.run("gateway.status", "-p", "alice").stdout
    assert "standby, owned by host-a" in text, text
    docs = {d["profile"]: d for d in json.loads(a.run("gateway.status", "--json").stdout)["gateways"]}
    assert docs["alice"]["standby"] is False and docs["alice"]["owner"]["host_id"] == "host-a"
    # --check says exactly what the run then does (SPEC §7)
    for extra in (["--check"], []):
        res = b.run("gateway.start", "-p", "alice", "--wait", "--json", *extra)
        assert res.returncode == 0, res.stderr
        row = json.loads(res.stdout)["results"][0]
        assert (row["result"], row["message"]) == ("ok", "standby: running on host-a"), extra
    res = b.run("profile.delete", "alice")
    assert res.returncode == 1 and "running on host-a" in res.stderr
    assert (home / "profiles" / "alice" / "SOUL.md").exists()
    assert sample([a, b], ("default", "alice"), 0.5) == {"default": {"host-a"},
                                                          "alice": {"host-a"}}
    # Host a goes away: its supervision tree ends. b takes over within 3 s.
    t0 = time.monotonic()
    a.sup.svscanctl("-t")

    def b_runs_all():
        return all(b.gateway_pid(p) for p in ("default", "alice"))

    while not b_runs_all():
        for p in ("default", "alice"):
            on, live = runners([a, b], p)
            assert len(on) <= 1 and len(live) <= 1, (p, on, live)
        assert time.monotonic() - t0 < 3, "standby did not take over within 3 s"
        time.sleep(0.05)
    for p in ("default", "alice"):
        pid = b.gateway_pid(p)
        assert owner_record(home, p) == {**owner_record(home, p), "host_id": "host-b",
                                         "pid": pid}, diagnose([a, b], p)
    s6env.wait_for(lambda: not a.sup.alive(), 10, what="host-a's s6-svscan gone")
    b.sup.stop()


def test_check_on_a_shared_volume_needs_this_hosts_owner_record(sandbox):
    """SPEC §5: on a shared volume, ready also means this host holds the ownership record
    for the supervised pid (pids of other hosts' containers may repeat ours)."""
    home = sandbox.home
    make_profile(home, "alice", {"desired_state": "running"})
    a = Host(sandbox, "host-a", home)
    a.boot()
    pid = s6env.wait_for(lambda: a.gateway_pid("alice"), 10, what="alice on host-a")
    d = profile_dir(home, "alice")
    env = {"HERMES_TASKS_SUPERVISED_PID": str(pid), "HERMES_HOME": str(home),
           "PATH": "/usr/bin:/bin"}

    def check() -> int:
        return subprocess.run(["/bin/sh", "./data/check"], cwd=a.sb.slot("alice"),
                              env=env).returncode

    s6env.wait_for(lambda: check() == 0, 10, what="alice ready by data/check")
    record = owner_record(home, "alice")
    assert record["pid"] == pid
    for forged in ({**record, "host_id": "host-b"}, {**record, "pid": pid + 1}, {}):
        (d / ".gateway-owner.json").write_text(json.dumps(forged))
        assert check() == 1, forged
    (d / ".gateway-owner.json").write_text(json.dumps(record))
    assert check() == 0
    a.sup.stop()


def alice_on_host_a(sandbox, second_sandbox):
    """Two hosts placing only alice on one volume; host a booted and running alice."""
    make_profile(sandbox.home, "alice", {"desired_state": "running"})
    a = Host(sandbox, "host-a", sandbox.home)
    b = Host(second_sandbox, "host-b", sandbox.home)
    for h in (a, b):
        h.vars.append("gateway_profiles=[alice]")
    a.boot()
    s6env.wait_for(lambda: a.gateway_pid("alice"), 10, what="alice on host-a")
    return a, b


def test_standby_stays_down_when_the_profile_was_stopped_meanwhile(sandbox, second_sandbox):
    home = sandbox.home
    a, b = alice_on_host_a(sandbox, second_sandbox)
    b.boot()
    s6env.wait_up(b.sb.slot("alice"), 10)
    # The operator stops alice (on a); then host a goes away entirely.
    res = a.run("gateway.stop", "-p", "alice", "--wait")
    assert res.returncode == 0, res.stderr
    a.sup.svscanctl("-t")
    # b's standby takes the lock, reads desired_state=stopped, and exits 0: finish keeps it down.
    def settled_down():
        st = svstatus.read(str(b.sb.slot("alice")))
        return not (st.up or st.finishing or st.wanted_up)

    s6env.wait_for(settled_down, 8, what="b's standby down and wanted down")
    assert standin.live_pids(home, "alice") == []
    assert svstatus.read(str(b.sb.slot("alice"))).exit_code == 0
    log = home / "logs" / "gateways" / "alice" / "host-b" / "current"
    s6env.wait_for(lambda: log.exists() and "staying down" in log.read_text(), 5,
                   what="b's log line")
    b.sup.stop()


def test_another_hosts_pid_files_are_removed_before_the_gateway_starts(sandbox, second_sandbox):
    """--replace must never act on a pid recorded by another host."""
    home = sandbox.home
    d = make_profile(home, "alice", {"desired_state": "running"})
    (d / ".gateway-owner.json").write_text('{"host_id": "elsewhere", "pid": 1, "since": "x"}')
    (d / "gateway.pid").write_text('{"pid": 1}')
    (d / "processes.json").write_text("[]")
    a = Host(sandbox, "host-a", home)
    a.vars.append("gateway_profiles=[alice]")
    a.boot()
    s6env.wait_for(lambda: a.gateway_pid("alice") and standin.starts(home, "alice"), 10,
                   what="alice on host-a")
    start = standin.starts(home, "alice")[-1]
    assert not (d / "gateway.pid").exists() and not (d / "processes.json").exists()
    assert owner_record(home, "alice")["host_id"] == "host-a"
    assert start["pid"] == owner_record(home, "alice")["pid"]
    # Our own record: a restart keeps gateway.pid for hermes's --replace on this host.
    (d / "gateway.pid").write_text('{"pid": 1}')
    subprocess.run([str(s6env.S6_BIN / "s6-svc"), "-r", str(a.sb.slot("alice"))], check=True)
    s6env.wait_for(lambda: len(standin.starts(home, "alice")) == 2 and a.gateway_pid("alice"),
                   10, what="alice restarted")
    assert (d / "gateway.pid").exists()
    a.sup.stop()


def test_ownership_as_the_service_user(root_sandbox):
    """As root, data/own runs after the privilege drop: the lock and the record are the
    service user's, and the gateway holding the lock runs as that user."""
    sb = root_sandbox
    d = make_profile(sb.home, "alice", {"desired_state": "running"})
    own(sb, sb.home)
    a = Host(sb, "host-a", sb.home, shared=False)
    a.vars.append("gateway_profiles=[alice]")
    a.boot()
    s6env.wait_for(lambda: a.gateway_pid("alice") and standin.starts(sb.home, "alice"), 10,
                   what="alice up")
    assert standin.starts(sb.home, "alice")[-1]["uid"] == sb.user.uid
    for name in (".gateway.lock", ".gateway-owner.json"):
        st = (d / name).stat()
        assert (st.st_uid, st.st_gid) == (sb.user.uid, sb.user.gid), name
    assert owner_record(sb.home, "alice")["pid"] == a.gateway_pid("alice")
    own_script = sb.slot("alice") / "data" / "own"
    st = own_script.stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o755)
    # Not shared: the logs keep their single-host place.
    assert (sb.home / "logs" / "gateways" / "alice" / "current").exists()
    a.sup.stop()


def test_stale_pid_files_are_swept_only_while_the_ownership_lock_is_free(sandbox,
                                                                         second_sandbox):
    a, b = alice_on_host_a(sandbox, second_sandbox)
    d = sandbox.home / "profiles" / "alice"
    (d / "gateway.pid").write_text('{"pid": 12345}')
    # b has no supervisor yet: its slot is not up, but host a's gateway holds the lock.
    res = b.run("reconcile")
    assert res.returncode == 0, res.stderr
    assert (d / "gateway.pid").exists()
    a.sup.stop()
    res = b.run("reconcile")
    assert res.returncode == 0, res.stderr
    assert not (d / "gateway.pid").exists()
