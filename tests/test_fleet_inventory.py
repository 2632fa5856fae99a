"""Multi-host inventories and the placement variables (SPEC §3, §13.4)."""

import socket
import subprocess
import sys

import pytest

from hermes_tasks import inventory
from hermes_tasks.errors import InventoryError

FLEET = """
all:
  vars: {hermes_home: /shared, ansible_user: deploy, ansible_python_interpreter: /usr/bin/python3}
  children:
    gateways:
      vars: {shared_volume: true, ansible_become: true}
      hosts:
        alpha: {ansible_host: 127.0.0.1, ansible_port: 2201, gateway_profiles: ["al*"]}
        beta: {ansible_host: 127.0.0.1, ansible_port: 2202, scandir: /run/beta}
  hosts:
    gamma: {gateway_profiles: [], host_id: gamma-box}
"""


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_host_flag_picks_the_entry_and_its_groups_vars(tmp_path):
    inv = write(tmp_path / "hosts.yml", FLEET)
    a = inventory.load(inv, environ={}, host="alpha")
    assert (a.host_id, a.gateway_profiles, a.shared_volume, a.hermes_home) == \
        ("alpha", ("al*",), True, "/shared")
    b = inventory.load(inv, environ={}, host="beta")
    assert (b.host_id, b.gateway_profiles, b.scandir) == ("beta", ("*",), "/run/beta")
    g = inventory.load(inv, environ={}, host="gamma")
    assert (g.host_id, g.gateway_profiles, g.shared_volume) == ("gamma-box", (), False)


def test_env_var_picks_the_entry_and_the_flag_beats_it(tmp_path):
    inv = write(tmp_path / "hosts.yml", FLEET)
    assert inventory.load(inv, environ={"HERMES_TASKS_HOST": "beta"}).host_id == "beta"
    assert inventory.load(inv, environ={"HERMES_TASKS_HOST": "beta"}, host="alpha").host_id == "alpha"


def test_several_hosts_without_a_choice_is_a_usage_error_listing_them(tmp_path):
    inv = write(tmp_path / "hosts.yml", FLEET)
    with pytest.raises(InventoryError) as err:
        inventory.load(inv, environ={})
    assert "--host" in str(err.value) and "alpha, beta, gamma" in str(err.value)
    with pytest.raises(InventoryError, match="no host 'delta'.*alpha, beta, gamma"):
        inventory.load(inv, environ={}, host="delta")


def test_localhost_wins_then_the_only_entry(tmp_path):
    inv = write(tmp_path / "a.yml", "all:\n  hosts:\n    web1: {}\n    localhost: {host_id: here}\n")
    assert inventory.load(inv, environ={}).host_id == "here"
    # Several entries: host_id defaults to the entry's name.
    assert inventory.load(inv, environ={}, host="web1").host_id == "web1"
    only = write(tmp_path / "b.yml", "all:\n  hosts:\n    web1: {gateway_profiles: [bob]}\n")
    s = inventory.load(only, environ={})
    # One entry: host_id is the machine's hostname, not the entry's name.
    assert s.gateway_profiles == ("bob",) and s.host_id == socket.gethostname()


def test_host_vars_file_of_the_chosen_host_applies(tmp_path):
    write(tmp_path / "inv" / "hosts.yml", FLEET)
    write(tmp_path / "inv" / "host_vars" / "beta.yml", "host_id: b2\nansible_host: x\n")
    write(tmp_path / "inv" / "group_vars" / "gateways.yml", "gateway_profiles: [b*]\n")
    s = inventory.load(tmp_path / "inv", environ={}, host="beta")
    assert (s.host_id, s.gateway_profiles, s.shared_volume) == ("b2", ("b*",), True)


def test_placement_defaults_and_overrides():
    s = inventory.load(environ={})
    assert s.gateway_profiles == ("*",) and s.shared_volume is False
    assert s.host_id == socket.gethostname()
    s = inventory.load(None, ["gateway_profiles=[]", "host_id=h-1", "shared_volume=true"],
                       environ={})
    assert (s.gateway_profiles, s.host_id, s.shared_volume) == ((), "h-1", True)
    assert inventory.load(None, ["host_id=123"], environ={}).host_id == "123"


@pytest.mark.parametrize("var, needle", [
    ("gateway_profiles=alice", "'gateway_profiles' must be a list"),
    ("gateway_profiles=[a/b]", "must not contain '/'"),
    ("host_id=a b", "'host_id' must be a short name"),
    ("host_id=../x", "'host_id' must be a short name"),
    ("host_id=" + "x" * 65, "'host_id' must be a short name"),
    ("shared_volume=yes please", "'shared_volume' must be true or false"),
    ("gateway_profilez=[]", "did you mean 'gateway_profiles'"),
])
def test_bad_placement_values_are_usage_errors(var, needle):
    with pytest.raises(InventoryError, match=needle):
        inventory.load(None, [var], environ={})


def test_as_vars_round_trips_with_placement(tmp_path):
    import yaml

    s = inventory.load(None, ["gateway_profiles=[al*, bob]", "shared_volume=true"], environ={})
    path = write(tmp_path / "hosts.yml", yaml.safe_dump({"all": {"vars": s.as_vars()}}))
    assert inventory.load(path, environ={}) == s


def test_cli_host_flag_and_error_on_both_paths(tmp_path):
    """``--host`` through Invoke and through the fast path; the ambiguity is one line."""
    inv = write(tmp_path / "hosts.yml", FLEET.replace("/shared", str(tmp_path)))
    for extra in ({}, {"HERMES_TASKS_NO_FASTPATH": "1"}):
        env = {"PATH": "/usr/bin:/bin", **extra}
        proc = subprocess.run([sys.executable, "-m", "hermes_tasks", "gateway.status",
                               "--inventory", str(inv)], capture_output=True, text=True, env=env)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "alpha, beta, gamma" in proc.stderr and len(proc.stderr.splitlines()) == 1
        proc = subprocess.run([sys.executable, "-m", "hermes_tasks", "gateway.status",
                               "--inventory", str(inv), "--host", "beta"],
                              capture_output=True, text=True, env=env)
        # beta's scandir does not exist: the error proves beta's entry was used.
        assert proc.returncode == 1 and "/run/beta" in proc.stderr, proc.stderr
