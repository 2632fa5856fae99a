"""The volume cache: profiles a run read are stat-checked, not re-read, by the next run, and
any change to them (a file's bytes, an entry added or removed) is still seen (no s6 needed)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from hermes_tasks import facts, slotcache, state, volcache, volfile
from hermes_tasks.volcache import VolumeCache


@pytest.fixture
def no_margin(monkeypatch):
    """Files just written count as settled (the margin is tested on its own below)."""
    monkeypatch.setattr(slotcache, "MARGIN", 0)


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    for name, desired in (("default", "running"), ("alpha", "stopped"), ("beta", "running")):
        pdir = home if name == "default" else home / "profiles" / name
        pdir.mkdir(parents=True, exist_ok=True)
        (pdir / "SOUL.md").write_text("# soul\n")
        (pdir / "gateway_state.json").write_text(json.dumps({"desired_state": desired}))
    (home / "profiles" / "beta" / ".env").write_text("API_SERVER_KEY=k\nAPI_SERVER_PORT=9001\n")
    (home / "profiles" / "beta" / "config.yaml").write_text(
        "platforms:\n  webhook:\n    enabled: true\n    extra:\n      port: 9101\n")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o700)
    return home


def run(home, reads=None):
    """One discovery as a run does it: load, read, save. (profiles, port facts, warnings)."""
    cache = VolumeCache.load(str(home.parent / "cache"), str(home))
    files, owners, warnings = {}, {}, []
    found, skipped = facts.volume(SimpleNamespace(hermes_home=str(home)), warnings.append,
                                  files, owners, cache)
    cache.save()
    return found, files, warnings, owners


def plain(found, files, warnings, owners):
    return ([(p.name, p.prior_state, p.autostart, p.stale, p.recorded) for p in found],
            {n: (dict(f.env), dict(f.config)) for n, f in files.items()}, warnings, owners)


def uncached(home):
    files, owners, warnings = {}, {}, []
    found, _ = facts.volume(SimpleNamespace(hermes_home=str(home)), warnings.append,
                            files, owners)
    return plain(found, files, warnings, owners)


def counting(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = volfile.read

    def spy(dfd, name, limit, stats=None):
        seen.append(name)
        return real(dfd, name, limit, stats)

    monkeypatch.setattr(volfile, "read", spy)
    return seen


def test_a_profile_read_once_is_not_read_again(home, no_margin, monkeypatch):
    first = plain(*run(home))
    assert first == uncached(home)
    assert first[1]["beta"][0] == {"API_SERVER_KEY": "set", "API_SERVER_PORT": "9001"}
    reads = counting(monkeypatch)
    again = plain(*run(home))
    assert reads == []
    assert again == first


def _rewrite_env(home):
    (home / "profiles" / "beta" / ".env").write_text("API_SERVER_KEY=k\nAPI_SERVER_PORT=9002\n")


def _env_in_place(home):
    with open(home / "profiles" / "beta" / ".env", "r+b") as fh:  # same size, same inode
        fh.seek(len(b"API_SERVER_KEY=k\nAPI_SERVER_PORT=900"))
        fh.write(b"7")


def _new_env(home):
    (home / "profiles" / "alpha" / ".env").write_text("WEBHOOK_ENABLED=1\nWEBHOOK_PORT=9200\n")


def _new_config(home):
    (home / "config.yaml").write_text("platforms:\n  api_server:\n    extra:\n      port: 9300\n")


def _state_in_place(home):
    with open(home / "profiles" / "alpha" / "gateway_state.json", "r+b") as fh:
        fh.write(json.dumps({"desired_state": "running"}).encode())


def _state_replaced(home):
    path = home / "profiles" / "alpha" / "gateway_state.json"
    (path.parent / "tmp").write_text(json.dumps({"gateway_state": "running"}))
    os.rename(path.parent / "tmp", path)


def _stale_file(home):
    (home / "profiles" / "beta" / "gateway.pid").write_text("123\n")


def _soul_gone(home):
    (home / "profiles" / "alpha" / "SOUL.md").unlink()


def _soul_is_a_dir(home):
    (home / "profiles" / "alpha" / "SOUL.md").unlink()
    (home / "profiles" / "alpha" / "SOUL.md").mkdir()


def _state_removed(home):
    (home / "profiles" / "beta" / "gateway_state.json").unlink()


def _env_symlink(home):
    env = home / "profiles" / "beta" / ".env"
    env.unlink()
    env.symlink_to(home / "profiles" / "alpha" / "SOUL.md")


def _config_chmod(home):
    os.chmod(home / "profiles" / "beta" / "config.yaml", 0o600)  # ctime only


CHANGES = [_rewrite_env, _env_in_place, _new_env, _new_config, _state_in_place,
           _state_replaced, _stale_file, _soul_gone, _soul_is_a_dir, _state_removed,
           _env_symlink]


@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__.strip("_"))
def test_any_change_to_a_profile_is_seen_through_the_cache(home, no_margin, change):
    run(home)
    run(home)  # vouched for now
    change(home)
    assert plain(*run(home)) == uncached(home)
    assert plain(*run(home)) == uncached(home)


def test_a_chmod_alone_reads_the_profile_again(home, no_margin, monkeypatch):
    run(home)
    _config_chmod(home)
    reads = counting(monkeypatch)
    assert plain(*run(home)) == uncached(home)
    assert "config.yaml" in reads


def test_a_profile_read_with_a_warning_is_read_again_and_warns_again(home, no_margin,
                                                                     monkeypatch):
    (home / "profiles" / "alpha" / "gateway_state.json").write_text("{not json")
    (home / "profiles" / "beta" / "config.yaml").write_text(
        "platforms:\n  webhook: [unclosed\n")
    first = plain(*run(home))
    assert len(first[2]) == 2
    reads = counting(monkeypatch)
    assert plain(*run(home)) == first
    # default, read without a warning, is vouched for; alpha and beta are read again
    assert reads.count("gateway_state.json") == 2 and "config.yaml" in reads


def test_files_changed_within_the_margin_are_not_recorded(home, monkeypatch):
    monkeypatch.setattr(slotcache, "MARGIN", 3_600 * 10**9)
    run(home)
    assert not (home.parent / "cache" / volcache.NAME).exists()


def test_another_home_or_other_code_never_uses_the_records(home, no_margin, monkeypatch):
    run(home)
    other = home.parent / "other"
    os.rename(home, other)
    os.mkdir(home)
    os.rename(home.parent / "cache", other.parent / "cache-kept")
    os.rename(other.parent / "cache-kept", home.parent / "cache")
    assert VolumeCache.load(str(home.parent / "cache"), str(other))._loaded == {}
    assert VolumeCache.load(str(home.parent / "cache"), str(home))._loaded
    monkeypatch.setattr(volcache, "FORMAT", volcache.FORMAT + 1)
    assert VolumeCache.load(str(home.parent / "cache"), str(home))._loaded == {}


@pytest.mark.parametrize("how", ["group-writable", "symlink", "dir-group-writable"])
def test_an_untrusted_cache_file_is_ignored(home, no_margin, monkeypatch, how):
    run(home)
    path = home.parent / "cache" / volcache.NAME
    if how == "group-writable":
        os.chmod(path, 0o620)
    elif how == "symlink":
        os.rename(path, home.parent / "elsewhere")
        path.symlink_to(home.parent / "elsewhere")
    else:
        os.chmod(path.parent, 0o770)
    assert VolumeCache.load(str(path.parent), str(home))._loaded == {}
    reads = counting(monkeypatch)
    run(home)
    assert "gateway_state.json" in reads


def test_a_damaged_record_is_read_in_full(home, no_margin):
    first = plain(*run(home))
    path = home.parent / "cache" / volcache.NAME
    doc = json.loads(path.read_text())
    head, files, body = doc["profiles"]["profiles/beta"].split("\n")
    doc["profiles"]["profiles/alpha"] = ["x", 1]
    doc["profiles"]["profiles/beta"] = f"{head}\n../etc/passwd=0:0:0:0:0\n{body}"
    doc["profiles"][""] = doc["profiles"][""].rpartition("\n")[0] + "\n[true,{"
    path.write_text(json.dumps(doc))
    assert plain(*run(home)) == first


def test_only_a_trusted_render_cache_dir_keeps_it(tmp_path):
    scandir, keep = tmp_path / "scan", tmp_path / "keep"
    scandir.mkdir()
    settings = SimpleNamespace(hermes_home=str(tmp_path / "home"), scandir=str(scandir),
                               render_cache_dir=None)
    assert facts._volume_cache(settings) is None  # never in the scandir
    settings.render_cache_dir = str(keep)
    assert facts._volume_cache(settings) is None  # missing: not created
    keep.mkdir(mode=0o770)
    os.chmod(keep, 0o770)
    assert facts._volume_cache(settings) is None  # others may write there
    os.chmod(keep, 0o700)
    assert facts._volume_cache(settings).directory == str(keep)


def test_a_recorded_state_matches_the_parser(home, no_margin):
    run(home)
    doc = json.loads((home.parent / "cache" / volcache.NAME).read_text())
    parsed = state.read(str(home), "beta")
    _, prior, autostart, recorded, _, _ = json.loads(
        doc["profiles"]["profiles/beta"].split("\n")[2])
    assert (prior, autostart, recorded) == (parsed.prior_state, parsed.autostart,
                                            parsed.desired_state)


def test_reconcile_sees_a_port_edit_after_the_cache_vouched_for_the_profile(sandbox,
                                                                             no_margin):
    """End to end through the engine with a render_cache_dir: an unchanged re-run takes the
    profiles from the cache, and an in-place edit of a profile's .env (same size, mtime put
    back) still reaches its run script; a desired_state edit still changes what runs."""
    import reliability_kit as kit
    import s6env

    from hermes_tasks import engine
    from hermes_tasks.intent import Intent

    keep = sandbox.root / "keep"
    keep.mkdir(mode=0o700)
    s6env.make_profile(sandbox.home, "alice", {"desired_state": "stopped"})
    env = sandbox.home / "profiles" / "alice" / ".env"
    env.write_text("API_SERVER_PORT=9001\n")
    settings = kit.settings_for(sandbox, f"render_cache_dir={keep}")
    quiet = [].append
    engine.run(settings, Intent("reconcile"), check=True, warn=quiet)
    assert not (keep / volcache.NAME).exists()  # --check writes no cache
    engine.run(settings, Intent("reconcile"), warn=quiet)
    rows = engine.run(settings, Intent("reconcile"), warn=quiet).rows
    assert {r.result for r in rows} == {"ok"}
    assert "profiles/alice" in VolumeCache.load(str(keep), str(sandbox.home))._loaded
    run = sandbox.slot("alice") / "run"
    assert "9001" in run.read_text()
    before = os.stat(env)
    with open(env, "r+b") as fh:
        fh.seek(len(b"API_SERVER_PORT=900"))
        fh.write(b"7")
    os.utime(env, ns=(before.st_atime_ns, before.st_mtime_ns))
    rows = engine.run(settings, Intent("reconcile"), warn=quiet).rows
    assert [r.result for r in rows if r.slot == "gateway-alice"] == ["changed"]
    assert "9007" in run.read_text() and "9001" not in run.read_text()
    rows = engine.run(settings, Intent("reconcile"), warn=quiet).rows
    assert {r.result for r in rows} == {"ok"}


def test_finish_keeps_only_what_save_writes(home, no_margin):
    run(home)
    path = home.parent / "cache" / volcache.NAME
    before = os.stat(path)
    cache = VolumeCache.load(str(home.parent / "cache"), str(home))
    facts.volume(SimpleNamespace(hermes_home=str(home)), [].append, {}, {}, cache)
    cache.finish()  # every profile as loaded: nothing held, nothing written
    assert cache._seen == {} and cache._loaded is None
    cache.save()
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    cache = VolumeCache.load(str(home.parent / "cache"), str(home))
    cache.finish()  # this run saw none of them (none settled, or the volume unreadable)
    cache.save()
    assert json.loads(path.read_text())["profiles"] == {}


def test_a_profile_whose_values_are_huge_is_never_recorded(home, no_margin, monkeypatch):
    # What the volume's writer puts in a value is not allowed to grow root's cache file.
    (home / "profiles" / "alpha" / ".env").write_text("WEBHOOK_PORT=" + "\xff" * 100_000 + "\n")
    first = plain(*run(home))
    assert first == uncached(home)
    saved = (home.parent / "cache" / volcache.NAME).read_bytes()
    assert len(saved) < 4096
    assert set(json.loads(saved)["profiles"]) == {"", "profiles/beta"}  # not alpha
    reads = counting(monkeypatch)
    assert plain(*run(home)) == first
    assert sorted(reads) == [".env", "config.yaml", "gateway_state.json"]  # alpha, in full


def test_records_stop_before_the_file_would_be_too_big(home, no_margin, monkeypatch):
    monkeypatch.setattr(volcache, "LIMIT", 1000)  # room for about two records
    first = plain(*run(home))
    assert first == uncached(home)
    saved = (home.parent / "cache" / volcache.NAME).read_bytes()
    assert len(saved) <= 1000
    assert 0 < len(json.loads(saved)["profiles"]) < 3
    assert plain(*run(home)) == first
