"""Each change kind words itself once: what --check prints is its ``describe(True)``, what the
run reports is its ``describe(False)`` (or, for an observed change, the ``done`` words the
executor gives once it happened). The second half runs real plans under real s6."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
import s6env

from hermes_tasks import changes as ch
from hermes_tasks import engine, inventory
from hermes_tasks.execute.local import Applier
from hermes_tasks.intent import CREATE, DELETE, RECONCILE, RESTART, START, STOP, Intent
from hermes_tasks.plan import Step
from hermes_tasks.render import File, SlotSpec
from hermes_tasks.report import describe

SPEC = SlotSpec("gateway-alice", {"run": File(b"#!/bin/sh\n", 0o755)}, down=True)

# one instance of every row-level kind, with the words check mode and the run use
ROW_KINDS = [
    (ch.CreateProfile("alice"), "would create profiles/alice", "created profiles/alice"),
    (ch.Publish(SPEC), "would be published", "published"),
    (ch.Replace(SPEC, "gateway-alice has no log/ directory"),
     "would be replaced: gateway-alice has no log/ directory",
     "replaced: gateway-alice has no log/ directory"),
    (ch.Retire("its profile no longer exists"), "would be retired: its profile no longer exists",
     "retired: its profile no longer exists"),
    (ch.WriteFiles(("run", "log/run")), "would rewrite run, log/run", "rewrote run, log/run"),
    (ch.SetMarker(True), "would add the down marker", "added the down marker"),
    (ch.SetMarker(False), "would remove the down marker", "removed the down marker"),
    (ch.RepairSkeleton(), "would repair supervise/event permissions",
     "repaired supervise/event permissions"),
    (ch.RemoveLitter((".run.tmp",)), "would remove temp files left by an interrupted run: "
     ".run.tmp", "removed temp files left by an interrupted run: .run.tmp"),
    (ch.OwedRestarts(frozenset({"gateway"}), True),
     "would finish a restart an earlier run left pending",
     "finished a restart an earlier run left pending"),
    (ch.RecordState("stopped"), "would record stopped", "recorded stopped"),
    (ch.Rescan(), "not supervised: would rescan", "not supervised: rescanned"),
    (ch.AskOwner("host-b"), "would ask host-b, which runs the gateway, to stop it",
     "asked host-b, which runs the gateway, to stop it"),
    (ch.AskOwner("host-b", restart=True),
     "would ask host-b, which runs the gateway, to restart it",
     "asked host-b, which runs the gateway, to restart it"),
    # observed: the run's words are the executor's, as it happened
    (ch.SweepStale(("profiles", "alice")), "would remove stale runtime files",
     "removed stale gateway.pid"),
    (ch.BringUp(), "would bring up", "brought up"),
    (ch.BringDown(), "would bring down", "brought down"),
    (ch.RestartGateway(), "would restart the gateway", "restarted the gateway"),
    (ch.RestartLogger(), "would restart the logger", "restarted the logger"),
    (ch.DisposeProfile(), "would move the profile to .trash",
     "moved the profile to /home/.trash/profiles/alice.1"),
    (ch.DisposeProfile(purge=True), "would delete the profile", "deleted the profile"),
]

DONE_ARGS = {ch.SweepStale: (["gateway.pid"],), ch.DisposeProfile: ("/home", "alice.1")}

RUN_KINDS = [ch.AllocatePorts, ch.AllocateUids, ch.SaveCaches, ch.AppendBootLog,
             ch.UndoFailedCreates]


def _row(change: ch.Change) -> Step:
    return Step("gateway-alice", "alice", None, "started", SPEC, (change,))


def test_every_kind_is_covered_here():
    kinds = {c for _, c in inspect.getmembers(ch, inspect.isclass)
             if issubclass(c, ch.Change) and c is not ch.Change}
    assert kinds == {type(c) for c, _, _ in ROW_KINDS} | set(RUN_KINDS)


@pytest.mark.parametrize("change,would,did", ROW_KINDS, ids=lambda v: type(v).__name__
                         if isinstance(v, ch.Change) else "")
def test_a_kind_words_check_mode_and_the_run(change, would, did):
    row = _row(change)
    assert change.describe(True) == would
    assert describe(row, check=True) == would  # what --check prints is the change's words
    if change.observed:
        words = change.done(*DONE_ARGS.get(type(change), ()))
        assert words == did
        assert describe(row, check=False, done=[words]) == did
        assert describe(row, check=False) == ""  # nothing said until the executor saw it
    else:
        assert change.describe(False) == did
        assert describe(row, check=False) == did


def test_a_row_is_changed_when_one_of_its_changes_alters_something():
    assert not _row(ch.AskOwner("host-b")).alters  # the recorded intent is the change
    assert _row(ch.AskOwner("host-b", restart=True)).alters
    assert all(_row(c).alters for c, _, _ in ROW_KINDS if not isinstance(c, ch.AskOwner))
    assert not Step("gateway-alice", "alice", None, "started", SPEC).alters


def test_nothing_to_finish_says_nothing():
    assert ch.OwedRestarts(frozenset(), True).describe(True) == ""
    assert describe(_row(ch.OwedRestarts(frozenset(), True)), check=False) == ""


def test_run_level_kinds_describe_themselves():
    for change in (ch.AllocatePorts(None), ch.SaveCaches(None, None, frozenset()),
                   ch.AppendBootLog(("row",)), ch.UndoFailedCreates()):
        assert change.describe(True).startswith("would ")
        assert not change.describe(False).startswith("would ")
        assert change.describe(True).split(" ", 2)[2] == change.describe(False).split(" ", 1)[1]


def test_the_executor_refuses_a_row_change_as_a_run_level_one(tmp_path):
    with pytest.raises(TypeError):
        Applier(inventory.Settings(scandir=str(tmp_path))).apply(ch.BringUp())


# -------------------------------------------------------------------- under real s6


class Seeing(Applier):
    """The real executor, keeping the rows it was given (to read their changes)."""

    steps: list = []

    def run(self, steps, *args, **kwargs):
        Seeing.steps = list(steps)
        super().run(steps, *args, **kwargs)


def _messages(rows) -> dict:
    return {(r.profile, r.slot): r.message for r in rows}


def test_check_prints_and_the_run_reports_each_change_s_own_words(sandbox, supervisor):
    """Real tasks under s6: every change of every row is in the --check row in its check
    words and in the run's row in its run words (observed ones: as the executor saw them)."""
    sb = sandbox
    s6env.make_profile(sb.home, "alice", {"desired_state": "stopped"})
    s6env.make_profile(sb.home, "bob", {"desired_state": "running"})
    (sb.home / "profiles" / "bob" / ".env").write_text("API_SERVER_ENABLED=true\n")
    cfg = inventory.load(None, [a for a in s6env.inventory_args(sb) if a != "--var"],
                         environ={})
    seen: set[type] = set()
    tasks = [Intent(RECONCILE), Intent(START, frozenset({"alice"}), wait=True, timeout=20),
             Intent(RESTART, frozenset({"alice"}), wait=True, timeout=20),
             Intent(STOP, frozenset({"alice"}), wait=True, timeout=20),
             Intent(CREATE, frozenset({"carol"})), Intent(DELETE, frozenset({"bob"})),
             Intent(DELETE, frozenset({"carol"}), purge=True)]
    for intent in tasks:
        checked = _messages(engine.run(cfg, intent, check=True, warn=lambda _m: None).rows)
        ran = engine.run(cfg, intent, executor=Seeing, warn=lambda _m: None).rows
        if intent.task == RECONCILE:  # the ports bob's API server takes are recorded
            ports = json.loads((sb.home / "gateway-ports.json").read_text())
            assert "api_server_port" in ports["profiles"]["bob"], ports
        for step in Seeing.steps:
            if step.slot == "hermes-tasks-registrar" or step.failure:
                continue
            key = (step.profile, step.slot)
            run_message = _messages(ran)[key]
            for change in step.changes:
                seen.add(type(change))
                if change.describe(True):
                    assert change.describe(True) in checked[key], (intent, change, checked)
                if not change.observed and change.describe(False):
                    assert change.describe(False) in run_message, (intent, change, run_message)
                elif isinstance(change, ch.RUNTIME + (ch.DisposeProfile,)):
                    words = change.done(str(cfg.hermes_home), "") if isinstance(
                        change, ch.DisposeProfile) else change.done()
                    assert words.rstrip("/") in run_message, (intent, change, run_message)
    assert {ch.Publish, ch.RecordState, ch.BringUp, ch.RestartGateway, ch.BringDown,
            ch.CreateProfile, ch.Retire, ch.DisposeProfile} <= seen, seen


def test_dataclass_kinds_are_frozen():
    for change, _, _ in ROW_KINDS:
        with pytest.raises(dataclasses.FrozenInstanceError):
            change.__setattr__("x", 1)
