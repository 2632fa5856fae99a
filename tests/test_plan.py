"""The pure planner over hand-made SlotSpec / SlotFacts: which step, which files, which handler."""

from __future__ import annotations

import difflib

import pytest

from hermes_tasks import changes as ch
from hermes_tasks import plan, svstatus
from hermes_tasks.facts import Facts
from hermes_tasks.facts.runtime import Runtime
from hermes_tasks.intent import Intent
from hermes_tasks.inventory import Settings
from hermes_tasks.profiles import Profile, Skipped
from hermes_tasks.render import REGISTRAR, File, SlotSpec
from hermes_tasks.report import describe
from hermes_tasks.slots import SlotFacts

RUN = b"#!/bin/sh\nexec 2>&1\nexec hermes -p alice gateway run --replace\n"
FINISH = b"#!/bin/sh\ncase \"$1\" in 0|78) exit 125 ;; *) exit 0 ;; esac\n"
LOG_RUN = b"#!/bin/sh\nexec s6-log 1 n10 s1000000 T \"$HERMES_HOME/logs/gateways/alice\"\n"


def spec(name="gateway-alice", down=False, run=RUN, finish=FINISH, log_run=LOG_RUN) -> SlotSpec:
    return SlotSpec(name, {
        "type": File(b"longrun\n", 0o644),
        "run": File(run, 0o755),
        "finish": File(finish, 0o755),
        "log/run": File(log_run, 0o755),
    }, down=down)


def facts(s: SlotSpec, *, down=None, skeleton_ok=True, structural=None, **files) -> SlotFacts:
    """Facts of a slot identical to ``s``, with ``files`` overriding some entries:
    ``run=(bytes, mode)`` or ``run=None`` (missing). Use ``log_run`` for ``log/run``."""
    found = {rel: (f.content, f.mode) for rel, f in s.files.items()}
    for key, value in files.items():
        found[key.replace("_", "/") if key == "log_run" else key] = value
    return SlotFacts(s.name, f"/scan/{s.name}", found, s.down if down is None else down,
                     skeleton_ok, structural)


def step_for(s, f, profile="alice", prior=None):
    return plan.plan_slot(s, f, profile, prior)


def kinds(step) -> list[str]:
    return [type(c).__name__ for c in step.changes]


def written(step) -> tuple[str, ...]:
    w = step.get(ch.WriteFiles)
    return w.files if w else ()


def restarts(step) -> tuple[bool, bool]:
    """(the gateway owes a restart, the logger is restarted)."""
    debt = step.get(ch.OwedRestarts)
    return bool(debt and debt.gateway), step.has(ch.RestartLogger)


def marker(step) -> bool | None:
    m = step.get(ch.SetMarker)
    return None if m is None else m.down


_RUNTIME = {ch.BringUp: "up", ch.BringDown: "down", ch.RestartGateway: "restart"}


def planned_runtime(step) -> str | None:
    c = step.get(ch.RUNTIME)
    return _RUNTIME[type(c)] if c else None


def sweep(step):
    c = step.get(ch.SweepStale)
    return c.parts if c else None


# ------------------------------------------------------------------------- plan_slot


@pytest.mark.parametrize("down", [False, True])
def test_identical_slot_is_ok_and_plans_nothing(down):
    s = spec(down=down)
    step = step_for(s, facts(s), prior="running")
    assert step.changes == () and not step.alters and step.skip is None
    assert step.action == ("registered" if down else "started")
    assert step.prior_state == "running"
    assert plan.diff(step) == ""


def test_absent_slot_is_created_whole():
    s = spec(down=True)
    step = step_for(s, None)
    assert kinds(step) == ["Publish"] and step.alters
    assert tuple(step.get(ch.Publish).spec.files) == ("type", "run", "finish", "log/run")
    assert step.get(ch.Publish).marker is True
    assert step.action == "registered"


@pytest.mark.parametrize("rel", ["run", "finish"])
def test_changed_gateway_file_is_updated_and_restarts_the_gateway(rel):
    s = spec()
    old = (b"#!/bin/sh\nexec old\n", 0o755)
    step = step_for(s, facts(s, **{rel: old}))
    assert kinds(step) == ["WriteFiles", "OwedRestarts"]
    assert written(step) == (rel,)
    assert step.get(ch.WriteFiles).before == {rel: old}
    assert restarts(step) == (True, False)


