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
