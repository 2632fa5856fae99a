"""Property (SPEC §13.8): on random homes under real s6, the rows of ``reconcile --check`` equal
the rows of the real run that follows, in (profile, slot, action, result)."""

from __future__ import annotations

import json
import os
import shutil
import stat

import s6env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_tasks import engine, inventory
from hermes_tasks.errors import TaskError
from hermes_tasks.intent import CREATE, DELETE, RECONCILE, RESTART, START, STOP, Intent

STATES = st.sampled_from(["running", "stopped", "startup_failed", None, "draining"])
NAMES = st.lists(st.sampled_from(["alice", "bob", "carol", "dan", "eve"]), unique=True,
                 max_size=4)


def rows(res) -> list[tuple]:
    assert res.returncode in (0, 2), (res.returncode, res.stdout, res.stderr)
    doc = json.loads(res.stdout)
    return [(r["profile"], r["slot"], r["action"], r["result"]) for r in doc["results"]]


def write(home, name, state):
    s6env.make_profile(home, name, {"desired_state": state} if state else {})


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(before=st.dictionaries(st.sampled_from(["default", "alice", "bob", "carol"]), STATES),
       after=st.dictionaries(st.sampled_from(["default", "alice", "bob", "carol", "dan"]),
                             STATES),
       removed=NAMES, stale=NAMES, env=st.booleans(), taken_down=NAMES)
def test_check_rows_equal_the_following_run(before, after, removed, stale, env, taken_down):
    sb = s6env.make_sandbox(service_user=False)
    try:
        with s6env.Supervisor(sb):
            for name, state in before.items():
                write(sb.home, name, state)
            res = s6env.run_tasks(sb, "reconcile", "--wait", "--timeout", "20", "--json")
            assert res.returncode == 0, res.stdout + res.stderr
            # the world moves on: states change, profiles come and go, gateways are taken
            # down through s6, stale runtime files appear, the template's input changes
            for name, state in after.items():
                write(sb.home, name, state)
            for name in removed:
                shutil.rmtree(sb.home / "profiles" / name, ignore_errors=True)
            for name in stale:
                d = sb.home / "profiles" / name
                if d.is_dir():
                    (d / "gateway.pid").write_text("1\n")
            for name in taken_down:
                slot = sb.slot(name)
                if (slot / "supervise" / "status").exists():
                    s6env.subprocess.run([s6env.S6_BIN / "s6-svc", "-wD", "-T5000", "-d",
                                          slot], check=False, timeout=20)
            extra = ["--var", 'extra_env={HT_X: "1"}'] if env else []
            check = rows(s6env.run_tasks(sb, "reconcile", "--check", "--json", *extra))
            run = rows(s6env.run_tasks(sb, "reconcile", "--json", *extra))
            assert check == run
    finally:
        sb.cleanup()


# --------------------------------------------------------------- random tasks, root and user

# (task, args): a gateway.* or profile.* task on a known profile, or reconcile
TASKS = st.one_of(
    st.just(("reconcile",)),
    st.tuples(st.sampled_from(["gateway.start", "gateway.stop", "gateway.restart"]),
              st.just("-p"), st.sampled_from(["default", "alice", "bob", "carol"])),
    st.sampled_from([("gateway.stop", "--all"), ("gateway.restart", "--all")]),
    st.tuples(st.just("profile.create"), st.sampled_from(["carol", "dan", "alice"])),
    st.tuples(st.just("profile.create"), st.sampled_from(["dan", "erin"]), st.just("--start")),
    st.tuples(st.just("profile.delete"), st.sampled_from(["alice", "bob", "dan", "nobody"])),
    st.tuples(st.just("profile.delete"), st.sampled_from(["bob", "erin"]), st.just("--purge")),
)
WAITS = ("reconcile", "gateway.start", "gateway.stop", "gateway.restart")


def outcome(res) -> tuple:
    """(exit code, error, rows): what a task said, compared between --check and the run."""
    doc = json.loads(res.stdout)  # one object, errors included
    assert "Traceback" not in res.stderr, res.stderr
    return (res.returncode, doc.get("error"),
            [(r["profile"], r["slot"], r["action"], r["result"]) for r in doc["results"]])


def settle(sb) -> None:
    """Wait until no gateway is between states (up == wanted up), so a task's --check and
    its run see the same runtime (SPEC §14.2: when every gateway behaves)."""
    def calm():
        for slot in sb.scandir.glob("gateway-*"):
            if not (slot / "supervise" / "status").exists():
                continue
            try:
                st_ = s6env.svstat(slot, ("up", "wantedup"))
            except s6env.subprocess.CalledProcessError:
                continue
            if st_["up"] != st_["wantedup"]:
                return False
        return True
    s6env.wait_for(calm, 30, what="every gateway settled")


@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(states=st.fixed_dictionaries({n: STATES for n in ("default", "alice", "bob")}),
       steps=st.lists(st.tuples(st.sampled_from(["root", "user"]), TASKS), min_size=4,
                      max_size=7))
def test_check_equals_run_for_any_task_as_root_and_as_the_service_user(states, steps):
    """SPEC §14.1–§14.2: a task's --check and its run say the same, whoever runs it; the
    service user's goes through the registrar, which plans and runs it as root."""
    sb = s6env.make_sandbox(service_user=True)
    try:
        with s6env.Supervisor(sb):
            for name, state in states.items():
                write(sb.home, name, state)
            s6env.own(sb, sb.home)
            res = s6env.run_tasks(sb, "reconcile", "--wait", "--timeout", "20", "--json")
            assert res.returncode in (0, 2), res.stdout + res.stderr
            s6env.wait_for(lambda: (sb.scandir / "hermes-tasks-registrar" / "data"
                                    / "registrar.sock").exists(), 10, what="the registrar")
            for who, task in steps:
                user = sb.user if who == "user" else None
                args = [*task, "--json"]
                if task[0] in WAITS:
                    args += ["--wait", "--timeout", "20"]
                settle(sb)
                check = outcome(s6env.run_tasks(sb, *args, "--check", user=user))
                run = outcome(s6env.run_tasks(sb, *args, user=user))
                assert check == run, (who, task)
    finally:
        sb.cleanup()


