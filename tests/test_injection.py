"""No injection (issue 6.4): rendered scripts, EXECUTED, pass every value through verbatim.

Hypothesis generates ``extra_env`` values (any text without control characters but tab:
the loader refuses those, tests/test_security_env.py), ``hermes_bin`` paths and
bare names made of arbitrary characters, ``hermes_home`` paths with arbitrary characters and
valid profile names. Each set goes through a YAML inventory file (the real loader and its
validation), is rendered, and the ``run`` and ``log/run`` scripts are executed through a
``with-contenv`` shim (``S6_KEEP_ENV=1``). ``hermes_bin`` is a stand-in created at that exact
path; ``s6-log`` is a stand-in too. Each dumps its argv, environment and cwd as JSON. The
gateway must receive exactly the intended argv and environment, and none of the payloads
(``$(touch MARKER)``, backticks, quotes, newlines…) may run: MARKER must never exist.
A sample of generated scripts is linted with ``sh -n`` and ``shellcheck -s sh``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import reliability_report
import s6env
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_tasks import inventory
from hermes_tasks.render import Renderer

CASES = {
    "injection.run_script.executed": "render + execute `run` for arbitrary extra_env values, "
                                     "hermes_bin paths/names, hermes_home paths, profile names",
    "injection.run_script.setuidgid": "the same through `s6-setuidgid <service_user>` as root",
    "injection.log_run.executed": "render + execute `log/run` with arbitrary hermes_home and "
                                  "names (s6-log stand-in)",
    "injection.lint": "`sh -n` and `shellcheck -s sh` on hypothesis-generated run/log/run",
    "injection.cli.reconcile": "hostile hermes_bin/extra_env through `--var` and a real "
                               "reconcile under s6: the gateway gets them verbatim",
}

SYSTEM_PYTHON = "/usr/bin/python3"
DUMPER = """#!{python} -I
import json, os, sys
with open({out!r}, "w") as fh:
    json.dump({{"argv0": sys.argv[0], "argv": sys.argv[1:], "env": dict(os.environ),
               "cwd": os.getcwd(), "uid": os.getuid(), "pid": os.getpid()}}, fh)
"""
NOTIFYONCHECK = """#!/bin/sh
[ "$1 $2 $3 $4 $5 $6 $7" = "-d -n 0 -s 100 -w 1000" ] || exit 100
shift 7
exec "$@"
"""
TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
PAYLOADS = [
    "$(touch {m})", "`touch {m}`", "'; touch {m}; '", "\"; touch {m}; \"", "\ntouch {m}\n",
    "$(touch {m})'\"`", "\\$(touch {m})", "\\\"$(touch {m})\\\"", "${{x:=$(touch {m})}}",
    "$((1+1))", "&& touch {m}", "| touch {m}", "; touch {m} #", "\\", "'", "\"", "$", "`",
    "$HOME", "${{HOME}}", "*", "~", "-p evil", "--replace", " leading and trailing ",
]


def payload(marker: str):
    return st.sampled_from([p.format(m=marker) for p in PAYLOADS])


def values(marker: str):
    free = st.text(TEXT, max_size=40)
    return st.one_of(free, payload(marker),
                     st.builds(lambda a, p, b: a + p + b, free, payload(marker), free))


# extra_env values: no control character but tab, nothing splitlines() breaks on (SPEC §3)
ENV_TEXT = st.one_of(st.just("\t"), st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")))


def env_values(marker: str):
    free = st.text(ENV_TEXT, max_size=40)
    hostile = st.sampled_from([p.format(m=marker) for p in PAYLOADS if "\n" not in p])
    return st.one_of(free, hostile, st.builds(lambda a, p, b: a + p + b, free, hostile, free))


def components():
    """One path component: anything but NUL and '/', at most 40 characters."""
    return st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
                   min_size=1, max_size=40).filter(
        lambda s: s not in (".", "..") and len(s.encode()) <= 200)


NAMES = st.one_of(st.just("default"), st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True))
ENV_KEYS = st.from_regex(r"HT_[A-Za-z0-9_]{0,12}", fullmatch=True)


class Scene:
    """A temp dir (0755, traversable by the service user) with a command dir and stand-ins."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="hermes-inject-"))
        os.chmod(self.root, 0o755)
        self.cmd = s6env.make_command_dir(self.root / "command", self.root / "envdir")
        self.out = self.root / "out"
        self.out.mkdir()
        os.chmod(self.out, 0o777)
        self.marker = str(self.root / "MARKER")
        log = self.cmd / "s6-log"
        log.unlink()
        self.write_dumper(log, self.out / "s6-log.json")
        # The run script is executed outside s6 here: s6-notifyoncheck would refuse (no
        # supervisor), so a stand-in takes exactly its options and execs the rest.
        notify = self.cmd / "s6-notifyoncheck"
        notify.unlink()
        notify.write_text(NOTIFYONCHECK)
        notify.chmod(0o755)

    @staticmethod
    def write_dumper(path: Path, out: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DUMPER.format(python=SYSTEM_PYTHON, out=str(out)))
        path.chmod(0o755)

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