def test_changed_log_run_restarts_only_the_logger():
    s = spec()
    step = step_for(s, facts(s, log_run=(b"#!/bin/sh\nexec s6-log n3\n", 0o755)))
    assert kinds(step) == ["WriteFiles", "OwedRestarts", "RestartLogger"]
    assert written(step) == ("log/run",)
    assert restarts(step) == (False, True)


def test_changed_type_restarts_nothing():
    s = spec()
    step = step_for(s, facts(s, type=(b"oneshot\n", 0o644)))
    assert kinds(step) == ["WriteFiles"] and written(step) == ("type",)


def test_mode_only_change_is_a_change():
    s = spec()
    step = step_for(s, facts(s, run=(RUN, 0o644)))
    assert written(step) == ("run",) and restarts(step) == (True, False)
    text = plan.diff(step)
    assert text == ("--- before: gateway-alice/run (mode 0644)\n"
                    "+++ after: gateway-alice/run (mode 0755)\n")


def test_foreign_or_unreadable_file_is_rewritten():
    s = spec()
    step = step_for(s, facts(s, finish=(b"", -1)))  # what slots.read_at reports for a symlink
    assert written(step) == ("finish",)
    assert "(mode unknown" in plan.diff(step)


def test_missing_file_is_written():
    s = spec()
    step = step_for(s, facts(s, run=None, log_run=None))
    assert written(step) == ("run", "log/run")
    assert restarts(step) == (True, True)
    text = plan.diff(step)
    assert "--- before: gateway-alice/run (absent)\n+++ after: gateway-alice/run\n" in text


@pytest.mark.parametrize("want_down", [False, True])
def test_down_marker_only_change_signals_nothing(want_down):
    s = spec(down=want_down)
    step = step_for(s, facts(s, down=not want_down))
    assert kinds(step) == ["SetMarker"] and step.alters
    assert marker(step) is want_down
    before, after = ("absent", "present") if want_down else ("present", "absent")
    assert plan.diff(step) == (f"--- before: gateway-alice/down ({before})\n"
                               f"+++ after: gateway-alice/down ({after})\n")
    assert describe(step, check=False) == (
        "added the down marker" if want_down else "removed the down marker")


def test_bad_skeleton_is_repaired_without_restart():
    s = spec()
    step = step_for(s, facts(s, skeleton_ok=False))
    assert kinds(step) == ["RepairSkeleton"]
    assert describe(step, check=True) == "would repair supervise/event permissions"


def test_structural_problem_plans_a_swap_of_the_whole_slot():
    s = spec()
    f = facts(s, structural="has no log/ directory", log_run=None)
    step = step_for(s, f)
    # the swap starts a fresh supervisor: no in-place handlers
    assert kinds(step) == ["Replace"]
    swap = step.get(ch.Replace)
    assert swap.reason == "gateway-alice has no log/ directory"
    assert swap.before["log/run"] is None and swap.before["run"] == (RUN, 0o755)
    assert describe(step, check=True) == "would be replaced: gateway-alice has no log/ directory"


def test_everything_at_once_is_one_update_with_both_handlers():
    s = spec(down=True)
    step = step_for(s, facts(s, down=False, skeleton_ok=False, run=(b"x\n", 0o755),
                             log_run=(b"y\n", 0o700)))
    assert kinds(step) == ["WriteFiles", "SetMarker", "RepairSkeleton", "OwedRestarts",
                           "RestartLogger"]
    assert written(step) == ("run", "log/run") and marker(step) is True
    assert restarts(step) == (True, True)
    assert describe(step, check=True) == (
        "would rewrite run, log/run; would add the down marker; would repair supervise/event "
        "permissions; would restart the logger")
    assert describe(step, check=False, done=["restarted the gateway"]) == (
        "rewrote run, log/run; added the down marker; repaired supervise/event permissions; "
        "restarted the gateway")


def test_unlogged_slot_never_restarts_a_logger():
    s = SlotSpec(REGISTRAR, {"run": File(b"#!/bin/sh\n", 0o755)}, down=False, logged=False)
    step = step_for(s, SlotFacts(REGISTRAR, "/scan/x", {"run": (b"#!/bin/sh\nold\n", 0o755)},
                                 False, True))
    assert written(step) == ("run",) and restarts(step) == (True, False)


# ------------------------------------------------------------------------- build


def profile(name, autostart=True, state="running", stale=True):
    parts = () if name == "default" else ("profiles", name)
    return Profile(name, parts, state, autostart, stale=stale)


