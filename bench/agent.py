"""Benchmark: the agent's idle cost, and a boot with many gateways starting at once (SPEC §14).

Run with the project venv's python, from anywhere (needs s6 in /usr/bin, like the tests):

    .venv/bin/python bench/agent.py idle [--profiles 450] [--looks 200]
    .venv/bin/python bench/agent.py boot [--profiles 450]

``idle``: under a real s6-svscan on a temp sandbox (tests/s6env.py), N profiles whose
gateways (stand-ins, tests/bin/fake-gateway) all run; then the agent's look
(``agent.tick`` with nothing changed: the stat-level fingerprint) is repeated ``--looks``
times in this process and its CPU time (user + sys) measured. Idle, the agent makes one
look every ``watch_interval`` (2 s), so its share of one CPU is the CPU of one look / 2 s,
reported against the 1 % budget (ratio ≤ 1 passes).

``boot``: N profiles, all desired running, a fresh scandir under a running plain
s6-svscan (``-c`` raised only when N needs it), one ``reconcile`` publishing every slot at
once: its wall time (which includes waiting until every slot is supervised, SPEC §14.7),
then the time until every gateway is up. Prints Markdown for bench/RESULTS.md. Not a
test: nothing is asserted except that the run succeeded.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import s6env  # noqa: E402

from hermes_tasks import agent, inventory, svstatus  # noqa: E402

BUDGET = 0.01  # of one CPU, idle (SPEC §14.3)


def cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def settings_for(sb, **extra) -> inventory.Settings:
    args = [f"{k}={v}" for k, v in (("hermes_home", sb.home), ("scandir", sb.scandir),
                                     ("s6_bin_dir", sb.cmd_dir), *extra.items())]
    return inventory.load(None, args, environ={})


def populate(sb, n: int) -> list[str]:
    s6env.make_profile(sb.home, "default", {"desired_state": "stopped"})
    names = [f"p{i:03d}" for i in range(n - 1)]
    for name in names:
        d = s6env.make_profile(sb.home, name, {"desired_state": "running"})
        (d / ".env").write_text("# nothing\n")
        (d / "config.yaml").write_text("model: x\n")
    return names


def all_up(sb, names) -> bool:
    for name in names:
        try:
            if not svstatus.read(str(sb.slot(name))).running:
                return False
        except (OSError, ValueError):
            return False
    return True


def boot_all(sb, names, profiles) -> tuple[float, float]:
    """One reconcile publishing every slot under the running s6-svscan: the seconds it took
    (including the wait until all were supervised) and until every gateway was up."""
    start = time.perf_counter()
    res = s6env.run_tasks(sb, "reconcile", "--var", f"max_slots={profiles}",
                          "--var", f"webhook_port_base={8650 + profiles + 50}", timeout=1800)
    took = time.perf_counter() - start
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    s6env.wait_for(lambda: all_up(sb, names), 900, interval=0.2, what="all up")
    return took, time.perf_counter() - start


def idle(opts) -> None:
    sb = s6env.make_sandbox(service_user=False)
    try:
        names = populate(sb, opts.profiles)
        capacity = max(500, opts.profiles + 10)
        with s6env.Supervisor(sb, capacity=capacity if capacity > 500 else None):
            took, up = boot_all(sb, names, opts.profiles)
            cfg = settings_for(sb, watch_interval=2)
            watch = agent.Watch()
            agent.tick(cfg, watch, log=lambda m: None)  # the first look converges
            quiet = 0
            while quiet < 5:  # settled: gateways turning ready move supervise/status too
                quiet = 0 if agent.tick(cfg, watch, log=lambda m: None) else quiet + 1
                time.sleep(0.5)
            start_cpu, start = cpu(), time.perf_counter()
            changed = 0
            for _ in range(opts.looks):
                changed += agent.tick(cfg, watch, log=lambda m: None)
            per_look = (cpu() - start_cpu) / opts.looks
            wall = (time.perf_counter() - start) / opts.looks
        share = per_look / cfg.watch_interval
        print(f"## Agent idle cost (issue 18)\n\n`.venv/bin/python bench/agent.py idle "
              f"--profiles {opts.profiles} --looks {opts.looks}`: {opts.profiles} profiles "
              f"(default stopped, {len(names)} stand-in gateways running) under a real "
              f"s6-svscan; load average {os.getloadavg()[0]:.2f}.\n")
        print("| profiles | CPU per look (ms) | wall per look (ms) | looks that converged | "
              "share of one CPU at watch_interval 2 s | budget | ratio |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| {opts.profiles} | {per_look * 1000:.2f} | {wall * 1000:.2f} | {changed} | "
              f"{share * 100:.3f} % | 1 % | {share / BUDGET:.3f} |")
        print(f"\nThe boot before it (one reconcile publishing every slot under the running "
              f"s6-svscan): {took:.1f} s including the wait until all were supervised, "
              f"{up:.1f} s until every gateway was up.")
    finally:
        sb.cleanup()


def boot(opts) -> None:
    sb = s6env.make_sandbox(service_user=False)
    try:
        names = populate(sb, opts.profiles)
        capacity = opts.profiles + 10 if opts.profiles + 10 > 500 else None
        with s6env.Supervisor(sb, capacity=capacity):
            took, up = boot_all(sb, names, opts.profiles)
        print(f"## Boot with every gateway starting at once (issue 18)\n\n"
              f"`.venv/bin/python bench/agent.py boot --profiles {opts.profiles}`: one "
              f"reconcile publishing {opts.profiles} slots under a running s6-svscan "
              f"(plain{'' if capacity is None else f', -c {capacity}'}), stand-in gateways; "
              f"load average {os.getloadavg()[0]:.2f}.\n")
        print("| profiles | reconcile incl. all supervised (s) | until every gateway up (s) |")
        print("|---:|---:|---:|")
        print(f"| {opts.profiles} | {took:.1f} | {up:.1f} |")
    finally:
        sb.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("idle", "boot"))
    ap.add_argument("--profiles", type=int, default=450)
    ap.add_argument("--looks", type=int, default=200)
    opts = ap.parse_args()
    (idle if opts.mode == "idle" else boot)(opts)


if __name__ == "__main__":
    main()
