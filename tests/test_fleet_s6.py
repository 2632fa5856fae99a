"""Placement and one owner per profile across hosts, against real s6 (SPEC §12, §13.1-13.3).

A "host" is a sandbox with its own scandir and s6-svscan; hosts sharing a volume point
``hermes_home`` at the first host's home.
"""

import json
import os

import s6env
import standin

make_profile, own = s6env.make_profile, s6env.own


def run(sb, task, *args, host_vars=(), **kw):
    extra = [a for pair in host_vars for a in ("--var", pair)]
    return s6env.run_tasks(sb, task, *args, *extra, **kw)


def rows_of(res):
    assert res.returncode == 0, res.stderr
    return {r["profile"]: r for r in json.loads(res.stdout)["results"]}


def gateway_slots(sb):
    return sorted(n for n in os.listdir(sb.scandir) if n.startswith("gateway-"))


# ----------------------------------------------------------------------------- placement


def test_host_with_no_gateway_profiles_publishes_no_gateway_slot(sandbox, supervisor):
    make_profile(sandbox.home, "default", {"desired_state": "running"})
    make_profile(sandbox.home, "alice", {"desired_state": "running"})
    rows = rows_of(run(sandbox, "reconcile", "--json",
                       host_vars=["gateway_profiles=[]", "host_id=spare"]))
    assert gateway_slots(sandbox) == []
    assert {p: (r["action"], r["result"], r["message"]) for p, r in rows.items()} == {
        "default": ("skipped", "skipped", "not placed on spare"),
        "alice": ("skipped", "skipped", "not placed on spare")}
    assert standin.starts(sandbox.home, "alice") == []
    log = (sandbox.home / "logs" / "container-boot.log").read_text()
    assert "profile=alice prior_state=None action=skipped result=skipped" in log


def test_patterns_place_only_matching_profiles_and_retire_the_rest(sandbox, supervisor):
    for name in ("alice", "albert", "bob"):
        make_profile(sandbox.home, name, {"desired_state": "running"})
    rows = rows_of(run(sandbox, "reconcile", "--json", host_vars=["host_id=h1"]))
    assert gateway_slots(sandbox) == ["gateway-albert", "gateway-alice", "gateway-bob",
                                      "gateway-default"]
    supervisor.rescan()
    s6env.wait_up(sandbox.slot("bob"))
    s6env.wait_for(lambda: standin.live_pids(sandbox.home, "bob"), 5, what="bob up")
    res = run(sandbox, "reconcile", "--json", host_vars=["host_id=h1", "gateway_profiles=[al*]"])
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout)["results"]
    assert gateway_slots(sandbox) == ["gateway-albert", "gateway-alice"]
    assert standin.live_pids(sandbox.home, "bob") == []  # retired, gateway stopped
    by = {(r["profile"], r["action"]): r for r in results}
    assert by[("bob", "removed")]["result"] == "changed"
    assert "not placed on h1" in by[("bob", "removed")]["message"]
    assert by[("bob", "skipped")]["message"] == "not placed on h1"
    assert by[("default", "skipped")]["message"] == "not placed on h1"
    # Settled: a second run changes nothing and still says why bob has no slot here.
    rows = rows_of(run(sandbox, "reconcile", "--json",
                       host_vars=["host_id=h1", "gateway_profiles=[al*]"]))
    assert {p: r["result"] for p, r in rows.items()} == {
        "albert": "ok", "alice": "ok", "default": "skipped", "bob": "skipped"}


def test_gateway_tasks_refuse_a_profile_placed_elsewhere(sandbox, supervisor):
    make_profile(sandbox.home, "bob", {"desired_state": "stopped"})
    place = ["host_id=h1", "gateway_profiles=[al*]"]
    for task in ("gateway.start", "gateway.stop", "gateway.restart", "gateway.status"):
        res = run(sandbox, task, "-p", "bob", host_vars=place)
        assert res.returncode == 1, (task, res.stdout, res.stderr)
        assert "not placed on h1" in res.stderr and "Traceback" not in res.stderr
    assert gateway_slots(sandbox) == []
    assert json.loads((sandbox.home / "profiles/bob/gateway_state.json").read_text()) == {
        "desired_state": "stopped"}


def test_profile_create_on_a_host_not_placing_it_makes_only_the_directory(sandbox, supervisor):
    place = ["host_id=h1", "gateway_profiles=[al*]"]
    res = run(sandbox, "profile.create", "carol", "--json", host_vars=place)
    rows = rows_of(res)
    assert rows["carol"]["result"] == "changed"
    assert "not placed on h1" in rows["carol"]["message"]
    assert (sandbox.home / "profiles/carol/SOUL.md").is_file()
    assert gateway_slots(sandbox) == []
    rows = rows_of(run(sandbox, "profile.create", "carol", "--json", host_vars=place))
    assert rows["carol"]["result"] == "skipped"
    rows = rows_of(run(sandbox, "profile.create", "alma", "--json", host_vars=place))
    assert rows["alma"]["result"] == "changed" and gateway_slots(sandbox) == ["gateway-alma"]
