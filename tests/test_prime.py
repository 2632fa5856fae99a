"""The image's build primes the render cache (``python -m hermes_tasks.prime``): a new
container's first boot then imports no Jinja and publishes the same bytes as an unprimed one."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import reliability_kit as kit
import s6env
import yaml
from test_rendercache import PROBE  # the console script in-process; says if Jinja came in

from hermes_tasks import rendercache
from hermes_tasks.render import Renderer, _yaml_plain


def write_inventory(sb, cache_dir, **extra) -> dict[str, str]:
    """The image's way: settings in an inventory file named by the environment."""
    args = s6env.inventory_args(sb)
    settings = dict(a.split("=", 1) for a in args[1::2])
    settings = {k: yaml.safe_load(v) for k, v in settings.items()}  # as --var parses them
    settings.update(render_cache_dir=str(cache_dir), **extra)
    path = sb.root / "inventory.yml"
    path.write_text(json.dumps({"all": {"vars": settings}}) + "\n")
    return {"HERMES_TASKS_INVENTORY": str(path)}


def prime(sb, env) -> None:
    res = s6env.run_tasks(sb, None, argv=["python", "-m", "hermes_tasks.prime"], env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("primed "), res.stdout


def boot(sb, env) -> tuple[bool, dict[str, bytes]]:
    """A new container's boot: an empty scandir. (Jinja imported?, every slot file.)"""
    for entry in sb.scandir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    res = s6env.run_tasks(sb, None, argv=["python", "-c", PROBE, "reconcile", "--json"], env=env)
    last = res.stderr.strip().splitlines()[-1].split()
    assert last[0] == "jinja2-imported" and last[3] == "0", res.stderr
    files = {}
    for top, dirs, names in os.walk(sb.scandir):
        dirs[:] = [d for d in dirs if d not in ("supervise", "event")]
        for n in names:
            path = os.path.join(top, n)
            if not n.startswith(".") and os.path.isfile(path):
                files[os.path.relpath(path, sb.scandir)] = open(path, "rb").read()
    return last[1] == "True", files


@pytest.fixture
def home(sandbox):
    s6env.make_profile(sandbox.home, "default", {"desired_state": "stopped"})
    (sandbox.home / ".env").write_text("API_SERVER_ENABLED=true\nAPI_SERVER_PORT=8642\n")
    s6env.make_profile(sandbox.home, "alice", {"desired_state": "stopped"})
    (sandbox.home / "profiles" / "alice" / ".env").write_text("API_SERVER_PORT=8660\n")
    s6env.make_profile(sandbox.home, "bob", {"desired_state": "stopped"})
    return sandbox


def fresh_dir(sb, name, like=None):
    path = sb.root / name
    shutil.rmtree(path, ignore_errors=True)
    if like is None:
        path.mkdir(mode=0o700)
    else:
        shutil.copytree(like, path)
    return path


@pytest.mark.parametrize("hosts", [(), ("build-host", "3f2a1b4c5d6e")])
def test_a_primed_boot_imports_no_jinja_and_writes_the_same_slots(home, hosts):
    """``hosts``: the host id at the build and at the boot (a new container's hostname)."""
    sb = home
    cache = fresh_dir(sb, "cache")  # the image's render_cache_dir (its path is a setting)
    at = (lambda i: {"host_id": hosts[i]}) if hosts else (lambda i: {})
    prime(sb, write_inventory(sb, cache, **at(0)))
    env = write_inventory(sb, cache, **at(1))
    st = os.stat(cache / rendercache.NAME)
    assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o600
    primed = fresh_dir(sb, "primed", like=cache)
    cache = fresh_dir(sb, "cache", like=primed)  # what a new container of the image holds
    imported, warm = boot(sb, env)
    assert not imported
    assert {"gateway-default/run", "gateway-alice/run", "gateway-bob/run",
            "hermes-tasks-registrar/data/inventory.yml"} <= set(warm)
    # Nothing new to keep: the primed file is left as built.
    assert (cache / rendercache.NAME).read_bytes() == (primed / rendercache.NAME).read_bytes()

    empty = fresh_dir(sb, "cache")  # no render cache at all
    imported, cold = boot(sb, write_inventory(sb, empty, **at(1)))
    assert imported and cold == warm
    if hosts:
        assert hosts[1].encode() in warm["gateway-default/data/own"]
        assert hosts[0].encode() not in b"".join(warm.values())


def test_changed_settings_miss_and_render_in_full(home):
    sb = home
    cache = fresh_dir(sb, "cache")
    prime(sb, write_inventory(sb, cache))
    changed = {"extra_env": {"MARKER": "one"}}
    imported, warm = boot(sb, write_inventory(sb, cache, **changed))
    assert imported and b"MARKER" in warm["gateway-alice/run"]
    empty = fresh_dir(sb, "cache")
    imported, cold = boot(sb, write_inventory(sb, empty, **changed))
    assert imported and cold == warm


def test_prime_never_creates_nor_trusts_a_foreign_directory(sandbox):
    sb = sandbox
    missing = sb.root / "missing"
    env = write_inventory(sb, missing)
    res = s6env.run_tasks(sb, None, argv=["python", "-m", "hermes_tasks.prime"], env=env)
    assert res.returncode == 1 and "nothing primed" in res.stderr
    assert "Traceback" not in res.stderr and not missing.exists()
    shared = fresh_dir(sb, "shared")
    os.chmod(shared, 0o770)
    res = s6env.run_tasks(sb, None, argv=["python", "-m", "hermes_tasks.prime"],
                          env=write_inventory(sb, shared))
    assert res.returncode == 1 and os.listdir(shared) == []


@pytest.mark.parametrize("host", ["host-1", "3f2a1b4c5d6e", "123456789012", "0b1010", "yes",
                                  "a.b", "if", "x_y"])
def test_the_host_id_is_substituted_only_verbatim(sandbox, host):
    """Every slot's files and the registrar's settings equal a render with the host's id
    in the context, whatever the id (substituted or rendered in)."""
    settings = kit.settings_for(sandbox)
    import dataclasses

    settings = dataclasses.replace(settings, host_id=host, service_user="hermes",
                                   service_uid=10000, service_gid=10000)
    r = Renderer(settings)
    ports = {"api_server": 8650, "webhook": 8750}
    for name, kw in (("default", {}), ("alice", {"ports": ports}),
                     ("bob", {"ports": ports, "uid": 20001})):
        spec = r.gateway(name, True, **kw)
        drop, tree = r._isolation(name, kw.get("uid"))
        full = r._render_scripts(name, *(ports.values() if kw else (None, None)), drop, tree)
        got = dict(spec.files)
        assert [got[rel].content for rel in ("run", "log/run", "data/check", "data/own")] == \
            [t.encode() for t in full]
        assert host.encode() in got["data/own"].content
    doc = {"all": {"vars": settings.as_vars(), "hosts": {"localhost": {}}}}
    reg = r.registrar().files["data/inventory.yml"].content.decode()
    assert reg.split("\n", 1)[1] == yaml.safe_dump(doc, sort_keys=True, width=float("inf"))


def test_yaml_plain_words_dump_as_themselves():
    for word in ["host-1", "3f2a1b4c5d6e", "abc", "e5", "1e5", "ab-12", "Off1"]:
        assert _yaml_plain(word)
        assert yaml.safe_dump({"h": word}) == f"h: {word}\n"
    for word in ["123456789012", "0b1010", "0x1f", "yes", "Off", "null", "a.b", "x_y", "12-34"]:
        assert not _yaml_plain(word)


def test_a_changed_template_misses_and_renders_in_full(sandbox, tmp_path, monkeypatch):
    """A primed cache of other templates is never used for these: the source is in the key."""
    from hermes_tasks import prime as prime_mod
    from hermes_tasks import render

    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o700)
    import dataclasses

    settings = dataclasses.replace(kit.settings_for(sandbox), render_cache_dir=str(cache_dir))
    assert prime_mod.prime(settings) == str(cache_dir / rendercache.NAME)
    ports = {"api_server": 8650, "webhook": 8750}
    before = {n: dict(Renderer(settings, rendercache.RenderCache.load(str(cache_dir)))
                      .gateway(n, True, ports).files) for n in ("default", "alice")}

    changed = tmp_path / "templates"
    shutil.copytree(render.templates_dir(), changed)
    own = changed / "gateway" / "own.j2"
    own.write_text(own.read_text() + "# changed\n")
    monkeypatch.setattr(render, "templates_dir", lambda: str(changed))
    render.source.cache_clear()
    render.environment.cache_clear()
    try:
        for n in ("default", "alice"):
            spec = Renderer(settings, rendercache.RenderCache.load(str(cache_dir))).gateway(
                n, True, ports)
            files = dict(spec.files)
            assert files["data/own"].content == before[n]["data/own"].content + b"# changed\n"
            assert files["run"] == before[n]["run"]
    finally:
        render.source.cache_clear()
        render.environment.cache_clear()
