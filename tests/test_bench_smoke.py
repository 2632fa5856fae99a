"""Smoke test of bench/: the floor and our reconcile, through the bench's own helpers, build
slots of the same shape (paths, kinds, modes). No timing is asserted."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("hermes_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


def test_floor_and_reconcile_build_the_same_slots(tmp_path):
    bench = load_bench()
    home = tmp_path / "home"
    bench.make_home(home, 3)
    shapes = {}
    cmd = bench.command_dir(tmp_path / "command")
    runs = (("floor", lambda h, s: (bench.floor_argv(h, s), None)),
            ("ours", lambda h, s: bench.ours_argv(h, s, cmd)))
    for name, argv in runs:
        scandir = tmp_path / name / "scan"
        scandir.mkdir(parents=True)
        seconds, rss_kib, _cpu = bench.timed(*argv(home, scandir))
        assert seconds > 0 and rss_kib > 0
        assert bench.count_slots(scandir) == 3
        shapes[name] = bench.slot_shape(scandir)
    assert sorted(shapes["ours"]) == ["gateway-default", "gateway-p0001", "gateway-p0002"]
    assert shapes["floor"] == shapes["ours"]
    # every other profile runs: default and p0002 start, p0001 is registered down
    assert [rel for rel, _, _ in shapes["ours"]["gateway-p0001"]].count("down") == 1
    assert "down" not in [rel for rel, _, _ in shapes["ours"]["gateway-p0002"]]


def test_standby_bench_measures_both_variants():
    """bench/standby.py end to end at a tiny size (real s6-svscan, in its own process, which
    stops what it started): the baseline's standbys wake up, the current ones never do, and
    both take over. Timing is reported, not asserted."""
    import json
    import subprocess

    script = BENCH.parent / "standby.py"
    res = subprocess.run([sys.executable, str(script), "--slots", "3", "--before-slots", "2",
                          "--seconds", "2", "--settle", "1", "--takeover", "2", "--rounds", "1",
                          "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    before, after = doc["costs"]["before"], doc["costs"]["after"]
    assert before["slots"] == 2 and after["slots"] == 3
    assert before["wakeups_per_s"] > 0 and before["cpu_s"] > 0
    assert after["wakeups_per_s"] == 0 and after["cpu_s"] == 0
    for variant in ("before", "after"):
        taken = doc["takeovers"][variant]
        assert len(taken["running"]) == len(taken["ready"]) == 2


def test_floor_rerun_and_status_only_read(tmp_path):
    """The floors of an unchanged re-run and of a status read the home and the scandir and
    write nothing; the status floor prints one line per profile."""
    import subprocess

    bench = load_bench()
    home, scandir = tmp_path / "home", tmp_path / "scan"
    bench.make_home(home, 3)
    scandir.mkdir()
    bench.timed(bench.floor_argv(home, scandir), None)

    def snapshot():
        return sorted((str(p), p.lstat().st_mtime_ns, p.lstat().st_ctime_ns)
                      for root in (home, scandir) for p in root.rglob("*"))

    before = snapshot()
    bench.timed(bench.floor_argv(home, scandir, "rerun"), None)
    res = subprocess.run(bench.floor_argv(home, scandir, "status"), check=True,
                         capture_output=True, text=True)
    assert snapshot() == before
    assert [ln.split("\t")[0] for ln in res.stdout.splitlines()] == ["default", "p0001", "p0002"]
    assert all(ln.endswith("\tdown") for ln in res.stdout.splitlines())  # no supervisor here


def load_phases():
    spec = importlib.util.spec_from_file_location("hermes_bench_phases",
                                                  BENCH.parent / "phases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_phases_profiles_a_small_run():
    """bench/phases.py end to end at a tiny size: every phase has its row in both tables,
    for the three situations. Timing is reported, not asserted."""
    import subprocess

    phases = load_phases()
    res = subprocess.run([sys.executable, str(BENCH.parent / "phases.py"), "--n", "3", "--runs",
                          "1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    wall, memory = res.stdout.split("\nMemory, ")
    assert "| phase | fresh ms | floor | re-run ms | floor | cold ms | floor |" in wall
    for phase in phases.ORDER:
        assert f"\n| {phase} |" in wall
        if phase not in ("interpreter start", "teardown"):
            assert f"\n| {phase} |" in memory


def test_phases_missing_function_prints_na():
    """A phase none of whose functions exists any more (renamed by later work) prints n/a
    and is named under the tables; it does not fail."""
    phases = load_phases()
    assert phases._found("hermes_tasks.engine:no_such_function", {}) is False
    assert phases._found("hermes_tasks.no_such_module:f", {}) is False
    assert phases._found("hermes_tasks.report:emit", {}) is not False
    gone = next(targets for phase, targets, _ in phases.PHASES if phase == "planning")
    found = {t: t not in gone for _, targets, _ in phases.PHASES for t in targets}
    doc = {"start": 0.01, "teardown": 0.001, "total": 0.1, "harness": 0.0, "dump": 0.0,
           "cpu": 0.05, "found": found, "spent": {"imports": 0.02}, "peak": {}, "hwm": {},
           "grew": {}, "end_traced": 0, "vmhwm": 1024, "start_rss": 512}
    docs = {"fresh": {"time": [doc], "rss": doc, "tracemalloc": doc}}
    floor = {"start": 0.01, "teardown": 0.001, "total": 0.05, "spent": {"execute": 0.03}}
    text = phases.report(3, 1, docs, {"fresh": [floor]}, ["phases.py"])
    assert "| planning | n/a | - |" in text
    assert "| renders | 0.0 | - |" in text
    assert "| execute | 0.0 | 30.0 |" in text
    for target in gone:
        assert f"`{target}`" in text
