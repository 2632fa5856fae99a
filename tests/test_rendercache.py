"""The render cache (``<scandir>/.hermes-tasks.cache``): used when trusted, never when not."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import s6env

from hermes_tasks import inventory, rendercache
from hermes_tasks.render import Renderer

# Runs the console script's main in-process and reports whether Jinja was imported.
PROBE = """
import sys
from hermes_tasks import cli
code = 0
try:
    cli.main(fast_exit=False)
except SystemExit as exc:
    code = exc.code
print("jinja2-imported", "jinja2" in sys.modules, "exit", code, file=sys.stderr)
"""


def probe(sb) -> tuple[bool, int]:
    res = s6env.run_tasks(sb, None, argv=["python", "-c", PROBE, "reconcile", "--json",
                                          *s6env.inventory_args(sb)])
    last = res.stderr.strip().splitlines()[-1].split()
    assert last[0] == "jinja2-imported", res.stderr
    return last[1] == "True", int(last[3])


def cache_path(sb):
    return sb.scandir / rendercache.NAME


def slot_texts(sb) -> dict[str, str]:
    return {f"{n}/{rel}": (sb.scandir / n / rel).read_text()
            for n in sorted(os.listdir(sb.scandir)) if not n.startswith(".")
            for rel in ("run", "finish", "log/run", "data/inventory.yml")
            if (sb.scandir / n / rel).is_file()}


def poison(sb) -> None:
    """Rewrite every cached render as a script that would run as root."""
    doc = json.loads(cache_path(sb).read_text())
    doc["renders"] = {k: "#!/bin/sh\necho POISON\n" for k in doc["renders"]}
    cache_path(sb).write_text(json.dumps(doc))


def test_rerun_uses_the_cache_and_renders_the_same_bytes(sandbox):
    sb = sandbox
    for name in ("alice", "bob"):
        s6env.make_profile(sb.home, name, {"desired_state": "stopped"})
    imported, code = probe(sb)
    assert (imported, code) == (True, 0)  # nothing cached yet: Jinja renders
    st = os.stat(cache_path(sb))
    assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o600
    first = slot_texts(sb)

    imported, code = probe(sb)
    assert (imported, code) == (False, 0)  # unchanged: every render came from the cache
    assert slot_texts(sb) == first
    assert os.stat(cache_path(sb)).st_mtime_ns == st.st_mtime_ns  # nothing new to keep

    # Without the cache the same settings render the same bytes (a fresh scandir).
    cache_path(sb).unlink()
    for n in os.listdir(sb.scandir):
        if n.startswith("gateway-"):
            (sb.scandir / n / "run").write_text("#!/bin/sh\nstale\n")
    assert probe(sb) == (True, 0)
    assert slot_texts(sb) == first


def test_changed_settings_render_again_and_the_cache_keeps_only_this_run(sandbox):
    sb = sandbox
    s6env.make_profile(sb.home, "alice", {"desired_state": "stopped"})
    assert s6env.run_tasks(sb, "reconcile").returncode == 0
    before = json.loads(cache_path(sb).read_text())["renders"]
    res = s6env.run_tasks(sb, "reconcile", "--json", "--var", "extra_env={MARKER: one}")
    assert res.returncode == 0, res.stderr
    assert "MARKER" in (sb.slot("alice") / "run").read_text()
    after = json.loads(cache_path(sb).read_text())["renders"]
    assert len(after) == len(before) and set(after) != set(before)


def test_check_mode_writes_no_cache(sandbox):
    s6env.make_profile(sandbox.home, "alice")
    res = s6env.run_tasks(sandbox, "reconcile", "--check")
    assert res.returncode == 0, res.stderr
    assert not cache_path(sandbox).exists()


@pytest.mark.parametrize("how", ["foreign owner", "group-writable", "symlink", "not JSON"])
def test_untrusted_cache_is_ignored_and_replaced(root_sandbox, how):
    sb = root_sandbox
    s6env.make_profile(sb.home, "alice", {"desired_state": "stopped"})
    s6env.own(sb, sb.home)
    assert s6env.run_tasks(sb, "reconcile").returncode == 0
    good = slot_texts(sb)
    poison(sb)
    path = cache_path(sb)
    if how == "foreign owner":  # what the volume's user (or an agent) could plant
        os.chown(path, sb.user.uid, sb.user.gid)
    elif how == "group-writable":
        os.chmod(path, 0o620)
    elif how == "symlink":
        target = sb.root / "planted-cache"
        path.rename(target)
        path.symlink_to(target)
    else:
        path.write_text("{not json")
    for rel in ("run", "log/run"):
        (sb.slot("alice") / rel).write_text("#!/bin/sh\nstale\n")

    imported, code = probe(sb)
    assert (imported, code) == (True, 0)
    assert slot_texts(sb) == good
    assert "POISON" not in "".join(slot_texts(sb).values())
    st = os.lstat(path)
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o600 and not os.path.islink(path)


def test_trusted_cache_is_what_gets_rendered(sandbox):
    """The cache really is consulted: an entry it holds (ours, 0600) is used verbatim."""
    sb = sandbox
    s6env.make_profile(sb.home, "alice", {"desired_state": "stopped"})
    assert s6env.run_tasks(sb, "reconcile").returncode == 0
    poison(sb)
    os.chmod(cache_path(sb), 0o600)
    (sb.slot("alice") / "run").write_text("#!/bin/sh\nstale\n")
    assert probe(sb) == (False, 0)
    assert (sb.slot("alice") / "run").read_text() == "#!/bin/sh\necho POISON\n"


def test_template_source_and_code_are_part_of_the_key(tmp_path):
    cache = rendercache.RenderCache(str(tmp_path), rendercache.code_stamp())
    calls = []

    def produce(text):
        return lambda: calls.append(text) or text

    assert cache.text("t.j2", "source one", {"a": 1}, produce("one")) == "one"
    cache.save()
    again = rendercache.RenderCache.load(str(tmp_path))
    assert again.text("t.j2", "source one", {"a": 1}, produce("unused")) == "one"
    assert again.text("t.j2", "source two", {"a": 1}, produce("two")) == "two"
    assert again.text("t.j2", "source one", {"a": 2}, produce("three")) == "three"
    assert calls == ["one", "two", "three"]

    doc = json.loads((tmp_path / rendercache.NAME).read_text())
    doc["stamp"][0] += 1  # another version of the rendering code
    (tmp_path / rendercache.NAME).write_text(json.dumps(doc))
    os.chmod(tmp_path / rendercache.NAME, 0o600)
    stale = rendercache.RenderCache.load(str(tmp_path))
    assert stale.text("t.j2", "source one", {"a": 1}, produce("four")) == "four"


def test_cached_and_fresh_renders_are_identical(tmp_path):
    cfg = inventory.load(None, [f"scandir={tmp_path}"], environ={})
    cache = rendercache.RenderCache(str(tmp_path), rendercache.code_stamp())
    first = Renderer(cfg, cache)
    specs = [first.gateway("default", True), first.gateway("alice", False), first.registrar()]
    cache.save()
    loaded = rendercache.RenderCache.load(str(tmp_path))
    second = Renderer(cfg, loaded)
    again = [second.gateway("default", True), second.gateway("alice", False), second.registrar()]
    assert again == specs
    assert loaded._loaded and loaded._used == loaded._loaded  # every render was a hit


def test_an_interrupted_cache_write_is_cleaned_up(sandbox):
    sb = sandbox
    s6env.make_profile(sb.home, "alice", {"desired_state": "stopped"})
    assert s6env.run_tasks(sb, "reconcile").returncode == 0
    litter = sb.scandir / f".{rendercache.NAME}.hermes-tasks.tmp"
    litter.write_text("{half")
    res = s6env.run_tasks(sb, "reconcile")  # unchanged: the cache itself is not rewritten
    assert res.returncode == 0, res.stderr
    assert not litter.exists() and cache_path(sb).exists()


def test_a_one_profile_run_keeps_the_full_cache(sandbox):
    sb = sandbox
    s6env.make_profile(sb.home, "alice", {"desired_state": "stopped"})
    assert s6env.run_tasks(sb, "reconcile").returncode == 0
    before = cache_path(sb).read_bytes()
    res = s6env.run_tasks(sb, "profile.create", "carol")  # reconciles only carol's slot
    assert res.returncode == 0, res.stderr
    assert (sb.slot("carol") / "run").is_file()
    assert cache_path(sb).read_bytes() == before
    assert probe(sb) == (False, 0)  # the next full run still needs no Jinja


# --------------------------------------------------------------------------- render_cache_dir


def probe_with(sb, cache_dir) -> tuple[bool, int]:
    res = s6env.run_tasks(sb, None, argv=["python", "-c", PROBE, "reconcile", "--json",
                                          *s6env.inventory_args(sb),
                                          "--var", f"render_cache_dir={cache_dir}"])
    last = res.stderr.strip().splitlines()[-1].split()
    assert last[0] == "jinja2-imported", res.stderr
    return last[1] == "True", int(last[3])


def wipe_scandir(sb) -> None:
    """What a container restart does to /run/service (a tmpfs)."""
    for entry in sb.scandir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def test_a_render_cache_dir_outlives_the_scandir(sandbox):
    """The image's /var/cache/hermes-tasks: a restarted container's boot never imports Jinja."""
    sb = sandbox
    s6env.make_profile(sb.home, "alice", {"desired_state": "stopped"})
    keep = sb.root / "cache"
    keep.mkdir(mode=0o700)
    assert probe_with(sb, keep) == (True, 0)
    assert (keep / rendercache.NAME).is_file() and not cache_path(sb).exists()
    before = slot_texts(sb)
    wipe_scandir(sb)
    assert probe_with(sb, keep) == (False, 0)
    assert slot_texts(sb) == before


@pytest.mark.parametrize("how", ["group-writable", "missing"])
def test_an_unusable_render_cache_dir_is_never_trusted_nor_written(sandbox, how):
    sb = sandbox
    keep = sb.root / "cache"
    if how == "group-writable":
        keep.mkdir()
        os.chmod(keep, 0o770)
    assert probe_with(sb, keep)[1] == 0
    # Never created, never written: the scandir keeps the cache, as without the setting.
    assert cache_path(sb).is_file()
    if how == "missing":
        assert not keep.exists()
    else:
        assert os.listdir(keep) == []
        (keep / rendercache.NAME).write_bytes(cache_path(sb).read_bytes())
        os.chmod(keep / rendercache.NAME, 0o600)
        poison_at = keep / rendercache.NAME  # a cache there is never read either
        doc = json.loads(poison_at.read_text())
        doc["renders"] = {k: "#!/bin/sh\necho POISON\n" for k in doc["renders"]}
        poison_at.write_text(json.dumps(doc))
        os.remove(cache_path(sb))
        assert probe_with(sb, keep) == (True, 0)
        assert "POISON" not in (sb.slot("default") / "run").read_text()


def test_render_cache_dir_must_be_absolute():
    with pytest.raises(inventory.InventoryError, match="render_cache_dir"):
        inventory.load(None, ["render_cache_dir=cache"], environ={})
    assert inventory.load(None, ["render_cache_dir=null"], environ={}).render_cache_dir is None