def settings_via_yaml(scene: Scene, **vars_) -> inventory.Settings:
    """Go through a real YAML inventory file: the loader's parsing and validation too."""
    path = scene.root / "hosts.yml"
    base = {"scandir": str(scene.root / "scandir"), "s6_bin_dir": str(scene.cmd)}
    path.write_text(yaml.safe_dump({"all": {"vars": {**base, **vars_},
                                            "hosts": {"localhost": {}}}}))
    return inventory.load(path, environ={})


def run_script(scene: Scene, content: bytes, slot: str, env: dict, user=None,
               own: bytes | None = None) -> dict:
    slot_dir = scene.root / "slot"
    slot_dir.mkdir(exist_ok=True)
    script = slot_dir / "run"
    script.write_bytes(content)
    script.chmod(0o755)
    if own is not None:  # the ownership wrapper run execs the gateway through
        (slot_dir / "data").mkdir(exist_ok=True)
        (slot_dir / "data" / "own").write_bytes(own)
        (slot_dir / "data" / "own").chmod(0o755)
    for old in scene.out.iterdir():
        old.unlink()
    res = subprocess.run([str(script), slot], env=env, cwd=slot_dir, capture_output=True,
                         timeout=20, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    assert not os.path.lexists(scene.marker), "an injected command ran"
    dumps = list(scene.out.iterdir())
    assert len(dumps) == 1, dumps
    return json.loads(dumps[0].read_text())


def place_gateway(scene: Scene, mode: str, comp: str) -> tuple[str, str, str]:
    """Create the stand-in gateway; return (hermes_bin, the path exec'd, PATH prefix)."""
    if mode == "absolute":
        directory = scene.root / "bin dir" / comp
        path = directory / comp
        scene.write_dumper(path, scene.out / "gateway.json")
        return str(path), str(path), ""
    bindir = scene.root / "path-bin"
    if bindir.exists():
        shutil.rmtree(bindir)
    scene.write_dumper(bindir / comp, scene.out / "gateway.json")
    return comp, str(bindir / comp), f"{bindir}:"


def expected_argv(name: str) -> list[str]:
    return ["gateway", "run", "--replace"] if name == "default" else \
        ["-p", name, "gateway", "run", "--replace"]


TRIES: dict[str, int] = {}


def check_gateway(scene: Scene, extra_env: dict, name: str, home_comp: str, bin_mode: str,
                  bin_comp: str, home_from_env: bool, user: str | None = None) -> None:
    hermes_bin, exec_path, path_prefix = place_gateway(scene, bin_mode, bin_comp)
    home = scene.root / "homes" / home_comp
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o777)
    os.chmod(home.parent, 0o755)
    cfg = settings_via_yaml(scene, hermes_bin=hermes_bin, extra_env=extra_env,
                            hermes_home=str(home), service_user=user)
    assert dict(cfg.extra_env) == extra_env and cfg.hermes_bin == hermes_bin
    # The registrar re-reads the settings as root from its own YAML copy: same values.
    copy = scene.root / "registrar-inventory.yml"
    copy.write_bytes(Renderer(cfg).registrar(SYSTEM_PYTHON).files["data/inventory.yml"].content)
    again = inventory.load(copy, environ={})
    assert (dict(again.extra_env), again.hermes_bin, again.hermes_home) == \
        (extra_env, hermes_bin, str(home))
    spec = Renderer(cfg).gateway(name, True)
    env = {"PATH": f"{path_prefix}{scene.cmd}:/usr/bin:/bin", "S6_KEEP_ENV": "1",
           "LC_ALL": "C.UTF-8"}
    if home_from_env:
        env["HERMES_HOME"] = str(home)
    if name != "default":  # data/own locks the profile's directory, which exists
        (home / "profiles" / name).mkdir(parents=True, exist_ok=True)
        for d in (home / "profiles", home / "profiles" / name):
            os.chmod(d, 0o777)
    got = run_script(scene, spec.files["run"].content, spec.name, env,
                     own=spec.files["data/own"].content)
    assert got["argv"] == expected_argv(name)
    assert got["argv0"] == exec_path
    assert got["cwd"] == str(home)
    want = {**{k: v for k, v in env.items() if k != "HERMES_HOME"}, **extra_env,
            "HERMES_HOME": str(home), "HOME": str(home), "HERMES_S6_SUPERVISED_CHILD": "1",
            "HERMES_SUPERVISED_CHILD": "1",
            # the pid the run script execs the gateway under, for data/check
            "HERMES_TASKS_SUPERVISED_PID": got["env"].get("HERMES_TASKS_SUPERVISED_PID", "?")}
    assert got["env"]["HERMES_TASKS_SUPERVISED_PID"] == str(got["pid"])  # one exec chain
    shell_noise = {"PWD", "OLDPWD", "SHLVL", "_"}
    assert {k: v for k, v in got["env"].items() if k not in shell_noise} == want
    if user is not None:
        assert got["uid"] == s6env.ensure_service_user().uid


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def prop_run_script(data):
    scene = Scene()
    try:
        extra_env = data.draw(st.dictionaries(ENV_KEYS, env_values(scene.marker), max_size=5))
        check_gateway(scene, extra_env, data.draw(NAMES), data.draw(components()),
                      data.draw(st.sampled_from(["absolute", "bare"])),
                      data.draw(components().filter(lambda s: not s.startswith("-"))),
                      data.draw(st.booleans()))
    finally:
        scene.cleanup()
    TRIES["run"] = TRIES.get("run", 0) + 1


