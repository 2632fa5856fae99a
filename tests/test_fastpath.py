"""The fast path (no Invoke import) behaves exactly like the invoke.Program it shortcuts."""

import json
import os
import subprocess
import sys

import pytest
import s6env

from hermes_tasks import fastpath

ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}


@pytest.mark.parametrize("argv", [
    ["reconcile", "-c"], ["reconcile", "--help"], ["reconcile", "--check=yes"],
    ["-R", "reconcile"], ["--dry", "reconcile"], ["reconcile", "gateway.status"],
    ["reconcile", "--var"], ["reconcile", "--unknown"], ["gateway.start"], [],
    ["gateway.status", "-p", "x"], ["reconcile", "--inventory", "--check"],
])
def test_anything_unusual_goes_to_invoke(argv):
    assert fastpath.parse(argv, {}) is None


def test_invoke_configuration_disables_it():
    assert fastpath.parse(["reconcile"], {}) == ("reconcile", {"var": []})
    assert fastpath.parse(["reconcile"], {"INVOKE_RUN_DRY": "1"}) is None
    assert fastpath.parse(["reconcile"], {fastpath.DISABLE_VAR: "1"}) is None
    assert fastpath.parse(["reconcile", "--var=a=b", "--var", "c=d", "--check"], {}) == (
        "reconcile", {"var": ["a=b", "c=d"], "check": True})


def make_home(root):
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
    return [f"--var=hermes_home={home}", "--var", f"scandir={root / 'scandir'}",
            f"--var=s6_bin_dir={cmd}", "--var", "service_user=null",
            f"--var=hermes_bin={s6env.FAKE_GATEWAY}"]


def run(root, argv, fast):
    env = {**ENV, **({} if fast else {fastpath.DISABLE_VAR: "1"})}
    proc = subprocess.run([sys.executable, "-m", "hermes_tasks", *argv], env=env,
                          capture_output=True, text=True, cwd=root)
    clean = lambda s: s.replace(str(root), "ROOT")  # noqa: E731
    return proc.returncode, clean(proc.stdout), clean(proc.stderr)


SEQUENCE = [
    ["reconcile", "--check"],
    ["reconcile", "--check", "--diff", "--json"],
    ["reconcile"],
    ["reconcile", "--json"],
    ["gateway.status"],
    ["gateway.status", "--json"],
    ["gateway.status", "--profile=bob", "--json"],
    ["gateway.status", "--profile", "nosuch"],
    ["reconcile", "--var", "lock_timeout=soon"],
    ["reconcile", "--inventory", "/nonexistent/hosts.yml"],
]


def test_same_output_both_ways(tmp_path):
    """Two identical sandboxes, the same sequence of commands, compared step by step."""
    results = {}
    for fast in (True, False):
        root = tmp_path / ("fast" if fast else "invoke")
        root.mkdir()
        common = make_home(root)
        results[fast] = [run(root, [*argv, *common] if "--inventory" not in argv else argv, fast)
                         for argv in SEQUENCE]
    for argv, a, b in zip(SEQUENCE, results[True], results[False]):
        assert a == b, argv
    codes = [r[0] for r in results[True]]
    assert codes == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert "Traceback" not in "".join(r[2] for r in results[True])


def test_boot_log_lines_are_the_same(tmp_path):
    logs = []
    for fast in (True, False):
        root = tmp_path / str(fast)
        root.mkdir()
        assert run(root, ["reconcile", *make_home(root)], fast)[0] == 0
        text = (root / "home" / "logs" / "container-boot.log").read_text()
        logs.append([line.split(" ", 1)[1] for line in text.splitlines()])
    assert logs[0] == logs[1] and len(logs[0]) == 4


def test_fast_path_does_not_import_invoke(tmp_path):
    code = ("import sys, runpy; sys.argv=['hermes-tasks','reconcile','--check',"
            f"'--var=hermes_home={tmp_path}','--var=scandir={tmp_path}'];"
            "from hermes_tasks import cli\n"
            "try:\n    cli.main(fast_exit=False)\nexcept SystemExit:\n    pass\n"
            "print('invoke' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True)
    assert proc.stderr.strip().endswith("False"), proc.stderr
    assert os.path.exists(tmp_path)
