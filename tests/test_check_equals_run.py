"""Property (SPEC §13.8): on random homes under real s6, the rows of ``reconcile --check`` equal
the rows of the real run that follows, in (profile, slot, action, result)."""

from __future__ import annotations

import json
import shutil

import s6env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
