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
