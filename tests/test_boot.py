"""The boot entry point (no Invoke import) behaves exactly like ``hermes-tasks reconcile``."""

import json
import subprocess
import sys

import s6env

ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}


def make_home(root):
    """A home with two profiles and a skipped one; an inventory naming it; the env to use it."""
    home = root / "home"
    for name, state in (("alice", "running"), ("bob", "stopped")):
        d = home / "profiles" / name
        d.mkdir(parents=True)
        (d / "SOUL.md").write_text("x")
        (d / "gateway_state.json").write_text(json.dumps({"desired_state": state}))
    (home / "profiles" / "Bad Name").mkdir()
    (home / "profiles" / "Bad Name" / "SOUL.md").write_text("x")
    (root / "scandir").mkdir()
    cmd = s6env.make_command_dir(root / "command")
    inventory = root / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"vars": {
        "hermes_home": str(home), "scandir": str(root / "scandir"), "s6_bin_dir": str(cmd),
        "service_user": None, "hermes_bin": str(s6env.FAKE_GATEWAY)}}}))
    return {**ENV, "HERMES_TASKS_INVENTORY": str(inventory)}


def run(root, argv, env):
    proc = subprocess.run([sys.executable, "-m", *argv], env=env, capture_output=True,
                          text=True, cwd=root)
    clean = lambda s: s.replace(str(root), "ROOT")  # noqa: E731
    return proc.returncode, clean(proc.stdout), clean(proc.stderr)


def test_same_output_and_boot_log_both_ways(tmp_path):
    results, logs = {}, {}
    for boot in (True, False):
        root = tmp_path / ("boot" if boot else "invoke")
        root.mkdir()
        env = make_home(root)
        argv = ["hermes_tasks.boot"] if boot else ["hermes_tasks", "reconcile"]
        results[boot] = [run(root, argv, env) for _ in range(2)]  # fresh, then unchanged
        text = (root / "home" / "logs" / "container-boot.log").read_text()
        logs[boot] = [line.split(" ", 1)[1] for line in text.splitlines()]
    assert results[True] == results[False]
    assert [r[0] for r in results[True]] == [0, 0]
    assert "changed: [gateway-alice] => started: published" in results[True][0][1]
    assert "warning: skipping profile Bad\\x20Name" in results[True][0][2]
    assert logs[True] == logs[False] and len(logs[True]) == 8


def test_boot_exit_codes_and_errors(tmp_path):
    env = make_home(tmp_path)
    code, _, err = run(tmp_path, ["hermes_tasks.boot", "--check"], env)
    assert code == 1 and err.count("\n") == 1 and "takes no arguments" in err
    bad = {**env, "HERMES_TASKS_INVENTORY": str(tmp_path / "nonexistent.yml")}
    code, _, err = run(tmp_path, ["hermes_tasks.boot"], bad)
    assert code == 1 and err.startswith("hermes-tasks: error: ") and "Traceback" not in err


def test_boot_does_not_import_invoke(tmp_path):
    env = make_home(tmp_path)
    code = ("import sys, runpy; sys.argv=['hermes-tasks-boot'];"
            "import os; os._exit = lambda c: (print('invoke' in sys.modules, file=sys.stderr),"
            " sys.stderr.flush(), sys.exit(c));"
            "from hermes_tasks import boot; boot.main()")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.stderr.strip().endswith("False"), proc.stderr