def test_run_script_passes_values_verbatim():
    prop_run_script()
    reliability_report.record(
        "injection.run_script.executed", TRIES.get("run", 0),
        "the gateway got exactly the intended argv, environment and cwd; MARKER never created",
        max_examples=120)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def prop_setuidgid(data):
    user = s6env.ensure_service_user()
    scene = Scene()
    try:
        extra_env = data.draw(st.dictionaries(ENV_KEYS, env_values(scene.marker), max_size=3))
        check_gateway(scene, extra_env, data.draw(NAMES), data.draw(components()),
                      data.draw(st.sampled_from(["absolute", "bare"])),
                      data.draw(components().filter(lambda s: not s.startswith("-"))),
                      True, user=user.name)
    finally:
        scene.cleanup()
    TRIES["setuidgid"] = TRIES.get("setuidgid", 0) + 1


def test_run_script_through_setuidgid():
    assert os.geteuid() == 0, "the s6-setuidgid path is only taken as root"
    prop_setuidgid()
    reliability_report.record(
        "injection.run_script.setuidgid", TRIES.get("setuidgid", 0),
        "through s6-setuidgid the gateway ran as the service user with the intended argv/env; "
        "MARKER never created", max_examples=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES, home_comp=components(), home_from_env=st.booleans(),
       archives=st.integers(0, 1000), max_bytes=st.integers(1, 10**9))
def prop_log_run(name, home_comp, home_from_env, archives, max_bytes):
    scene = Scene()
    try:
        home = scene.root / "homes" / home_comp
        home.mkdir(parents=True)
        cfg = settings_via_yaml(scene, hermes_home=str(home), service_user=None,
                                gateway_log_archives=archives, gateway_log_max_bytes=max_bytes)
        spec = Renderer(cfg).gateway(name, True)
        env = {"PATH": f"{scene.cmd}:/usr/bin:/bin", "S6_KEEP_ENV": "1", "LC_ALL": "C.UTF-8"}
        if home_from_env:
            env["HERMES_HOME"] = str(home)
        got = run_script(scene, spec.files["log/run"].content, f"{spec.name}/log", env)
        logdir = f"{home}/logs/gateways/{name}"
        assert got["argv"] == ["1", f"n{archives}", f"s{max_bytes}", "T", logdir]
        assert os.path.isdir(logdir)
        assert sorted(os.listdir(home)) == ["logs"]  # nothing else was created
    finally:
        scene.cleanup()
    TRIES["log"] = TRIES.get("log", 0) + 1