def world(desired, found, skipped=(), existing=(), runtime=None, scanner=True):
    """Facts as gathered, for build(): the profiles of ``desired`` and the slots ``found``."""
    profiles = [p for p, _ in desired if p is not None]
    f = Facts(Settings(scandir="/scan"), profiles, list(skipped), sorted(existing), [], scanner,
              dict(found), dict(runtime or {}))
    return f


def test_build_orders_rows_and_retires_unknown_slots():
    d, a, b = spec("gateway-default"), spec("gateway-alice"), spec("gateway-bob", down=True)
    reg = SlotSpec(REGISTRAR, {"run": File(b"#!/bin/sh\n", 0o755)}, down=False, logged=False)
    desired = [(profile("default"), d), (profile("alice"), a),
               (profile("bob", False, "stopped"), b), (None, reg)]
    found = {"gateway-default": facts(d), "gateway-alice": facts(a, run=(b"old\n", 0o755)),
             "gateway-bob": None, REGISTRAR: None}
    skipped = [Skipped("Bad.Name", "invalid profile name")]
    existing = ["gateway-alice", "gateway-default", "gateway-zoe", REGISTRAR, "other-service"]
    steps = plan.build(Intent("reconcile"), world(desired, found, skipped, existing), desired,
                       450)

    assert [(s.slot, s.profile, kinds(s), s.action) for s in steps] == [
        ("gateway-default", "default", ["SweepStale"], "started"),
        ("gateway-alice", "alice", ["WriteFiles", "OwedRestarts", "SweepStale"], "started"),
        ("gateway-bob", "bob", ["Publish", "SweepStale"], "registered"),
        (REGISTRAR, REGISTRAR, ["Publish"], "started"),
        (None, "Bad.Name", [], "skipped"),
        ("gateway-zoe", "zoe", ["Retire"], "removed"),
    ]
    assert steps[4].skip == "invalid profile name"
    assert [sweep(s) for s in steps[:4]] == [(), ("profiles", "alice"), ("profiles", "bob"), None]
    assert steps[2].prior_state == "stopped"
    # a sweep of stale runtime files is a change too (reported, SPEC §4)
    assert [s.alters for s in steps] == [True, True, True, True, False, True]
    assert steps[5].get(ch.Retire).reason == "its profile no longer exists"
    assert plan.diff(steps[5]) == ("--- before: gateway-zoe (present)\n"
                                   "+++ after: gateway-zoe (absent)\n")
    assert describe(steps[5], check=False) == "retired: its profile no longer exists"
    assert describe(steps[4], check=False) == "invalid profile name"
    assert describe(steps[0], check=True) == "would remove stale runtime files"


def test_only_profiles_with_stale_files_are_swept():
    s = spec()
    desired = [(profile("alice", stale=False), s)]
    steps = plan.build(Intent("reconcile"), world(desired, {s.name: None}), desired, 450)
    assert sweep(steps[0]) is None


def test_stale_files_of_a_gateway_that_is_up_are_kept():
    s = spec()
    desired = [(profile("alice"), s)]
    up = {s.name: rt(up=True, wanted_up=True)}
    steps = plan.build(Intent("reconcile"), world(desired, {s.name: facts(s)}, (), [s.name], up),
                       desired, 450)
    assert sweep(steps[0]) is None and not steps[0].alters


def test_a_gateway_task_keeps_unknown_slots():
    a = spec("gateway-alice")
    desired = [(profile("alice"), a)]
    steps = plan.build(Intent("start", frozenset({"alice"})),
                       world(desired, {"gateway-alice": facts(a)}, (),
                             ["gateway-alice", "gateway-zoe"]), desired, 450)
    assert [s.slot for s in steps] == ["gateway-alice"]


def test_capacity_fails_the_profiles_past_max_slots_by_name():
    names = ["default", "carol", "alice", "bob"]
    desired = [(profile(n), spec(f"gateway-{n}")) for n in names]
    desired.append((None, SlotSpec(REGISTRAR, {}, down=False, logged=False)))
    steps = plan.build(Intent("reconcile"), world(desired, {}), desired, 2)
    by_slot = {s.slot: s for s in steps}
    assert by_slot["gateway-default"].get(ch.Publish).first
    assert not by_slot["gateway-alice"].get(ch.Publish).first
    for n in ("bob", "carol"):
        assert by_slot[f"gateway-{n}"].skip is not None and not by_slot[f"gateway-{n}"].changes
        assert "max_slots (2)" in by_slot[f"gateway-{n}"].failure
        assert "s6-overlay" in by_slot[f"gateway-{n}"].failure
    assert by_slot[REGISTRAR].get(ch.Publish).first


