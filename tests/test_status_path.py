"""gateway.status reads only what it prints (issue 24): a plain, --health, -p or metrics
call loads no renderer, planner, engine or slot facts, and ``-p NAME`` reads nothing of
another profile, however hostile that profile's files are. Against a real s6-svscan."""

from __future__ import annotations

import json
import os

import pytest
import s6env
from control_helpers import make_profile, status, tasks
from test_runtime_edges_s6 import NETNS, api_env, listening_on, named

# Modules a status call never needs: rendering, planning, the slot facts of a run, the
# change records of a report, Invoke.
NEVER = {"invoke", "jinja2", "hermes_tasks.render", "hermes_tasks.plan", "hermes_tasks.engine",
         "hermes_tasks.facts", "hermes_tasks.slots", "hermes_tasks.slotcache",
         "hermes_tasks.rendercache", "hermes_tasks.report", "hermes_tasks.changes"}

LOADED = ("import sys\n"
          "from hermes_tasks import cli\n"
          "sys.argv = ['hermes-tasks', 'gateway.status', *sys.argv[1:]]\n"
          "try:\n    cli.main(fast_exit=False)\nexcept SystemExit as exc:\n"
          "    print('exit', exc.code, *sorted(sys.modules), file=sys.stderr)\n")


@pytest.fixture
def home(sandbox, supervisor):
    sb = sandbox
    make_profile(sb.home, "default", {"desired_state": "stopped"})
    make_profile(sb.home, "alice", {"desired_state": "running"})
    make_profile(sb.home, "bob", {"desired_state": "running"})
    tasks(sb, "reconcile")
    tasks(sb, "gateway.start", "-p", "alice", "--wait")
    tasks(sb, "gateway.start", "-p", "bob", "--wait")
    return sb


@pytest.mark.parametrize("args", [[], ["--health"], ["-p", "alice"], ["-p", "alice", "--health"],
                                  ["--format", "prometheus"]], ids=lambda a: " ".join(a) or "plain")
def test_a_status_call_loads_no_renderer_planner_or_slot_facts(home, args):
    res = s6env.run_tasks(home, None, argv=["python", "-c", LOADED, *args,
                                            *s6env.inventory_args(home)])
    last = res.stderr.splitlines()[-1].split()
    assert last[:2] == ["exit", "0"], res.stderr
    loaded = set(last[2:])
    assert "hermes_tasks.status" in loaded  # it did run the status
    assert not loaded & NEVER, sorted(loaded & NEVER)


def test_one_profile_reads_nothing_of_another(home):
    sb = home
    before = status(sb)["alice"]
    bob = sb.home / "profiles" / "bob"
    # Every file of bob's that a status reads is now something no reader may follow or
    # block on: a whole status reads them (and says so); -p alice must not look.
    for name in ("gateway_state.json", ".env", "config.yaml", ".gateway-owner.json"):
        if os.path.lexists(bob / name):
            os.unlink(bob / name)
    os.mkfifo(bob / "gateway_state.json")
    os.mkfifo(bob / "config.yaml")
    os.symlink("/dev/zero", bob / ".env")
    os.symlink("/dev/zero", bob / ".gateway-owner.json")
    full = s6env.run_tasks(sb, "gateway.status")
    assert full.returncode == 0, full.stderr
    assert "profiles/bob/gateway_state.json" in full.stderr, full.stderr
    assert "profiles/bob/.env" in full.stderr, full.stderr
    for args in ([], ["--json"], ["--health"], ["--format", "prometheus"]):
        one = tasks(sb, "gateway.status", "-p", "alice", *args)
        assert one.stderr == "" and "bob" not in one.stdout, (args, one.stdout, one.stderr)
    [doc] = json.loads(tasks(sb, "gateway.status", "-p", "alice", "--json").stdout)["gateways"]
    assert doc.pop("uptime") >= before.pop("uptime")
    assert doc == before  # the same record as the whole view gave before


def test_an_empty_profile_means_every_profile(home):
    # `--profile=` is no profile (as through Invoke): the whole view, not a lookup of ""
    plain = tasks(home, "gateway.status", "--json")
    empty = tasks(home, "gateway.status", "--json", "--profile=")
    names = lambda res: [g["profile"] for g in json.loads(res.stdout)["gateways"]]  # noqa: E731
    assert names(empty) == names(plain) == ["default", "alice", "bob"]


def test_a_platform_that_is_on_is_still_checked_against_its_process(sandbox):
    """The text and the metrics say whether each enabled port is served (read from the
    process's sockets) though only the JSON lists every port a gateway serves."""
    sb = sandbox
    s6env.make_profile(sb.home, "default", {"desired_state": "stopped"})
    named(sb, "beta", api_env())  # allocated 8650; its stand-in listens there
    named(sb, "gamma", api_env())  # allocated 8651; its stand-in listens on nothing
    (sb.home / ".standin").mkdir()
    (sb.home / ".standin" / "behaviour.json").write_text(json.dumps(
        {"profiles": {"beta": {"listen": "1"}}}))
    with s6env.Supervisor(sb, wrap=NETNS):
        tasks(sb, "reconcile")
        listening_on(sb, "beta")
        s6env.wait_up(sb.slot("gamma"), 10)
        text = {line.split(":", 1)[0]: line for line in
                tasks(sb, "gateway.status").stdout.splitlines()}
        assert "api_server 8650 (on) served," in text["gateway-beta"], text
        assert "api_server 8651 (on) NOT served," in text["gateway-gamma"], text
        docs = status(sb)
        assert docs["beta"]["served_ports"] == [8650] and docs["gamma"]["served_ports"] == []
        assert docs["beta"]["ports"]["api_server"]["served"] is True
        assert docs["gamma"]["ports"]["api_server"]["served"] is False
        metrics = tasks(sb, "gateway.status", "--format", "prometheus").stdout
        assert 'profile="beta"' in metrics and 'served="true"' in metrics, metrics
        assert 'served="false"' in metrics, metrics
