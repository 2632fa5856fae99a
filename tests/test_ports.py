"""Per-profile ports (SPEC §11, §13.5): hermes's rules, precedence, stable allocation, the
allocation file as hostile input, collisions, and the run script's scoped environment."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hermes_tasks import inventory, ports
from hermes_tasks.errors import InventoryError
from hermes_tasks.render import Renderer

BASES = {ports.API: 8650, ports.WEBHOOK: 8750}
KEY = "k" * 32


def profile(home: Path, name: str, env: str | None = None, config: str | None = None) -> Path:
    d = home if name == "default" else home / "profiles" / name
    d.mkdir(parents=True, exist_ok=True)
    if name != "default":
        (d / "SOUL.md").write_text("soul\n")
    if env is not None:
        (d / ".env").write_text(env)
    if config is not None:
        (d / "config.yaml").write_text(config)
    return d


def lay(home: Path, names, *, env=None, pv=None, write=True, scoped=("API_SERVER_", "WEBHOOK_"),
        extra=None, warnings=None):
    warn = (warnings.append if warnings is not None else lambda m: None)
    extra = extra or {}
    return ports.layout(str(home), sorted(names), pv or {}, env or {}, scoped,
                        {n: extra.get(n, {}) for n in ["default", *names]}, BASES, warn,
                        write=write)


def saved(home: Path) -> dict:
    return json.loads((home / ports.FILE).read_text())["profiles"]


# --------------------------------------------------------------------------- hermes's rules


@pytest.mark.parametrize("env, config, expected", [
    ({}, {}, (False, 8642)),
    ({"API_SERVER_ENABLED": "true"}, {}, (False, 8642)),  # no key: hermes refuses to start
    ({"API_SERVER_KEY": "set"}, {}, (True, 8642)),  # a key alone enables it
    ({"API_SERVER_KEY": "set", "API_SERVER_PORT": "9001"}, {}, (True, 9001)),
    # enabled through the environment: the env port replaces config.yaml's extra.port
    ({"API_SERVER_KEY": "set", "API_SERVER_PORT": "9001"},
     {"api_server": ports.PlatformConfig(extra_port=9100)}, (True, 9001)),
    # enabled only in config.yaml: extra.port wins over the env port
    ({"API_SERVER_PORT": "9001"},
     {"api_server": ports.PlatformConfig(enabled=True, extra_port=9100, has_key=True)},
     (True, 9100)),
    ({"API_SERVER_PORT": "9001"},
     {"api_server": ports.PlatformConfig(enabled=True, has_key=True)}, (True, 9001)),
    ({"API_SERVER_KEY": "set", "API_SERVER_PORT": "junk"}, {}, (True, 8642)),
    ({"API_SERVER_ENABLED": "false", "API_SERVER_KEY": ""}, {}, (False, 8642)),
])
def test_api_server_rules_of_hermes_0_19(env, config, expected):
    assert ports.bound(env, config)[ports.API] == expected


@pytest.mark.parametrize("env, config, expected", [
    ({}, {}, (False, 8644)),
    ({"WEBHOOK_ENABLED": "yes", "WEBHOOK_PORT": "9200"}, {}, (True, 9200)),
    # enabled only in config.yaml without a port: 8644 whatever is exported
    ({"WEBHOOK_PORT": "9200"}, {"webhook": ports.PlatformConfig(enabled=True)}, (True, 8644)),
    ({"WEBHOOK_PORT": "9200"}, {"webhook": ports.PlatformConfig(enabled=True, extra_port=9300)},
     (True, 9300)),
    ({"WEBHOOK_ENABLED": "1", "WEBHOOK_PORT": "9200"},
     {"webhook": ports.PlatformConfig(extra_port=9300)}, (True, 9200)),
])
def test_webhook_rules_of_hermes_0_19(env, config, expected):
    assert ports.bound(env, config)[ports.WEBHOOK] == expected


def test_dotenv_parsing_like_python_dotenv():
    raw = (b"\xef\xbb\xbf# comment\nexport API_SERVER_PORT = '9001'\nAPI_SERVER_ENABLED=true # on\n"
           b"WEBHOOK_PORT=\"9300\"\nAPI_SERVER_KEY=secret-not-kept\nOTHER=1\nWEBHOOK_PORT=9301\n")
    assert ports.parse_dotenv(raw) == {"API_SERVER_PORT": "9001", "API_SERVER_ENABLED": "true",
                                       "WEBHOOK_PORT": "9301", "API_SERVER_KEY": "set"}


def test_config_yaml_platforms_nested_and_top_level():
    raw = (b"gateway:\n  platforms:\n    api_server: {enabled: true, extra: {port: 9100, key: k}}\n"
           b"platforms:\n  api_server: {extra: {port: 9101}}\n  webhook: {enabled: 'yes', port: 9400}\n")
    cfg = ports.parse_config(raw, lambda m: None)
    assert cfg["api_server"] == ports.PlatformConfig(True, 9101, None, True)
    assert cfg["webhook"] == ports.PlatformConfig(True, None, 9400, False)


# --------------------------------------------------------------------------- precedence


def test_named_precedence_env_then_profile_vars_then_config_then_allocation(tmp_path):
    profile(tmp_path, "default")
    profile(tmp_path, "a", env="API_SERVER_PORT=9001\n")
    profile(tmp_path, "b", config="platforms:\n  api_server:\n    extra: {port: 9100}\n")
    profile(tmp_path, "c", env="API_SERVER_PORT=9002\n",
            config="platforms:\n  api_server:\n    extra: {port: 9101}\n")
    profile(tmp_path, "d", config="platforms:\n  api_server:\n    port: 9102\n")
    profile(tmp_path, "e")
    pv = {"a": {"api_server_port": 9500}, "b": {"api_server_port": 9501}}
    gws = lay(tmp_path, ["a", "b", "c", "d", "e"], pv=pv)
    assert gws["a"].exports["api_server"] == 9001  # .env beats profile_vars
    assert gws["b"].exports["api_server"] == 9501  # profile_vars beats config.yaml
    assert gws["c"].exports["api_server"] == 9002  # .env beats config.yaml
    assert gws["d"].exports["api_server"] == 9102  # hermes ignores `port`: exporting it works
    assert gws["e"].exports == {"api_server": 8654, "webhook": 8754}  # a–d hold 8650–8653
    # every profile on the volume has an allocation, explicit or not
    assert set(saved(tmp_path)) == {"a", "b", "c", "d", "e"}


def test_default_precedence_root_env_then_container_then_config(tmp_path):
    profile(tmp_path, "default", config="platforms:\n  api_server:\n    extra: {port: 9100}\n")
    on = {"API_SERVER_ENABLED": "true", "API_SERVER_KEY": KEY}
    assert lay(tmp_path, [], env=on)["default"].bound == {"api_server": 9100}
    assert lay(tmp_path, [], env={**on, "API_SERVER_PORT": "9200"})["default"].bound == \
        {"api_server": 9200}
    (tmp_path / ".env").write_text("API_SERVER_PORT=9300\n")
    assert lay(tmp_path, [], env={**on, "API_SERVER_PORT": "9200"})["default"].bound == \
        {"api_server": 9300}
    (tmp_path / ".env").write_text("API_SERVER_ENABLED=false\n")  # the key still enables it
    assert lay(tmp_path, [], env=on)["default"].bound == {"api_server": 9100}
    assert not (tmp_path / ports.FILE).exists()  # nothing to allocate: no file made


def test_named_profiles_do_not_inherit_scoped_container_vars(tmp_path):
    profile(tmp_path, "default")
    profile(tmp_path, "own", env=f"API_SERVER_ENABLED=true\nAPI_SERVER_KEY={KEY}\n")
    profile(tmp_path, "off", env="API_SERVER_ENABLED=false\n")
    profile(tmp_path, "via-vars")
    container = {"API_SERVER_ENABLED": "true", "API_SERVER_KEY": KEY, "API_SERVER_PORT": "8642"}
    extra = {"via-vars": {"API_SERVER_ENABLED": "1", "API_SERVER_KEY": KEY}}
    gws = lay(tmp_path, ["off", "own", "via-vars"], env=container, extra=extra)
    assert gws["default"].bound == {"api_server": 8642}
    assert gws["own"].bound == {"api_server": 8651}  # "off" (first by name) holds 8650
    assert gws["off"].bound == {}
    assert gws["via-vars"].bound == {"api_server": 8652}
    # without scoping, the container's key and port reach every named gateway
    gws = lay(tmp_path, ["off", "own", "via-vars"], env=container, extra=extra, scoped=())
    assert gws["off"].bound == {"api_server": gws["off"].exports["api_server"]}


# --------------------------------------------------------------------------- stability


def test_allocations_are_stable_as_profiles_come_and_go(tmp_path):
    profile(tmp_path, "default")
    for n in ("a", "b", "c"):
        profile(tmp_path, n)
    first = {n: g.exports for n, g in lay(tmp_path, ["a", "b", "c"]).items() if n != "default"}
    assert first["a"] == {"api_server": 8650, "webhook": 8750}
    assert first["c"] == {"api_server": 8652, "webhook": 8752}
    gws = lay(tmp_path, ["a", "c", "aa"])  # b deleted, aa created: aa takes b's free ports
    assert gws["a"].exports == first["a"] and gws["c"].exports == first["c"]
    assert gws["aa"].exports == {"api_server": 8651, "webhook": 8751}
    assert set(saved(tmp_path)) == {"a", "aa", "c"}  # b's entry dropped
    mtime = (tmp_path / ports.FILE).stat().st_mtime_ns
    lay(tmp_path, ["a", "c", "aa"])
    assert (tmp_path / ports.FILE).stat().st_mtime_ns == mtime  # unchanged: not rewritten


def test_check_mode_reads_but_never_writes(tmp_path):
    profile(tmp_path, "default")
    profile(tmp_path, "a")
    gws = lay(tmp_path, ["a"], write=False)
    assert gws["a"].exports == {"api_server": 8650, "webhook": 8750}
    assert not (tmp_path / ports.FILE).exists()


def test_explicit_port_on_another_profiles_allocation_is_refused_and_moves_nothing(tmp_path):
    profile(tmp_path, "default")
    profile(tmp_path, "a")
    profile(tmp_path, "b")
    lay(tmp_path, ["a", "b"])
    before = saved(tmp_path)
    (tmp_path / "profiles" / "b" / ".env").write_text(
        f"API_SERVER_ENABLED=true\nAPI_SERVER_KEY={KEY}\nAPI_SERVER_PORT=8650\n")  # a's
    warnings: list[str] = []
    gws = lay(tmp_path, ["a", "b"], warnings=warnings)
    assert gws["a"].exports["api_server"] == 8650  # never moves while a exists
    assert gws["b"].bound == {"api_server": 8650}
    assert saved(tmp_path) == before and not warnings
    order = [("default", True), ("a", True), ("b", True)]
    failed = ports.collisions(order, gws)
    assert set(failed) == {"b"}
    assert "8650" in failed["b"] and "a's api_server_port allocation" in failed["b"]
    assert "API_SERVER_PORT for b" in failed["b"]  # how to resolve it
    # once a is deleted its allocation goes, and b may have the port
    gws = lay(tmp_path, ["b"])
    assert ports.collisions([("default", True), ("b", True)], gws) == {}
    assert "a" not in saved(tmp_path)


def test_ranges_never_interleave_up_to_the_gap(tmp_path):
    profile(tmp_path, "default")
    names = [f"p{i:03d}" for i in range(12)]
    for n in names:
        profile(tmp_path, n)
    bases = {ports.API: 8650, ports.WEBHOOK: 8660}  # room for 10 API ports
    warnings: list[str] = []
    gws = ports.layout(str(tmp_path), names, {}, {}, (), {n: {} for n in ["default", *names]},
                       bases, warnings.append, write=True)
    api = [gws[n].exports.get("api_server") for n in names]
    assert api[:10] == list(range(8650, 8660)) and api[10:] == [None, None]
    assert all(8660 <= gws[n].exports["webhook"] < 8672 for n in names)
    assert any("no free port left for p010's api_server_port" in w for w in warnings)


def test_hermes_own_and_default_ports_are_never_allocated(tmp_path):
    profile(tmp_path, "default")
    profile(tmp_path, "a")
    bases = {ports.API: 8642, ports.WEBHOOK: 9644}
    gws = ports.layout(str(tmp_path), ["a"], {}, {"API_SERVER_PORT": "8643"}, (),
                       {"default": {}, "a": {}}, bases, lambda m: None, write=True)
    assert gws["a"].exports == {"api_server": 8646, "webhook": 9644}


# --------------------------------------------------------------------------- hostile file


def _seed(home: Path):
    profile(home, "default")
    profile(home, "a")
    profile(home, "b")


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]",
                                     b"[" * 100000 + b"]" * 100000])
def test_corrupt_file_is_set_aside(tmp_path, content):
    _seed(tmp_path)
    (tmp_path / ports.FILE).write_bytes(content)
    warnings: list[str] = []
    gws = lay(tmp_path, ["a", "b"], warnings=warnings)
    assert gws["a"].exports == {"api_server": 8650, "webhook": 8750}
    if content == b"[1, 2]":  # valid JSON of the wrong shape: replaced, warned
        assert any("afresh" in w for w in warnings)
    else:
        assert (tmp_path / (ports.FILE + ".corrupt")).read_bytes() == content
        assert any("ports may move" in w for w in warnings), warnings
    assert set(saved(tmp_path)) == {"a", "b"}


def test_the_plan_only_reads_and_the_recorded_allocation_is_the_one_planned(tmp_path):
    """The facts layer reads the file; the run records it (the executor's AllocatePorts)."""
    _seed(tmp_path)
    (tmp_path / ports.FILE).write_bytes(b"{not json")
    warnings: list[str] = []
    args = (str(tmp_path), ["a", "b"], {}, {}, (), {"default": {}, "a": {}, "b": {}}, BASES,
            warnings.append)
    gws, allocation = ports._layout(*args, recording=True, record=False)
    assert (tmp_path / ports.FILE).read_bytes() == b"{not json" and warnings == []
    assert allocation.record(warnings.append)
    assert (tmp_path / (ports.FILE + ".corrupt")).read_bytes() == b"{not json"
    assert len(warnings) == 1 and "set aside" in warnings[0], warnings  # said once, by the run
    assert saved(tmp_path) == {n: {"api_server_port": gws[n].exports["api_server"],
                                   "webhook_port": gws[n].exports["webhook"]} for n in "ab"}
    assert not allocation.record(warnings.append)  # nothing changed: nothing written
    # check mode: no allocation to record, the file untouched
    assert ports._layout(*args, recording=False, record=False)[1] is None


def test_an_entry_written_between_plan_and_record_is_kept_and_named(tmp_path):
    _seed(tmp_path)
    args = (str(tmp_path), ["a", "b"], {}, {}, (), {"default": {}, "a": {}, "b": {}}, BASES)
    _, allocation = ports._layout(*args, lambda m: None, recording=True, record=False)
    (tmp_path / ports.FILE).write_text(json.dumps(
        {"profiles": {"a": {"api_server_port": 8660, "webhook_port": 8760}}}))
    warnings: list[str] = []
    assert allocation.record(warnings.append)
    assert saved(tmp_path)["a"] == {"api_server_port": 8660, "webhook_port": 8760}
    assert saved(tmp_path)["b"] == {"api_server_port": 8651, "webhook_port": 8751}  # as planned
    assert len(warnings) == 1 and "the ports of a recorded there differ" in warnings[0]


def test_a_record_of_the_bytes_the_plan_read_neither_parses_nor_writes(tmp_path, monkeypatch):
    _seed(tmp_path)
    args = (str(tmp_path), ["a", "b"], {}, {}, (), {"default": {}, "a": {}, "b": {}}, BASES)
    _, first = ports._layout(*args, lambda m: None, recording=True, record=False)
    assert first.record(lambda m: None)
    _, again = ports._layout(*args, lambda m: None, recording=True, record=False)
    before = os.stat(tmp_path / ports.FILE)
    parsed: list[bytes] = []
    real = ports.PortsFile._parse
    monkeypatch.setattr(ports.PortsFile, "_parse",
                        lambda self, raw, set_aside: parsed.append(raw) or real(self, raw, set_aside))
    assert not again.record(lambda m: None)
    assert parsed == []
    after = os.stat(tmp_path / ports.FILE)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # the same plan recorded after the file changed: read and merged as before
    (tmp_path / ports.FILE).write_text(json.dumps(
        {"profiles": {"a": {"api_server_port": 8660, "webhook_port": 8760}}}))
    warnings: list[str] = []
    assert again.record(warnings.append)
    assert parsed and saved(tmp_path)["a"] == {"api_server_port": 8660, "webhook_port": 8760}
    assert len(warnings) == 1 and "the ports of a recorded there differ" in warnings[0]


def test_symlink_fifo_and_huge_file_are_never_followed_or_read(tmp_path):
    _seed(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text('{"profiles": {"a": {"api_server_port": 9999}}}')
    (tmp_path / ports.FILE).symlink_to(secret)
    gws = lay(tmp_path, ["a", "b"])
    assert gws["a"].exports["api_server"] == 8650
    assert (tmp_path / (ports.FILE + ".corrupt")).is_symlink()
    assert secret.read_text().endswith("9999}}}")  # never written through
    assert not (tmp_path / ports.FILE).is_symlink()

    (tmp_path / ports.FILE).unlink()
    os.mkfifo(tmp_path / ports.FILE)
    assert lay(tmp_path, ["a", "b"])["b"].exports["api_server"] == 8651  # no hang
    assert (tmp_path / ports.FILE).is_file()

    (tmp_path / ports.FILE).write_bytes(b" " * (ports.FILE_LIMIT + 10))
    assert lay(tmp_path, ["a", "b"])["a"].exports["api_server"] == 8650
    assert (tmp_path / ports.FILE).stat().st_size < 1000


def test_invalid_entries_dropped_one_by_one(tmp_path):
    _seed(tmp_path)
    profile(tmp_path, "c")
    (tmp_path / ports.FILE).write_text(json.dumps({"profiles": {
        "a": {"api_server_port": 9000, "webhook_port": 80},
        "b": {"api_server_port": 9000, "webhook_port": True},
        "c": {"api_server_port": "9100", "webhook_port": 9101},
        "Bad Name": {"api_server_port": 9200}, "gone": {"api_server_port": 9300}}}))
    warnings: list[str] = []
    gws = lay(tmp_path, ["a", "b", "c"], warnings=warnings)
    assert gws["a"].exports["api_server"] == 9000  # kept
    assert gws["b"].exports["api_server"] == 8650  # duplicate of a's: dropped, reallocated
    assert gws["c"].exports == {"api_server": 8651, "webhook": 9101}
    assert len([w for w in warnings if "dropped" in w]) == 5, warnings
    assert "gone" not in saved(tmp_path)


def test_profile_files_as_hostile_input(tmp_path):
    _seed(tmp_path)
    target = tmp_path / "elsewhere"
    target.write_text("API_SERVER_PORT=9999\n")
    (tmp_path / "profiles" / "a" / ".env").symlink_to(target)
    os.mkfifo(tmp_path / "profiles" / "b" / ".env")
    (tmp_path / "profiles" / "b" / "config.yaml").write_bytes(b"x" * (ports.CONFIG_LIMIT + 1))
    warnings: list[str] = []
    gws = lay(tmp_path, ["a", "b"], warnings=warnings)
    assert gws["a"].exports["api_server"] == 8650 and gws["b"].exports["api_server"] == 8651
    assert any("symlink" in w for w in warnings) and len(warnings) == 3, warnings


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership of the file needs root")
def test_file_is_owned_by_the_service_user(tmp_path):
    _seed(tmp_path)
    ports.layout(str(tmp_path), ["a", "b"], {}, {}, (), {"default": {}, "a": {}, "b": {}},
                 BASES, lambda m: None, write=True, owner=(12345, 12346))
    st = (tmp_path / ports.FILE).stat()
    assert (st.st_uid, st.st_gid) == (12345, 12346)


# --------------------------------------------------------------------------- collisions


def gw(name, **bound):
    return ports.Gateway(name, {}, bound, bound)


def test_collisions_fail_the_later_gateway_naming_both():
    gws = {"default": gw("default", api_server=8642), "a": gw("a", api_server=8642),
           "b": gw("b", webhook=8642), "c": gw("c", api_server=8650, webhook=8650),
           "d": gw("d", api_server=8651)}
    order = [("default", True), ("a", True), ("b", True), ("c", True), ("d", False)]
    failed = ports.collisions(order, gws)
    assert set(failed) == {"a", "b", "c"}
    assert "8642" in failed["a"] and "default" in failed["a"]
    assert "default's api_server" in failed["b"]
    # a gateway that will not run takes no port; the failed one frees nothing it never held
    assert ports.collisions([("default", False), ("a", True)], gws) == {}


# --------------------------------------------------------------------------- inventory


@pytest.mark.parametrize("var, needle", [
    ("profile_vars={a: {api_server_port: 80}}", "'profile_vars.a.api_server_port' must be a port"),
    ("profile_vars={a: {api_server_port: true}}", "must be a port"),
    ("profile_vars={Bad: {}}", "invalid profile name"),
    ("profile_vars={a: {port: 1}}", "'profile_vars.a.port' is not a profile setting"),
    ("profile_vars={default: {api_server_port: 9000}}", "default gateway's ports"),
    ("profile_vars={a: {extra_env: {LD_PRELOAD: x}}}", "may not set LD_PRELOAD"),
    ("api_port_base=1023", "'api_port_base' must be a port"),
    ("profile_scoped_env=[HERMES_]", "would remove HERMES_HOME"),
    ("profile_scoped_env=API_", "must be a list"),
])
def test_inventory_refuses_bad_port_settings(var, needle):
    with pytest.raises(InventoryError) as err:
        inventory.load(None, [var], environ={})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_profile_extra_env_merges_over_the_global_one():
    s = inventory.load(None, ["extra_env={A: 1, B: 2}", "profile_vars={a: {extra_env: {B: 3}}}"],
                       environ={})
    assert s.profile_env("a") == {"A": "1", "B": "3"} and s.profile_env("b") == {"A": "1", "B": "2"}


# --------------------------------------------------------------------------- the run script


def test_run_script_scopes_the_container_environment(tmp_path):
    """Executed: a named script drops API_SERVER_*/WEBHOOK_* (odd values included), then
    exports its merged extra_env and ports; the default keeps the container's."""
    out = tmp_path / "env.out"
    gateway = tmp_path / "gw"
    gateway.write_text(f"#!/bin/sh\nenv > {out}\n")
    gateway.chmod(0o755)
    # The run script execs the gateway through s6-notifyoncheck: a stand-in that drops its
    # options and execs the rest (the readiness poller is not what this test is about).
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "s6-notifyoncheck").write_text(
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do case $1 in -d) shift ;; -[nswtTc3]) shift 2 ;;"
        " *) break ;; esac; done\nexec \"$@\"\n")
    (bindir / "s6-notifyoncheck").chmod(0o755)
    # Likewise the ownership wrapper the chain execs from the service directory.
    svc = tmp_path / "svc"
    (svc / "data").mkdir(parents=True)
    (svc / "data" / "own").write_text('#!/bin/sh\nexec "$@"\n')
    (svc / "data" / "own").chmod(0o755)
    s = inventory.load(None, [f"hermes_home={tmp_path}", "service_user=null", f"s6_bin_dir={bindir}",
                              f"hermes_bin={gateway}", "extra_env={G: global}",
                              "profile_vars={alice: {extra_env: {WEBHOOK_SECRET: mine}}}"],
                       environ={})
    env = {"PATH": os.environ["PATH"], "API_SERVER_KEY": KEY, "API_SERVER_ENABLED": "true",
           "WEBHOOK_ENABLED": "1", "KEEP": "x\nexport API_SERVER_FAKE=1\nPATH=/nowhere",
           "API_SERVER_ODD": "'$(touch " + str(tmp_path / "pwned") + ")'"}
    r = Renderer(s)
    for name, want in (("alice", {"API_SERVER_PORT": "8650", "WEBHOOK_PORT": "8750",
                                  "WEBHOOK_SECRET": "mine", "G": "global"}),
                       ("default", {"API_SERVER_KEY": KEY, "WEBHOOK_ENABLED": "1",
                                    "G": "global"})):
        script = tmp_path / f"run-{name}"
        script.write_bytes(r.gateway(name, True, {"api_server": 8650, "webhook": 8750})
                           .files["run"].content)
        subprocess.run(["sh", str(script)], env=env, check=True, timeout=30, cwd=svc)
        got = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line
                   and line.split("=", 1)[0].isidentifier())
        for k, v in want.items():
            assert got.get(k) == v, (name, k, got)
        scoped = {k for k in got if k.startswith(("API_SERVER_", "WEBHOOK_"))}
        if name == "alice":
            assert scoped == {"API_SERVER_PORT", "WEBHOOK_PORT", "WEBHOOK_SECRET"}, scoped
        else:
            assert "API_SERVER_PORT" not in got and "API_SERVER_ODD" in got
        assert got["PATH"] == os.environ["PATH"] and "KEEP" in got
    assert not (tmp_path / "pwned").exists()