def rt(supervised=True, up=False, wanted_up=False, normally_up=True, exit_code=None,
       reason=""):
    st = svstatus.Status(supervised=supervised, up=up, wanted_up=wanted_up,
                         normally_up=normally_up, pid=42 if up else None,
                         exit_code=None if up else exit_code)
    return Runtime(st, reason)


# desired state × what runs (s6) → what reconcile (or gateway.start) plans (SPEC §6)
RUNTIME_TABLE = [
    # task, desired running?, runtime facts, planned runtime change, failure
    ("reconcile", True, rt(up=True, wanted_up=True), None, ""),
    ("reconcile", True, rt(normally_up=False, exit_code=0), "up", ""),  # never started
    ("reconcile", True, rt(exit_code=1), "up", ""),  # taken down through s6 (-d)
    ("reconcile", True, rt(exit_code=None), "up", ""),  # killed by a signal, wanted down
    ("reconcile", True, rt(exit_code=78, reason="Port 8642 already in use"), None,
     "exited 78: Port 8642 already in use"),
    ("reconcile", True, rt(exit_code=0), None, "exited 0"),
    ("reconcile", True, rt(wanted_up=True, exit_code=1), None, ""),  # s6 restarts it itself
    ("reconcile", False, rt(up=True, wanted_up=True), "down", ""),
    ("reconcile", False, rt(wanted_up=True, exit_code=1), "down", ""),
    ("reconcile", False, rt(exit_code=78), None, ""),
    ("reconcile", False, rt(normally_up=False, exit_code=0), None, ""),
    ("reconcile", True, rt(supervised=None), None, ""),  # may not tell: leave it to s6
    ("start", True, rt(exit_code=78, reason="x"), "up", ""),  # explicit: brought back
    ("start", True, rt(up=True, wanted_up=True), None, ""),
    ("restart", True, rt(up=True, wanted_up=True), "restart", ""),
    ("restart", True, rt(exit_code=0), "up", ""),
    ("stop", False, rt(up=True, wanted_up=True), "down", ""),
    ("stop", False, rt(supervised=False), None, "not supervised"),
]


@pytest.mark.parametrize("task,running,runtime,change,failure", RUNTIME_TABLE)
def test_runtime_convergence_table(task, running, runtime, change, failure):
    s = spec(down=not running)
    state = "running" if running else "stopped"
    desired = [(profile("alice", running, state, stale=False), s)]
    intent = Intent(task) if task == "reconcile" else Intent(task, frozenset({"alice"}))
    known = world(desired, {s.name: facts(s, down=not runtime.status.normally_up)}, (),
                  [s.name], {s.name: runtime})
    step = plan.build(intent, known, desired, 450)[0]
    assert planned_runtime(step) == change
    assert (failure in step.failure) if failure else step.failure == ""
    assert step.action in ({"started", "registered"} if task == "reconcile"
                           else {"started", "stopped", "restarted"})


def test_changed_run_restarts_only_a_gateway_that_is_up():
    s = spec()
    desired = [(profile("alice", stale=False), s)]
    for runtime, change in ((rt(up=True, wanted_up=True), "restart"),
                            (rt(wanted_up=True, exit_code=1), None)):
        known = world(desired, {s.name: facts(s, run=(b"old\n", 0o755))}, (), [s.name],
                      {s.name: runtime})
        step = plan.build(Intent("reconcile"), known, desired, 450)[0]
        assert restarts(step)[0] and planned_runtime(step) == change


# ------------------------------------------------------------------------- diff


def test_diff_is_a_unified_diff_per_changed_file():
    s = spec(run=RUN.replace(b"exec 2>&1\n", b"exec 2>&1\nexport HT_X=1\n"))
    step = step_for(s, facts(s, run=(RUN, 0o755), log_run=(b"old\n", 0o755)))
    text = plan.diff(step)
    expected = "".join(difflib.unified_diff(
        RUN.decode().splitlines(True), s.files["run"].content.decode().splitlines(True),
        "before: gateway-alice/run", "after: gateway-alice/run"))
    assert text.startswith(expected)
    assert "\n+export HT_X=1\n" in text
    assert "--- before: gateway-alice/log/run\n+++ after: gateway-alice/log/run\n" in text
    assert "-old\n" in text


