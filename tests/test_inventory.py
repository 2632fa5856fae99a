"""Inventory precedence, validation and error messages (SPEC §3)."""

import pytest

from hermes_tasks import inventory
from hermes_tasks.errors import InventoryError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_shipped_inventory_holds_the_container_defaults():
    s = inventory.load(environ={})
    assert (s.hermes_home, s.scandir, s.s6_bin_dir) == ("/opt/data", "/run/service", "/command")
    assert (s.service_user, s.service_uid, s.service_gid) == ("hermes", 10000, 10000)
    assert (s.lock_timeout, s.boot_log_rotate_bytes) == (60, 262144)
    assert (s.gateway_log_archives, s.gateway_log_max_bytes) == (10, 1000000)


def test_precedence_lowest_to_highest(tmp_path):
    inv = tmp_path / "inv"
    write(inv / "hosts.yml", """
all:
  vars: {hermes_home: /a, scandir: /s1, lock_timeout: 1, hermes_bin: h1, gateway_log_archives: 1}
  hosts:
    localhost: {scandir: /s3, lock_timeout: 3}
""")
    write(inv / "group_vars" / "all.yml", "scandir: /s2\nlock_timeout: 2\nhermes_bin: h2\n")
    write(inv / "host_vars" / "localhost.yml", "lock_timeout: 4\n")
    s = inventory.load(inv, environ={})
    assert (s.hermes_home, s.scandir, s.lock_timeout, s.hermes_bin) == ("/a", "/s3", 4, "h2")
    assert s.gateway_log_archives == 1
    s = inventory.load(inv, environ={"HERMES_HOME": "/env", "S6_PROFILE_GATEWAY_SCANDIR": "/se"})
    assert (s.hermes_home, s.scandir) == ("/env", "/se")
    s = inventory.load(inv, ["hermes_home=/cli", "lock_timeout=9"], environ={"HERMES_HOME": "/env"})
    assert (s.hermes_home, s.lock_timeout) == ("/cli", 9)


def test_env_var_chooses_the_inventory_and_flag_beats_it(tmp_path):
    a = write(tmp_path / "a.yml", "all:\n  vars: {hermes_home: /from-env}\n")
    b = write(tmp_path / "b.yml", "all:\n  vars: {hermes_home: /from-flag}\n")
    assert inventory.load(environ={"HERMES_TASKS_INVENTORY": str(a)}).hermes_home == "/from-env"
    assert inventory.load(b, environ={"HERMES_TASKS_INVENTORY": str(a)}).hermes_home == "/from-flag"


def test_var_values_are_yaml_but_strings_stay_verbatim():
    s = inventory.load(None, ["service_user=null", "hermes_bin=123", "extra_env={A: 1, B: true}",
                              "lock_timeout=0.5"], environ={})
    assert s.service_user is None and s.hermes_bin == "123" and s.lock_timeout == 0.5
    assert dict(s.extra_env) == {"A": "1", "B": "true"}


@pytest.mark.parametrize("text, needle", [
    ("all:\n  vars: {scandr: /x}\n", "unknown variable 'scandr'; did you mean 'scandir'"),
    ("all:\n  vars: {lock_timeout: soon}\n", "'lock_timeout' must be a non-negative number"),
    ("all:\n  vars: {service_uid: true}\n", "'service_uid' must be a non-negative integer"),
    ("all:\n  vars: {hermes_home: relative/path}\n", "'hermes_home' must be an absolute path"),
    ("all:\n  vars: {s6_bin_dir: /has space}\n", "'s6_bin_dir' must have no whitespace"),
    ("all:\n  vars: {extra_env: [a, b]}\n", "'extra_env' must be a mapping"),
    ("all:\n  vars: {extra_env: {1BAD: x}}\n", "invalid variable name"),
    ("all:\n  vars: {extra_env: {A: [1]}}\n", "'extra_env.A' must be a string, number or boolean"),
    ("all: [1, 2]\n", "top-level 'all' group"),
    ("all:\n  vars: {a: [\n", "not valid YAML"),
])
def test_bad_inventories_name_file_and_key(tmp_path, text, needle):
    path = write(tmp_path / "hosts.yml", text)
    with pytest.raises(InventoryError) as err:
        inventory.load(path, environ={})
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_unreadable_inventory_and_bad_var(tmp_path):
    with pytest.raises(InventoryError, match="cannot read inventory"):
        inventory.load(tmp_path / "missing.yml", environ={})
    with pytest.raises(InventoryError, match="key=value"):
        inventory.load(None, ["novalue"], environ={})
    with pytest.raises(InventoryError, match="--var: unknown variable 'hermes_hom'; did you mean 'hermes_home'"):
        inventory.load(None, ["hermes_hom=/x"], environ={})


def test_as_vars_round_trips_through_yaml(tmp_path):
    import yaml

    s = inventory.load(None, ["extra_env={Q: \"it's $(x)\"}"], environ={})
    path = write(tmp_path / "hosts.yml", yaml.safe_dump({"all": {"vars": s.as_vars()}}))
    assert inventory.load(path, environ={}) == s


def test_crash_capacity_and_watch_settings_are_validated():
    s = inventory.load(environ={})
    assert (s.crash_limit, s.crash_window, s.supervise_timeout, s.watch_interval) == (5, 60, 120, 2)
    assert s.webhook_port_base - s.api_port_base >= s.max_slots
    for bad, needle in (("crash_limit=0", "'crash_limit' must be positive"),
                        ("crash_window=0", "'crash_window' must be from 1"),
                        ("supervise_timeout=-1", "'supervise_timeout' must be a non-negative"),
                        ("watch_interval=.nan", "'watch_interval' must be a non-negative")):
        with pytest.raises(inventory.InventoryError, match=needle):
            inventory.load(None, [bad], environ={})
    assert inventory.load(None, ["watch_interval=0"], environ={}).watch_interval == 0


def test_port_ranges_that_would_interleave_are_refused():
    with pytest.raises(inventory.InventoryError) as err:
        inventory.load(None, ["webhook_port_base=8750"], environ={})
    assert "--var: 'webhook_port_base'" in str(err.value) and "9100" in str(err.value)
    with pytest.raises(inventory.InventoryError, match="'max_slots' leaves"):
        inventory.load(None, ["max_slots=451"], environ={})
    assert inventory.load(None, ["max_slots=100", "webhook_port_base=8750"],
                          environ={}).webhook_port_base == 8750


def test_isolation_settings_are_validated():
    s = inventory.load(environ={})
    assert (s.profile_isolation, s.profile_uid_base) == (False, 20000)
    on = inventory.load(None, ["profile_isolation=true", "profile_uid_base=30000"], environ={})
    assert (on.profile_isolation, on.profile_uid_base) == (True, 30000)
    for bad, needle in (("profile_isolation=yes please", "'profile_isolation' must be true or"),
                        ("profile_uid_base=999", "'profile_uid_base' must be an integer from"),
                        ("profile_uid_base=true", "'profile_uid_base' must be an integer"),
                        ("profile_uid_base=70000", "'profile_uid_base' must be an integer")):
        with pytest.raises(inventory.InventoryError, match=needle):
            inventory.load(None, [bad], environ={})
    with pytest.raises(inventory.InventoryError, match="needs root and a service_user"):
        inventory.load(None, ["profile_isolation=true", "service_user=null"], environ={})
    with pytest.raises(inventory.InventoryError, match="max_slots"):
        inventory.load(None, ["profile_isolation=true", "profile_uid_base=65200"], environ={})