CONFIGS = [
    b"model: x\nplatforms:\n  api_server:\n    enabled: true\n    extra: {port: 9100}\nz: 1\n",
    b"\xef\xbb\xbfplatforms:\r\n  webhook:\r\n    enabled: yes\r\n    extra:\r\n      port: 9400\r\n",
    b"gateway:\n  strict: false\n  platforms:\n    api_server: {enabled: true}\n"
    b"platforms:\n  api_server:\n    extra:\n      port: 9101\n",
    b'"platforms":\n  api_server:\n    enabled: true\n# comment\nplatforms_extra: 1\n',
    b"platforms:\n  api_server:\n    enabled: false\nplatforms:\n  api_server:\n    enabled: true\n",
    b"base: &b {enabled: true, extra: {port: 9200}}\nplatforms:\n  api_server: *b\n",
    b"{platforms: {api_server: {enabled: true, extra: {port: 9300}}}}\n",
    b"---\nplatforms:\n  webhook: {enabled: true}\n",
    b"platforms:\n- api_server\n",
    b"display:\n  platforms:\n    api_server: {enabled: true}\nplatform_hints: {api_server: x}\n",
    b"platforms:\n  api_server:\n    enabled: true\n    note: |\n      text\nwebhook: 1\n",
]


@pytest.mark.parametrize("raw", CONFIGS)
def test_cutting_out_the_top_level_blocks_equals_parsing_everything(raw):
    """The fast path (only the top-level platforms/gateway blocks) reads what a full parse
    of the same file would."""
    import yaml

    def full(text: bytes):
        doc = yaml.safe_load(text)
        cut = ports.parse_config(b"", lambda m: None)  # {}: the shape for no platforms
        if not isinstance(doc, dict):
            return cut
        merged = ports.parse_config(yaml.safe_dump(
            {k: doc[k] for k in ("gateway", "platforms") if k in doc}).encode(), lambda m: None)
        return merged

    assert ports.parse_config(raw, lambda m: None) == full(raw.removeprefix(b"\xef\xbb\xbf"))