class Recorder:
    """Stands in for the executor (engine.run's ``executor``): records, changes nothing."""

    calls: list = []

    def __init__(self, settings, warn=None):
        self.errors, self.notes = {}, {}

    def run(self, steps, stale=(), scanner=None, wait=(False, 0.0)):
        Recorder.calls.append(("run", [s.slot for s in steps if s.alters], list(stale)))

    def apply(self, change):
        Recorder.calls.append((type(change).__name__, change.describe(False)))


def snapshot(sb) -> dict:
    """Everything on the volume and in the scandir (but the lock's pid and s6's own
    supervise/event state), and every slot's s6 status."""
    out = {}
    for root in (sb.home, sb.scandir):
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in ("supervise", "event", ".s6-svscan")]
            for name in [*dirs, *files]:
                path = os.path.join(dirpath, name)
                if name == ".hermes-tasks.lock":
                    continue
                st_ = os.lstat(path)
                out[path] = (st_.st_mode, st_.st_uid, st_.st_ino, st_.st_size,
                             st_.st_mtime_ns if not stat.S_ISDIR(st_.st_mode) else 0)
    for slot in sb.scandir.iterdir():
        if (slot / "supervise" / "status").exists():
            out[f"s6:{slot.name}"] = s6env.svstat(slot, ("up", "wantedup", "normallyup", "pid"))
    return out


INTENTS = st.one_of(
    st.just(Intent(RECONCILE)),
    st.builds(lambda t, n: Intent(t, frozenset({n})),
              st.sampled_from([START, STOP, RESTART]), st.sampled_from(["default", "alice", "bob"])),
    st.builds(lambda t: Intent(t, all=True), st.sampled_from([STOP, RESTART])),
    st.builds(lambda n, s: Intent(CREATE, frozenset({n}), start=s),
              st.sampled_from(["carol", "alice"]), st.booleans()),
    st.builds(lambda n, p: Intent(DELETE, frozenset({n}), purge=p),
              st.sampled_from(["alice", "bob"]), st.booleans()),
)


@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(states=st.fixed_dictionaries({n: STATES for n in ("default", "alice", "bob")}),
       intents=st.lists(INTENTS, min_size=3, max_size=5), ports=st.booleans())
def test_a_run_with_a_recording_executor_changes_nothing(states, intents, ports):
    """Every write and signal of a run is the executor's: with a recorder in its place the
    volume, the scandir and s6 stay exactly as they were, and the plan it was handed is the
    one --check reports."""
    sb = s6env.make_sandbox(service_user=False)
    try:
        with s6env.Supervisor(sb):
            for name, state in states.items():
                write(sb.home, name, state)
            if ports:  # an API server to allocate a port for (gateway-ports.json)
                (sb.home / "profiles" / "alice" / ".env").write_text("API_SERVER_ENABLED=true\n")
            res = s6env.run_tasks(sb, "reconcile", "--wait", "--timeout", "20", "--json")
            assert res.returncode in (0, 2), res.stdout + res.stderr
            s6env.wait_for(lambda: (sb.scandir / "hermes-tasks-registrar" / "data"
                                    / "registrar.sock").exists(), 10, what="the registrar")
            cfg = inventory.load(None, [a for a in s6env.inventory_args(sb) if a != "--var"],
                                 environ={})
            for intent in intents:
                settle(sb)
                before = snapshot(sb)
                Recorder.calls = []
                try:
                    planned = engine.run(cfg, intent, check=True, warn=lambda _m: None).rows
                    got = engine.run(cfg, intent, executor=Recorder, warn=lambda _m: None).rows
                except TaskError:
                    continue  # refused as a whole (e.g. a profile not placed): nothing ran
                assert snapshot(sb) == before, intent
                kinds = [c[0] for c in Recorder.calls]
                if kinds[:1] == ["AllocatePorts"]:  # the ports the plan used, recorded first
                    kinds = kinds[1:]
                assert kinds[:2] == ["run", "SaveCaches"] and kinds[-1] == "UndoFailedCreates"
                assert ([(r.profile, r.slot, r.action, r.result) for r in got]
                        == [(r.profile, r.slot, r.action, r.result) for r in planned]), intent
    finally:
        sb.cleanup()


def test_delete_purge_check_says_it_would_delete(sandbox, supervisor):
    """--purge is in the plan, so --check says what the run does (not "move to .trash")."""
    sb = sandbox
    write(sb.home, "bob", "stopped")
    assert s6env.run_tasks(sb, "reconcile").returncode == 0
    check = json.loads(s6env.run_tasks(sb, "profile.delete", "bob", "--purge", "--check",
                                       "--json").stdout)["results"]
    assert check[0]["message"].endswith("would delete the profile"), check
    assert (sb.home / "profiles" / "bob").is_dir()
    run = json.loads(s6env.run_tasks(sb, "profile.delete", "bob", "--purge", "--json").stdout)
    assert run["results"][0]["message"].endswith("deleted the profile"), run
    assert not (sb.home / "profiles" / "bob").exists()
    assert list((sb.home / ".trash" / "profiles").iterdir()) == []