def test_diff_of_a_new_slot_shows_every_file_and_the_marker():
    step = step_for(spec(down=True), None)
    text = plan.diff(step)
    for rel in ("type", "run", "finish", "log/run"):
        assert f"--- before: gateway-alice/{rel} (absent)\n+++ after: gateway-alice/{rel}\n" in text
    assert text.endswith("--- before: gateway-alice/down (absent)\n"
                         "+++ after: gateway-alice/down (present)\n")


def test_diff_marks_a_missing_final_newline():
    s = spec(run=b"#!/bin/sh\nexec x")
    text = plan.diff(step_for(s, facts(s, run=(b"#!/bin/sh\nexec y\n", 0o755))))
    assert "+exec x\n\\ No newline at end of file\n" in text


# ------------------------------------------------------------------------- owed restarts


def test_restart_left_pending_is_planned_even_when_files_are_identical():
    s = spec()
    f = facts(s)
    f.pending = frozenset({"gateway"})
    step = step_for(s, f)
    assert kinds(step) == ["OwedRestarts"] and step.alters
    assert step.get(ch.OwedRestarts).pending == {"gateway"} and restarts(step) == (True, False)
    assert describe(step, check=True) == "would finish a restart an earlier run left pending"


def test_gateway_taken_down_by_an_interrupted_restart_is_brought_up():
    s = spec()
    f = facts(s)
    f.pending = frozenset({"gateway", "gateway-up", "logger"})
    step = step_for(s, f)
    assert restarts(step) == (True, True)
    assert "gateway-up" in step.get(ch.OwedRestarts).pending


def test_pending_is_ignored_by_a_swap():
    s = spec()
    f = facts(s, structural="has no log/ directory")
    f.pending = frozenset({"gateway"})
    step = step_for(s, f)
    assert kinds(step) == ["Replace"]


def test_temp_files_left_in_a_slot_are_removed_without_restart():
    s = spec()
    f = facts(s)
    f.litter = (".run.hermes-tasks.tmp", "log/.run.hermes-tasks.tmp")
    step = step_for(s, f)
    assert kinds(step) == ["RemoveLitter"]
    assert describe(step, check=False) == (
        "removed temp files left by an interrupted run: .run.hermes-tasks.tmp, "
        "log/.run.hermes-tasks.tmp")


def test_placement_and_blocked_gateways_are_facts_the_plan_obeys():
    """Hooks for SPEC §11/§12: a profile placed elsewhere gets no slot and a skipped row (an
    existing slot is retired, saying why); a blocked gateway is failed before it is started:
    registered down if it is down, left running as it is if it is up."""
    d, a, b = spec("gateway-default"), spec("gateway-alice"), spec("gateway-bob")
    desired = [(profile("default", stale=False), d), (profile("alice", stale=False), a),
               (profile("bob", stale=False), b)]
    known = world(desired, {"gateway-default": facts(d), "gateway-bob": facts(b)}, (),
                  ["gateway-bob", "gateway-default"],
                  {"gateway-bob": rt(up=True, wanted_up=True)})
    known.unplaced = {"alice": "not placed on host-a"}
    known.blocked = {"bob": "port 8650 is also default's API server port"}
    scoped = plan.scope(Intent("reconcile"), known)
    assert [(p.name, p.autostart) for p in scoped] == [("default", True), ("bob", False)]
    desired = [(p, spec(p.slot, down=not p.autostart)) for p in scoped]
    steps = plan.build(Intent("reconcile"), known, desired, 450)
    by = {s.profile: s for s in steps}
    assert by["alice"].skip == "not placed on host-a" and not by["alice"].changes
    # up: failed before any restart, and left running as it is (SPEC §14.5)
    assert by["bob"].failure.startswith("port 8650") and planned_runtime(by["bob"]) is None
    assert by["bob"].skip is not None and not by["bob"].changes
    assert by["bob"].failure.endswith("it keeps running on its current ports")
    # down: registered down, never started
    known.runtime["gateway-bob"] = rt(up=False, wanted_up=False)
    by = {s.profile: s for s in plan.build(Intent("reconcile"), known, desired, 450)}
    assert by["bob"].failure == known.blocked["bob"] and planned_runtime(by["bob"]) is None
    assert marker(by["bob"]) is True
    known.existing.append("gateway-alice")
    steps = plan.build(Intent("reconcile"), known, desired, 450)
    retired = [s for s in steps if s.slot == "gateway-alice"]
    assert retired[0].get(ch.Retire).reason == "not placed on host-a"