def test_log_run_passes_values_verbatim():
    prop_log_run()
    reliability_report.record(
        "injection.log_run.executed", TRIES.get("log", 0),
        "s6-log got exactly `1 nN sM T <HERMES_HOME>/logs/gateways/<name>`, the directory was "
        "made and nothing else", max_examples=60)


LINTED: list[int] = []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def prop_lint(data):
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck must be installed"
    scene = Scene()
    try:
        extra_env = data.draw(st.dictionaries(ENV_KEYS, env_values(scene.marker), max_size=4))
        cfg = settings_via_yaml(
            scene, hermes_bin=data.draw(st.one_of(
                components().filter(lambda s: not s.startswith("-")),
                components().map(lambda c: f"/opt/{c}/hermes"))),
            extra_env=extra_env, hermes_home="/" + data.draw(components()),
            service_user=data.draw(st.sampled_from([None, "hermes"])))
        spec = Renderer(cfg).gateway(data.draw(NAMES), data.draw(st.booleans()))
        for rel in ("run", "log/run", "finish"):
            path = scene.root / rel.replace("/", "-")
            path.write_bytes(spec.files[rel].content)
            subprocess.run(["sh", "-n", str(path)], check=True)
            lint = subprocess.run([shellcheck, "-s", "sh", "-f", "gcc", str(path)],
                                  capture_output=True, text=True)
            assert lint.returncode == 0, lint.stdout + lint.stderr
            LINTED.append(1)
    finally:
        scene.cleanup()


def test_generated_scripts_lint_clean():
    prop_lint()
    reliability_report.record(
        "injection.lint", len(LINTED),
        "every generated script passed `sh -n` and `shellcheck -s sh` with no finding",
        max_examples=25)


HOSTILE_BIN = "gate way $(touch MARK)`touch MARK`'\"\\"
HOSTILE_ENV = {"HT_Q": "it's \"$(touch MARK)\" `touch MARK`\tline2 $HOME ${X:-y} \\",
               "HT_EMPTY": "", "HT_NUM": 5, "HT_BOOL": True, "HT_TAB": "\t\t", "HT_UNI": "é ✓ 🙂"}


def test_hostile_values_through_the_cli_reach_the_gateway(sandbox, supervisor):
    """End to end: --var values -> inventory -> reconcile -> s6 -> the gateway's argv/env."""
    sb = sandbox
    bindir = sb.root / "gw $(touch MARK) dir"
    bindir.mkdir()
    gateway = bindir / HOSTILE_BIN.replace("/", "_")
    gateway.symlink_to(s6env.FAKE_GATEWAY)
    (sb.home / "profiles" / "alice").mkdir(parents=True)
    (sb.home / "profiles" / "alice" / "SOUL.md").write_text("x")
    (sb.home / "profiles" / "alice" / "gateway_state.json").write_text(
        '{"desired_state": "running"}')
    env_yaml = yaml.safe_dump(HOSTILE_ENV, default_flow_style=True, width=10**6).strip()
    res = s6env.run_tasks(sb, "reconcile", "--var", f"hermes_bin={gateway}",
                          "--var", f"extra_env={env_yaml}")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    supervisor.rescan()
    import standin

    starts = s6env.wait_for(lambda: standin.starts(sb.home, "alice"), 5, what="alice")
    got = starts[0]
    assert got["argv"] == ["-p", "alice", "gateway", "run", "--replace"]
    want = {k: (str(v) if not isinstance(v, bool) else str(v).lower())
            for k, v in HOSTILE_ENV.items()}
    assert {k: v for k, v in got["env"].items() if k.startswith("HT_")} == want
    assert not list(sb.root.rglob("MARK")), "an injected command ran"
    assert stat.S_IMODE(os.stat(sb.slot("alice") / "run").st_mode) == 0o750  # holds extra_env
    reliability_report.record(
        "injection.cli.reconcile", 1,
        "the supervised gateway received the hostile values verbatim; nothing injected ran")
