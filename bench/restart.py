"""Benchmark: batched restarts (SPEC §6). 20 gateways that take 2 s to stop vs one of them.

Run with the project venv's python, from anywhere (needs s6 in /usr/bin, like the tests):

    .venv/bin/python bench/restart.py [--runs 3] [--gateways 20] [--delay 2]

Under a real s6-svscan on a temp sandbox (tests/s6env.py), N stand-in gateways
(tests/bin/fake-gateway) that sleep ``--delay`` seconds after SIGTERM are started; then it
times, alternating, ``gateway.restart -p p00 --wait`` (one) and ``gateway.restart --all
--wait`` (all N), each as a child process, wall clock. Restarted one after another, N
gateways would cost N stop times; batched, about one. Prints a Markdown section for
bench/RESULTS.md. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import s6env  # noqa: E402
import standin  # noqa: E402


def timed(sb, *args: str) -> float:
    start = time.perf_counter()
    res = s6env.run_tasks(sb, *args, timeout=300)
    took = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError(f"{args} exited {res.returncode}: {res.stdout}{res.stderr}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--gateways", type=int, default=20)
    ap.add_argument("--delay", type=float, default=2.0)
    opts = ap.parse_args()
    sb = s6env.make_sandbox(service_user=False)
    try:
        s6env.make_profile(sb.home, "default", {"desired_state": "stopped"})
        names = [f"p{i:02d}" for i in range(opts.gateways)]
        for name in names:
            s6env.make_profile(sb.home, name, {"desired_state": "running"})
        standin.write_behaviour(sb.home, term_delay=opts.delay)
        with s6env.Supervisor(sb):
            res = s6env.run_tasks(sb, "reconcile", "--wait", timeout=300)
            assert res.returncode == 0, res.stdout + res.stderr
            one, batch = [], []
            for _ in range(opts.runs):
                one.append(timed(sb, "gateway.restart", "-p", names[0], "--wait"))
                batch.append(timed(sb, "gateway.restart", "--all", "--wait"))
            for name in names:  # every gateway came back
                s6env.wait_up(sb.slot(name), 10)
    finally:
        sb.cleanup()
    m1, mn = statistics.median(one), statistics.median(batch)
    load = open("/proc/loadavg").read().split()[0]
    print(f"## Batched restarts (SPEC §6)\n\n"
          f"`.venv/bin/python bench/restart.py --runs {opts.runs}`: {opts.gateways} stand-in "
          f"gateways that take {opts.delay:g} s to stop, under a real s6-svscan; `--wait` "
          "included: until each gateway is ready (SPEC §5: the stand-in writes `running` in "
          "its gateway_state.json as hermes does, for the pid s6 supervises). "
          f"Medians of {opts.runs} runs, wall clock per command, load average {load}.\n\n"
          "| command | median s | runs (s) |\n|---|---:|---|\n"
          f"| `gateway.restart -p p00 --wait` (1 gateway) | {m1:.2f} | "
          f"{', '.join(f'{t:.2f}' for t in one)} |\n"
          f"| `gateway.restart --all --wait` ({opts.gateways} gateways) | {mn:.2f} | "
          f"{', '.join(f'{t:.2f}' for t in batch)} |\n\n"
          f"Ratio all / one: **{mn / m1:.2f}** (target ≤ 1.5; one after another would be "
          f"≈ {opts.gateways}×).\n")


if __name__ == "__main__":
    main()