def test_an_entry_dropped_with_a_warning_is_rewritten_once(tmp_path):
    """8650.0 equals 8650 in Python but is not a port we accept: the file is rewritten
    clean, so the warning is not repeated by every run."""
    _seed(tmp_path)
    (tmp_path / ports.FILE).write_text(json.dumps({"profiles": {
        "a": {"api_server_port": 8650.0, "webhook_port": 8750}}}))
    first: list[str] = []
    lay(tmp_path, ["a"], warnings=first)
    assert any("dropped" in w for w in first), first
    assert saved(tmp_path)["a"] == {"api_server_port": 8650, "webhook_port": 8750}
    assert '8650.0' not in (tmp_path / ports.FILE).read_text()
    again: list[str] = []
    lay(tmp_path, ["a"], warnings=again)
    assert not any("dropped" in w for w in again), again


def test_a_gateway_serving_the_port_keeps_it():
    # beta's .env was edited to gamma's port while both run: beta fails, gamma keeps it
    gws = {"default": gw("default"), "beta": gw("beta", api_server=8660),
           "gamma": gw("gamma", api_server=8660)}
    order = [("default", True), ("beta", True), ("gamma", True)]
    assert set(ports.collisions(order, gws)) == {"gamma"}  # nobody serves it: name order
    failed = ports.collisions(order, gws, {"beta": {8651}, "gamma": {8660}})
    assert set(failed) == {"beta"}
    assert "8660" in failed["beta"] and "gamma's api_server serves now" in failed["beta"]
    assert "gateway-gamma keeps it" in failed["beta"]
    # a gateway listening on a port it no longer wants holds nothing
    assert set(ports.collisions(order, gws, {"gamma": {8651}})) == {"gamma"}
