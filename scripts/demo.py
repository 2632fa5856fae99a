"""Run reconcile on a sandbox (home, scandir, s6-svscan) with the real hermes gateway.

Creates ``.demo/`` (wiped first): a home with the default profile (running) and two named
profiles, ``alice`` (running) and ``bob`` (stopped); starts its own s6-svscan; runs
``hermes-tasks reconcile`` and ``gateway.status``; stops everything it started, or with
``--keep`` leaves the supervisor and its gateways running and prints how to look around and
how to stop them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / ".demo"
HERMES = REPO / ".venv-hermes" / "bin" / "hermes"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "hermes_tasks", *args]
    print("$ hermes-tasks " + " ".join(args), flush=True)
    env = {**os.environ, "HERMES_TASKS_INVENTORY": str(DEMO / "inventory.yml")}
    proc = subprocess.run(cmd, env=env, text=True, check=False)
    if check and proc.returncode:
        raise SystemExit(f"demo: hermes-tasks {args[0]} exited {proc.returncode}")
    return proc


def svscan_listening(scandir: Path) -> bool:
    try:
        os.close(os.open(scandir / ".s6-svscan" / "control", os.O_WRONLY | os.O_NONBLOCK))
        return True
    except OSError:
        return False


def build_sandbox() -> tuple[Path, Path, Path]:
    old = DEMO / "run" / "service"
    if svscan_listening(old):  # a --keep demo is still running: never wipe it under s6
        raise SystemExit("demo: the kept demo supervisor is still running; stop it first: "
                         f"{DEMO / 'command' / 's6-svscanctl'} -t {old}")
    shutil.rmtree(DEMO, ignore_errors=True)
    home, scandir, command = DEMO / "home", DEMO / "run" / "service", DEMO / "command"
    for d in (home, scandir, command):
        d.mkdir(parents=True)
    # Stand-in for s6-overlay's /command: the real s6 tools plus a pass-through with-contenv.
    for tool in Path("/usr/bin").glob("s6-*"):
        (command / tool.name).symlink_to(tool)
    shim = command / "with-contenv"
    shim.write_text('#!/bin/sh\n# demo stand-in for s6-overlay\'s with-contenv\nexec "$@"\n')
    shim.chmod(0o755)
    (home / "gateway_state.json").write_text(json.dumps({"desired_state": "running"}))
    for name, desired in (("alice", "running"), ("bob", "stopped")):
        d = home / "profiles" / name
        d.mkdir(parents=True)
        (d / "SOUL.md").write_text(f"# {name}\n")
        (d / "gateway_state.json").write_text(json.dumps({"desired_state": desired}))
    (DEMO / "inventory.yml").write_text(
        "# The demo's inventory: everything inside .demo/, gateways run as you.\n"
        "all:\n  vars:\n"
        f"    hermes_home: {json.dumps(str(home))}\n"
        f"    scandir: {json.dumps(str(scandir))}\n"
        f"    s6_bin_dir: {json.dumps(str(command))}\n"
        f"    hermes_bin: {json.dumps(str(HERMES))}\n"
        "    service_user: null\n"
        "  hosts:\n    localhost: {}\n")
    return home, scandir, command


def start_svscan(scandir: Path, command: Path) -> subprocess.Popen:
    env = {"PATH": f"{command}:/usr/bin:/bin"}
    with open(DEMO / "svscan.log", "wb") as log:  # the child keeps its own copy of the fd
        proc = subprocess.Popen(["s6-svscan", str(scandir)], env=env, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if svscan_listening(scandir):
            return proc
        time.sleep(0.02)
    proc.kill()
    raise SystemExit("demo: s6-svscan did not start")


def wait_running(home: Path, names: list[str], timeout: float = 90) -> None:
    """Poll each gateway's own gateway_state.json until it says running."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            path = home / "gateway_state.json" if name == "default" else \
                home / "profiles" / name / "gateway_state.json"
            try:
                if json.loads(path.read_text()).get("gateway_state") == "running":
                    print(f"demo: gateway {name} reports gateway_state=running", flush=True)
                    pending.remove(name)
            except (OSError, ValueError):
                pass
        time.sleep(0.5)
    if pending:
        raise SystemExit(f"demo: gateways not running after {timeout:.0f} s: {pending}")


def stop_svscan(scandir: Path, command: Path, svscan: subprocess.Popen) -> None:
    subprocess.run([str(command / "s6-svscanctl"), "-t", str(scandir)], check=False)
    try:
        svscan.wait(timeout=30)
    except subprocess.TimeoutExpired:
        svscan.kill()
        svscan.wait()


def print_keep(scandir: Path, command: Path, svscan: subprocess.Popen) -> None:
    """What --keep leaves behind: how to use it and how to stop it (by its PID's scandir)."""
    inv = DEMO / "inventory.yml"
    print(f"\ndemo: kept s6-svscan (pid {svscan.pid}) and its gateways running on {scandir}.\n"
          "demo: look around (same shell):\n"
          f"  . {REPO}/.venv/bin/activate && export HERMES_TASKS_INVENTORY={inv}\n"
          "  hermes-tasks gateway.status; hermes-tasks gateway.stop -p alice --wait\n"
          "demo: stop it (the supervisor takes its gateways down with it):\n"
          f"  {command}/s6-svscanctl -t {scandir}", flush=True)


def main() -> None:
    keep = "--keep" in sys.argv[1:]
    unknown = [a for a in sys.argv[1:] if a != "--keep"]
    if unknown:
        raise SystemExit(f"demo: unknown argument {unknown[0]!r} (usage: demo.sh [--keep])")
    home, scandir, command = build_sandbox()
    svscan = start_svscan(scandir, command)
    kept = False
    try:
        sh("reconcile")
        subprocess.run([str(command / "s6-svscanctl"), "-a", str(scandir)], check=True)
        wait_running(home, ["default", "alice"])
        sh("gateway.status")
        print("\ndemo: a second reconcile changes nothing:", flush=True)
        sh("reconcile")
        kept = keep
    finally:
        if not kept:
            stop_svscan(scandir, command, svscan)
    if kept:
        print_keep(scandir, command, svscan)
    else:
        print(f"\ndemo: stopped s6-svscan (pid {svscan.pid}); files are in {DEMO}")


if __name__ == "__main__":
    main()
