"""gateway.status skips Invoke when its argv is only its own flags (hermes_tasks/fastpath.py,
issue 24): every argv prints and exits exactly as through the Invoke program."""

from __future__ import annotations

import subprocess
import sys

import pytest
import s6env

from hermes_tasks import fastpath

BOTH_WAYS = [
    [],
    ["--json"],
    ["-j", "-p", "alice"],
    ["--profile=alice", "--format", "json"],
    ["-f", "prometheus"],
    ["-p", "nosuch"],
    ["-p", "nosuch", "--json"],
    ["--health"],
    ["--health", "--json"],
    ["--format", "bogus"],
    ["--var", "nosuch=1", "--json"],
    ["-v", "max_slots=0"],
    ["--host", "elsewhere"],
]


@pytest.fixture
def home(sandbox):
    s6env.make_profile(sandbox.home, "default", {"desired_state": "stopped"})
    s6env.make_profile(sandbox.home, "alice", {"desired_state": "stopped"})
    s6env.make_profile(sandbox.home, "bob", {"desired_state": "running"})
    res = s6env.run_tasks(sandbox, "reconcile", "--json")
    assert res.returncode == 0, res.stderr
    return sandbox


@pytest.mark.parametrize("args", BOTH_WAYS, ids=lambda a: " ".join(a) or "plain")
def test_the_same_output_and_exit_code_both_ways(home, args):
    assert fastpath.parse(["gateway.status", *args], {}) is not None
    fast = s6env.run_tasks(home, "gateway.status", *args)
    slow = s6env.run_tasks(home, "gateway.status", *args,
                           env={fastpath.DISABLE_VAR: "1"})
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        slow.returncode, slow.stdout, slow.stderr)
    assert "Traceback" not in fast.stderr


@pytest.mark.parametrize("argv", [
    ["gateway.status", "-p"],               # a missing value: Invoke words the error
    ["gateway.status", "-p", "--json"],     # a value that looks like a flag
    ["gateway.status", "--bogus"],          # not its flag
    ["gateway.status", "--help"],
    ["gateway.status", "reconcile"],        # another task after it
    ["--debug", "gateway.status"],          # a core flag
    ["reconcile"],
    [],
])
def test_anything_else_goes_to_invoke(argv):
    assert fastpath.parse(argv, {}) is None


def test_invoke_configuration_in_play_goes_to_invoke():
    assert fastpath.parse(["gateway.status"], {"INVOKE_RUN_DRY": "1"}) is None
    assert fastpath.parse(["gateway.status"], {fastpath.DISABLE_VAR: "1"}) is None


def test_the_fast_path_does_not_import_invoke(home):
    code = ("import sys\n"
            "from hermes_tasks import cli\n"
            "sys.argv = ['hermes-tasks', 'gateway.status', *sys.argv[1:]]\n"
            "try:\n    cli.main(fast_exit=False)\nexcept SystemExit as exc:\n"
            "    print('exit', exc.code, 'invoke' in sys.modules, file=sys.stderr)\n")
    res = s6env.run_tasks(home, None, argv=["python", "-c", code,
                                            *s6env.inventory_args(home)])
    assert res.stderr.splitlines()[-1] == "exit 0 False", res.stderr
    slow = s6env.run_tasks(home, None, argv=["python", "-c", code, "--bogus"])
    assert slow.stderr.splitlines()[-1].endswith(" True"), slow.stderr


@pytest.mark.parametrize("args", [["--help"], ["gateway.status", "--help"], ["--list"]])
def test_invokes_own_output_into_a_closed_pipe_is_quiet(home, args):
    # The reader is gone before the program writes (`| head -0`): no traceback, exit 0.
    proc = subprocess.Popen([sys.executable, "-m", "hermes_tasks", *args], cwd=home.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert (proc.wait(30), err) == (0, "")
