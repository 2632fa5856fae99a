"""Rendered slot scripts: snapshots, sh -n, shellcheck, and executing finish (SPEC §5).

Regenerate snapshots after an intended template change with
``UPDATE_SNAPSHOTS=1 pytest tests/test_templates.py`` and review the diff.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hermes_tasks import inventory
from hermes_tasks.render import Renderer

SNAPSHOTS = Path(__file__).parent / "snapshots"
SCRIPTS = ("run", "finish", "log/run", "data/check", "data/own")
PORTS = {"api_server": 8650, "webhook": 8750}


def shellcheck() -> str:
    path = shutil.which("shellcheck")
    assert path, "shellcheck must be installed (.ci/run installs it)"
    return path


def container_renderer():
    # host_id defaults to the hostname: pinned, so snapshots do not depend on the machine.
    return Renderer(inventory.load(None, ["host_id=host-1"], environ={}),
                    python="/opt/hermes-tasks/venv/bin/python")  # the image's venv


@pytest.mark.parametrize("profile", ["default", "alice"])
@pytest.mark.parametrize("rel", SCRIPTS)
def test_snapshot(profile, rel):
    spec = container_renderer().gateway(profile, autostart=True, ports=PORTS)
    text = spec.files[rel].content.decode()
    snap = SNAPSHOTS / profile / rel.replace("/", "-")
    if os.environ.get("UPDATE_SNAPSHOTS"):
        snap.parent.mkdir(parents=True, exist_ok=True)
        snap.write_text(text)
    assert snap.exists(), f"missing snapshot {snap}; run with UPDATE_SNAPSHOTS=1"
    assert text == snap.read_text()
    # run holds extra_env (maybe secrets): not readable by others (SPEC §8)
    assert spec.files[rel].mode == (0o750 if rel == "run" else 0o755)


def test_default_never_gets_dash_p_and_named_does():
    r = container_renderer()
    default_run = r.gateway("default", True).files["run"].content.decode()
    alice_run = r.gateway("alice", True).files["run"].content.decode()
    assert "-p" not in default_run.replace("mkdir -p", "")
    assert '"$service_dir/data/own" hermes gateway run --replace' in default_run
    assert '"$service_dir/data/own" hermes -p alice gateway run --replace' in alice_run
    assert 's6-setuidgid hermes "$service_dir/data/own" hermes -p alice gateway run --replace' \
        in alice_run


def test_scripts_start_as_specified():
    spec = container_renderer().gateway("alice", autostart=False)
    run = spec.files["run"].content.decode().splitlines()
    assert run[:2] == ["#!/command/with-contenv sh", "# shellcheck shell=sh"]
    assert "exec 2>&1" in run
    log_run = spec.files["log/run"].content.decode()
    assert '"$HERMES_HOME/logs/gateways/"alice' in log_run and "/opt/data/logs" not in log_run
    assert '/command/s6-log 1 n10 s1000000 T "$log_dir"' in log_run
    assert spec.down is True


HOSTILE = {
    "hermes_bin": "/opt/my bin/$(touch /tmp/pwned)`id`'\"\nhermes",
    "extra_env": {"Q": "it's \"$(rm -rf /)\" `x`\t$HOME ${X:-y} \\", "EMPTY": "", "N": 5},
    "hermes_home": "/data/with space/'quote'",
    "profile_vars": {"alice": {"extra_env": {"Q": "$(id)\t'", "OWN": "`x`"}}},
    "profile_scoped_env": ["API_SERVER_", "WEBHOOK_", "X"],
}


def hostile_renderer(service_user="hermes"):
    import yaml

    vars_ = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" if not isinstance(v, str)
             else f"{k}={v}" for k, v in HOSTILE.items()]
    vars_.append(f"service_user={'null' if service_user is None else service_user}")
    return Renderer(inventory.load(None, vars_, environ={}))


def shared_renderer():
    """A host on a volume other hosts share (SPEC §12): per-host logs, owner-aware check."""
    return Renderer(inventory.load(None, ["host_id=host-1", "shared_volume=true"], environ={}))


@pytest.mark.parametrize("renderer", [container_renderer, hostile_renderer,
                                      lambda: hostile_renderer(None), shared_renderer])
@pytest.mark.parametrize("profile", ["default", "alice"])
def test_every_script_passes_sh_n_and_shellcheck(tmp_path, renderer, profile):
    spec = renderer().gateway(profile, autostart=True, ports=PORTS)
    for rel in SCRIPTS:
        path = tmp_path / rel.replace("/", "-")
        path.write_bytes(spec.files[rel].content)
        data = path.read_bytes()
        assert not data.startswith(b"\xef\xbb\xbf") and b"\r\n" not in data and data.endswith(b"\n")
        subprocess.run(["sh", "-n", str(path)], check=True)
        lint = subprocess.run([shellcheck(), "-s", "sh", "-f", "gcc", str(path)],
                              capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_registrar_run_lints(tmp_path):
    spec = container_renderer().registrar("/opt/venv/bin/python")
    path = tmp_path / "run"
    path.write_bytes(spec.files["run"].content)
    subprocess.run(["sh", "-n", str(path)], check=True)
    lint = subprocess.run([shellcheck(), "-s", "sh", str(path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    assert spec.files["notification-fd"].content == b"3\n"


@pytest.mark.parametrize("code, expected", [("0", 125), ("78", 125), ("1", 0), ("256", 0),
                                             ("3", 0), ("", 0)])
def test_finish_policy_executed(tmp_path, code, expected):
    path = tmp_path / "finish"
    path.write_bytes(container_renderer().gateway("alice", True).files["finish"].content)
    args = [code, "15" if code == "256" else "0", "gateway-alice"] if code else []
    assert subprocess.run(["sh", str(path), *args]).returncode == expected


def test_templates_use_no_undeclared_variables():
    import jinja2.meta

    from hermes_tasks.render import environment, templates_dir

    env = environment()
    known = set(inventory.KNOWN) | {"name", "slot", "is_default", "python", "env", "scoped_env",
                                    "api_server_port", "webhook_port", "profile_uid",
                                    "tree_owner"}
    for path in Path(templates_dir()).rglob("*.j2"):
        source = path.read_text()
        undeclared = jinja2.meta.find_undeclared_variables(env.parse(source))
        assert undeclared <= known, (path, undeclared - known)


@pytest.mark.parametrize("renderer", [container_renderer, hostile_renderer])
def test_substituted_names_equal_a_full_render(renderer):
    r = renderer()
    for name in ("a", "alice", "x-y_z", "0" * 64, "zq9sentinel9qz", "done", "fi", "in", "esac"):
        fast = r.gateway(name, True, {"api_server": 1024, "webhook": 65535})
        run, log_run, check, own = r._render_scripts(name, 1024, 65535)
        assert fast.files["run"].content == run.encode()
        assert fast.files["log/run"].content == log_run.encode()
        assert fast.files["data/check"].content == check.encode()
        assert fast.files["data/own"].content == own.encode()


def isolated_renderer(on=True, hostile=False):
    vars_ = ["host_id=host-1", f"profile_isolation={'true' if on else 'false'}"]
    if hostile:
        vars_ += ["hermes_home=/data/with space/'quote'", "shared_volume=true"]
    return Renderer(inventory.load(None, vars_, environ={}), python="/opt/venv/bin/python")


@pytest.mark.parametrize("on", [True, False])
@pytest.mark.parametrize("hostile", [False, True])
def test_isolated_scripts_lint_and_drop_to_the_profile_uid(tmp_path, on, hostile):
    """SPEC §16: on, run/check/log drop to the profile's uid (no group but its own) and
    convert its trees first; off with a uid once given, they give them back."""
    spec = isolated_renderer(on, hostile).gateway("alice", autostart=True, ports=PORTS,
                                                  uid=20001)
    for rel in SCRIPTS:
        path = tmp_path / rel.replace("/", "-")
        path.write_bytes(spec.files[rel].content)
        subprocess.run(["sh", "-n", str(path)], check=True)
        lint = subprocess.run([shellcheck(), "-s", "sh", "-f", "gcc", str(path)],
                              capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    run = spec.files["run"].content.decode()
    log_run = spec.files["log/run"].content.decode()
    check = spec.files["data/check"].content.decode()
    drop = '/command/s6-applyuidgid -u 20001 -g 20001 -G ""'
    if on:
        assert spec.files["run"].mode == 0o700
        assert f'{drop} "$service_dir/data/own" hermes -p alice gateway run --replace' in run
        assert "s6-setuidgid hermes" not in run and f"{drop} /bin/sh ./data/check" in check
        assert f"{drop} /command/s6-log" in log_run
        assert "treeowner 20001 20001 700" in run and "HERMES_KANBAN_HOME" in run
        assert "profiles alice --from 10000 --mark || { [ $? -eq 78 ] && exit 78; exit 111; }" in run
        assert "treeowner 20001 20001 700" in log_run and "--create" in log_run
        # only the service user's entries become the profile's (another uid's are left)
        assert "kill-uid" not in run
        assert "gateways alice --from 10000 --create" in log_run
    else:
        assert spec.files["run"].mode == 0o750 and "s6-applyuidgid" not in run + check + log_run
        assert "treeowner 10000 10000 755" in run and "treeowner 10000 10000 755" in log_run
        assert "profiles alice --from 20001 --kill-uid 20001 --mark || {" in run
        assert "kill-uid" not in log_run and "gateways alice --from 20001 --create" in log_run
    # without a uid nothing isolated is rendered, whatever the setting (the default profile)
    plain = isolated_renderer(on, hostile).gateway("default", autostart=True)
    assert b"treeowner" not in plain.files["run"].content + plain.files["log/run"].content


def test_without_a_uid_nothing_isolated_is_rendered():
    """The snapshots above are isolation off; a profile with no uid renders the same even
    with isolation on (the setting alone changes no script)."""
    on = Renderer(inventory.load(None, ["host_id=host-1", "profile_isolation=true"],
                                 environ={}), python="/opt/hermes-tasks/venv/bin/python")
    a = on.gateway("alice", autostart=True, ports=PORTS, uid=None)
    b = container_renderer().gateway("alice", autostart=True, ports=PORTS)
    assert a.files == b.files
