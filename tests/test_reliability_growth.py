"""Bounded growth (issue 6.6): the boot log rotates within bounds, crash loops stop.

- 10,000 reconcile passes' worth of boot-log appends (in-process, the real
  ``bootlog.append``) keep ``container-boot.log`` + ``.1`` within twice the rotate size, with
  every line whole; a few real CLI runs with a tiny ``boot_log_rotate_bytes`` do the same.
- A gateway that exits 78 (fatal config) or 0 (clean stop) at start is started exactly once
  under a real s6-svscan and left down (``finish`` exits 125); one that crashes with 3 is
  restarted (the control: the test can see restarts).
"""

from __future__ import annotations

import os
import re
import time

import pytest
import reliability_kit as kit
import reliability_report
import s6env
import standin

from hermes_tasks import bootlog

CASES = {
    "growth.boot_log.10000_runs": "10,000 boot-log appends of 20 rows each (in-process "
                                  "`bootlog.append`, rotate size 64 KiB)",
    "growth.boot_log.cli": "real `reconcile` runs with boot_log_rotate_bytes=700 (3 profiles)",
    "growth.crash_loop.exit78": "gateway exits 78 (fatal config) at every start, real s6",
    "growth.crash_loop.exit0": "gateway exits 0 (clean stop) at every start, real s6",
}

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d profile=\S+ prior_state=\S+ "
                  r"action=(started|registered|skipped|removed) "
                  r"result=(ok|changed|skipped|failed)$")


def sizes(logs) -> tuple[int, int]:
    out = []
    for name in (bootlog.NAME, bootlog.NAME + ".1"):
        try:
            out.append(os.path.getsize(logs / name))
        except FileNotFoundError:
            out.append(0)
    return out[0], out[1]


@pytest.mark.slow
def test_ten_thousand_runs_keep_the_boot_log_bounded(tmp_path):
    limit, runs = 65536, 10_000
    rows = [(f"p{i:02d}", "running" if i % 2 else None, "started" if i % 2 else "registered",
             "ok") for i in range(20)]
    warnings: list[str] = []
    started = time.monotonic()
    # fsync is a no-op on tmpfs: the bound is about sizes, not the disk.
    with kit.Mount(tmp_path / "home", "size=8m") as home:
        logs = home / "logs"
        worst, rotations, last_first = 0, 0, None
        for n in range(runs):
            bootlog.append(str(home), rows, limit, (0, 0), warnings.append)
            current, old = sizes(logs)
            worst = max(worst, current + old)
            assert current + old <= 2 * limit, (n, current, old)
            if old and (logs / (bootlog.NAME + ".1")).stat().st_ino != last_first:
                rotations += 1
                last_first = (logs / (bootlog.NAME + ".1")).stat().st_ino
        for name in (bootlog.NAME, bootlog.NAME + ".1"):
            lines = (logs / name).read_text().splitlines()
            assert lines and all(LINE.match(line) for line in lines), name
            assert len(lines) % len(rows) == 0  # whole runs only: rotation never splits one
        elapsed = time.monotonic() - started
    assert warnings == []
    assert rotations > 100
    reliability_report.record(
        "growth.boot_log.10000_runs", runs,
        "container-boot.log + .1 never exceeded twice the rotate size; every line whole",
        rotate_bytes=limit, worst_total_bytes=worst, rotations=rotations,
        seconds=round(elapsed, 2))


def test_cli_runs_rotate_within_bounds(root_sandbox):
    sb = root_sandbox
    for name in ("alice", "bob"):
        kit.write_profile(sb.home, name, {"desired_state": "stopped"}, user=sb.user)
    limit, runs, worst = 700, 8, 0
    logs = sb.home / "logs"
    for _ in range(runs):
        res = s6env.run_tasks(sb, "reconcile", "--var", f"boot_log_rotate_bytes={limit}")
        assert res.returncode == 0 and res.stderr == "", res.stderr
        current, old = sizes(logs)
        worst = max(worst, current + old)
        assert current + old <= 2 * limit
    assert old > 0  # it did rotate
    for name in (bootlog.NAME, bootlog.NAME + ".1"):
        st = (logs / name).stat()
        assert (st.st_uid, st.st_gid) == (sb.user.uid, sb.user.gid)  # SPEC §10
        assert all(LINE.match(line) for line in (logs / name).read_text().splitlines())
    reliability_report.record(
        "growth.boot_log.cli", runs,
        "rotated to .1, both files within twice the rotate size, owned by the service user",
        rotate_bytes=limit, worst_total_bytes=worst)


@pytest.mark.parametrize("code", [78, 0])
def test_gateway_exiting_at_start_is_not_restarted(sandbox, supervisor, code):
    """finish maps 78 and 0 to 125: started once, then left down (incidents 7 and 8)."""
    sb = sandbox
    for name in ("looping", "crashing"):
        kit.write_profile(sb.home, name, {"desired_state": "running"}, extra=False)
    standin.write_behaviour(sb.home, profiles={"looping": {"exit_at_start": code},
                                               "crashing": {"exit_at_start": 3}})
    res = s6env.run_tasks(sb, "reconcile", "--json")
    assert res.returncode == 0, res.stderr
    supervisor.rescan()
    s6env.wait_for(lambda: standin.starts(sb.home, "looping"), 5, what="first start")
    # A restart would come ~1 s after each exit: give it room for three.
    s6env.wait_for(lambda: len(standin.starts(sb.home, "crashing")) >= 3, 6,
                   what="the control profile (exit 3) restarting")
    time.sleep(1.0)
    starts = standin.starts(sb.home, "looping")
    exits = [e for e in standin.events(sb.home, "looping") if e["event"] == "exit"]
    st = s6env.svstat(sb.slot("looping"), ("up", "wantedup", "normallyup", "exitcode"))
    assert len(starts) == 1, starts
    assert [e["code"] for e in exits] == [code]
    assert st["up"] is False and st["wantedup"] is False and st["normallyup"] is True
    assert not (sb.slot("looping") / "down").exists()  # 125 writes no down file
    control = len(standin.starts(sb.home, "crashing"))
    assert control >= 3
    reliability_report.record(
        f"growth.crash_loop.exit{code}", 1,
        "started once; finish exited 125, s6 left it down (wantedup false); the exit-3 "
        "control profile was restarted meanwhile",
        starts=len(starts), control_restarts=control, watched_s=round(
            time.time() - starts[0]["t"], 1))
