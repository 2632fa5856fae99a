"""Benchmark the fleet playbook over real SSH: a no-change run of ansible/site.yml on 3 hosts
against ``ansible all -m ping`` of the same hosts (issue 14). Root only; no timing is asserted.

    .venv/bin/python bench/fleet.py            # 7 interleaved rounds; updates bench/RESULTS.md
    .venv/bin/python bench/fleet.py --runs 3 --out /tmp/fleet.md

The hosts are the tests' (tests/sshenv.py, tests/s6env.py): one Debian sshd per host on a
loopback port, each with its own scandir and s6-svscan and the stand-in gateway; alpha and
beta share one hermes_home. Every host has the default profile and three named ones, all
running, placed so each runs on exactly one host. The playbook is run once to converge;
then each round times, as child processes from spawn to reap: ``ansible all -m ping``, a
no-change ``ansible-playbook site.yml`` (its recap is checked: changed=0 on every host), the
one module ``ansible all -m hermes.tasks.reconcile``, and, for scale, the three hosts'
``hermes-tasks reconcile`` run locally one after another. Ansible runs with pipelining and
ControlPersist, as the tests do. The section replaces the previous "Fleet" section of the
report and leaves the rest of it alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))

import s6env  # noqa: E402
import sshenv  # noqa: E402
import yaml  # noqa: E402

VENV_BIN = Path(sys.executable).parent
SITE = ROOT / "ansible" / "site.yml"
SECTION = "## Fleet: ansible-playbook over SSH (issue 14)"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
PLACEMENT = {"alpha": ["default", "a*"], "beta": ["b*"], "gamma": ["*"]}


def build(fleet: sshenv.SshFleet) -> tuple[Path, dict, list]:
    """Sandboxes, supervisors and the inventory; returns (inventory, extra vars, supervisors)."""
    sandboxes = {n: s6env.make_sandbox(service_user=True) for n in fleet.hosts}
    homes = {"alpha": sandboxes["alpha"].home, "beta": sandboxes["alpha"].home,
             "gamma": sandboxes["gamma"].home}
    running = {"desired_state": "running"}
    for name in ("default", "anna", "amos", "bert"):
        s6env.make_profile(homes["alpha"], name, running)
    for name in ("default", "carl", "cleo", "cruz"):
        s6env.make_profile(homes["gamma"], name, running)
    for n in ("alpha", "gamma"):
        s6env.own(sandboxes[n], homes[n])
    sups = [s6env.Supervisor(sb).start() for sb in sandboxes.values()]
    user = sandboxes["alpha"].user
    common = {k: v for k, v in fleet.ssh_vars("alpha", sys.executable).items() if k != "ansible_port"}
    doc = {"all": {
        "vars": {"service_user": user.name, "service_uid": user.uid, "service_gid": user.gid,
                 "hermes_bin": str(s6env.FAKE_GATEWAY), **common},
        "hosts": {n: {"ansible_port": fleet.hosts[n].port, "hermes_home": str(homes[n]),
                      "scandir": str(sandboxes[n].scandir), "s6_bin_dir": str(sandboxes[n].cmd_dir),
                      "gateway_profiles": PLACEMENT[n]} for n in fleet.hosts}}}
    inventory = fleet.dir / "hosts.yml"
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    extra = {"gateways_executable": str(VENV_BIN / "hermes-tasks"),
             "gateways_settings_file": f"{fleet.dir}/shipped/{{{{ inventory_hostname }}}}/inventory.yml"}
    return inventory, extra, sups


def timed(argv: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {res.returncode}:\n{res.stdout}{res.stderr}")
    return seconds, res.stdout


def no_change(stdout: str) -> None:
    recap = {m.group(1): m.groups()[1:] for m in RECAP.finditer(stdout)}
    if sorted(recap) != ["alpha", "beta", "gamma"] or any(v != ("0", "0", "0") for v in recap.values()):
        raise RuntimeError(f"not a no-change run on every host: {recap}\n{stdout}")


def section(times: dict[str, list[float]], runs: int, argv: list[str]) -> str:
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    rows = [
        ("`ansible all -m ping`", "ping"),
        ("`ansible-playbook ansible/site.yml`, no change (one reconcile task per host)", "playbook"),
        ("`ansible all -m hermes.tasks.reconcile`, no change (1 module)", "module"),
        ("`hermes-tasks reconcile` on the 3 hosts locally, one after another", "local"),
    ]
    lines = [SECTION, "",
             f"Produced by `{shlex.join(argv)}` on {now}; {os.cpu_count()} CPUs, "
             f"load average (1 min) {os.getloadavg()[0]:.2f} at the end.", "",
             "3 hosts on one machine, each a Debian sshd on a loopback port with its own "
             "s6-svscan and 3-4 running stand-in gateways (alpha and beta share one "
             "hermes_home). ansible-core with pipelining and ControlPersist (connections are "
             "reused across rounds, as in a real run of several plays). Wall time from spawn "
             f"to reap, {runs} interleaved rounds, in ms. Other work on the machine inflates "
             "wall times; interleaving keeps the ratios fair.", "",
             "| command | median | min | max | / ping |", "|---|---:|---:|---:|---:|"]
    for label, key in rows:
        v = times[key]
        lines.append(f"| {label} | {med[key]:.0f} | {min(v) * 1000:.0f} | {max(v) * 1000:.0f} "
                     f"| {med[key] / med['ping']:.2f} |")
    lines += ["", "Every timed playbook run was checked to report changed=0 on every host.", ""]
    return "\n".join(lines)


def replace_section(path: Path, text: str) -> None:
    """Put ``text`` in place of the report's Fleet section (appended if there is none)."""
    old = path.read_text() if path.exists() else ""
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + (old[end + 1:] if end >= 0 else "")
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--out", default=str(BENCH / "RESULTS.md"), help="report to update")
    args = parser.parse_args(argv)
    fleet = sshenv.SshFleet(["alpha", "beta", "gamma"]).start()
    sups: list = []
    try:
        inventory, extra, sups = build(fleet)
        env = fleet.env(ROOT)
        inv = ["-i", str(inventory)]
        playbook = [str(VENV_BIN / "ansible-playbook"), *inv, "-e", json.dumps(extra), str(SITE)]
        timed(playbook, env)  # converge
        commands = {
            "ping": [str(VENV_BIN / "ansible"), "all", *inv, "-m", "ping"],
            "playbook": playbook,
            "module": [str(VENV_BIN / "ansible"), "all", *inv, "-m", "hermes.tasks.reconcile",
                       "-a", json.dumps({"executable": str(VENV_BIN / "hermes-tasks"),
                                         "inventory": str(inventory)})],
        }
        local = [[str(VENV_BIN / "hermes-tasks"), "reconcile", "--inventory", str(inventory),
                  "--host", h] for h in fleet.hosts]
        times: dict[str, list[float]] = {k: [] for k in (*commands, "local")}
        for _ in range(args.runs):
            for key, cmd in commands.items():
                seconds, out = timed(cmd, env)
                if key == "playbook":
                    no_change(out)
                if key == "module" and out.count("| SUCCESS") != 3:
                    raise RuntimeError(f"the module changed or failed something:\n{out}")
                times[key].append(seconds)
            t0 = time.perf_counter()
            for cmd in local:
                timed(cmd, {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
            times["local"].append(time.perf_counter() - t0)
            print(", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in times.items()), flush=True)
    finally:
        for sup in sups:
            sup.stop()
        fleet.stop()
        s6env.stop_all()
    text = section(times, args.runs, [os.path.relpath(sys.executable, ROOT),
                                      os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    replace_section(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
