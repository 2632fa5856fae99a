"""The parsed-inventory cache (hermes_tasks/inventorycache.py): a hit gives exactly what
parsing gives without importing PyYAML; any change of what was read is parsed again; a cache
root cannot trust is ignored and replaced, never followed, never a traceback."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import s6env

from hermes_tasks import inventory, inventorycache
from hermes_tasks.errors import InventoryError
from hermes_tasks.inventorycache import NAME, ParsedCache

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def layered(root: Path) -> Path:
    """A directory inventory with every kind of file the inventory read uses."""
    inv = root / "inv"
    write(inv / "hosts.yml", """
all:
  vars: {hermes_home: /a, scandir: /s1, lock_timeout: 1, extra_env: {A: "1", B: yes}}
  children:
    web:
      vars: {max_slots: 7}
      hosts:
        localhost: {scandir: /s3}
""")
    write(inv / "group_vars" / "all.yml", "hermes_bin: h2\nwatch_interval: 0.5\n")
    write(inv / "group_vars" / "web.yml", "gateway_profiles: [a, 'b*']\n")
    write(inv / "host_vars" / "localhost.yml", "lock_timeout: 4\nprofile_vars: {p1: {webhook_port: 9200}}\n")
    return inv


@pytest.fixture
def cache_dir(tmp_path):
    d = tmp_path / "cache"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def parses(monkeypatch):
    """How many files were parsed by PyYAML (not served from the cache)."""
    seen = []
    real = inventory._parse_yaml

    def counting(path, raw):
        seen.append(path)
        return real(path, raw)

    monkeypatch.setattr(inventory, "_parse_yaml", counting)
    return seen


def load(inv, cache_dir, **kw):
    return inventory.load(inv, environ={}, cache=ParsedCache(str(cache_dir)), **kw)


def fresh(inv, **kw):
    return inventory.load(inv, environ={}, cache=ParsedCache(None), **kw)


LOAD = """
import json, sys
from hermes_tasks import inventory, inventorycache
inventorycache.DIRECTORY = sys.argv[2]
try:
    s = repr(inventory.load(sys.argv[1], environ={}))
except Exception as exc:
    s = f"{type(exc).__name__}: {exc}"
print(json.dumps({"settings": s, "yaml": "yaml" in sys.modules}))
"""


def load_in_child(inv, cache_dir, user=None):
    python, extra = s6env.python_for(user)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join([str(REPO), *extra])}
    res = subprocess.run([python, "-c", LOAD, str(inv), str(cache_dir)], cwd="/", env=env,
                         capture_output=True, text=True, check=True, **s6env.user_kwargs(user))
    assert res.stderr == ""
    return json.loads(res.stdout)


def test_a_hit_gives_the_same_settings_without_importing_yaml(tmp_path, cache_dir):
    inv = layered(tmp_path)
    first = load_in_child(inv, cache_dir)
    assert first["yaml"] is True
    assert (cache_dir / NAME).is_file()
    second = load_in_child(inv, cache_dir)
    assert second == {"settings": first["settings"], "yaml": False}
    assert second["settings"] == repr(fresh(inv))


def test_the_environment_names_the_cache_directory(tmp_path, cache_dir):
    inv = layered(tmp_path)
    code = ("import json, sys\nfrom hermes_tasks import inventory\n"
            "s = repr(inventory.load(sys.argv[1]))\n"
            "print(json.dumps({'settings': s, 'yaml': 'yaml' in sys.modules}))\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
           "HERMES_TASKS_CACHE_DIR": str(cache_dir)}
    runs = [json.loads(subprocess.run([sys.executable, "-c", code, str(inv)], cwd="/", env=env,
                                      capture_output=True, text=True, check=True).stdout)
            for _ in range(2)]
    assert (cache_dir / NAME).is_file()
    assert [r["yaml"] for r in runs] == [True, False]
    assert runs[0]["settings"] == runs[1]["settings"]


def test_the_shipped_inventory_and_a_json_one_are_cached_alike(tmp_path, cache_dir, parses):
    shipped = inventory.default_inventory_path()
    doc = {"all": {"vars": {"hermes_home": "/h", "max_slots": 5000, "webhook_port_base": 13650}}}
    as_json = write(tmp_path / "inventory.yml", json.dumps(doc) + "\n")
    for inv in (shipped, as_json):
        assert load(inv, cache_dir) == fresh(inv)
    parses.clear()
    for inv in (shipped, as_json):
        assert load(inv, cache_dir) == fresh(inv)
    assert len(parses) == 2  # only fresh()'s: both cached entries served
    assert load_in_child(shipped, cache_dir)["yaml"] is False


def test_gateway_status_from_a_warm_cache_imports_no_yaml(tmp_path, cache_dir):
    inv = write(tmp_path / "hosts.yml", f"""
all:
  vars: {{hermes_home: {tmp_path}/home, scandir: {tmp_path}/scan, service_user: null}}
""")
    (tmp_path / "home").mkdir()
    (tmp_path / "scan").mkdir()
    code = ("import sys\nfrom hermes_tasks import cli, inventorycache\n"
            f"inventorycache.DIRECTORY = {str(cache_dir)!r}\n"
            "sys.argv = ['hermes-tasks', 'gateway.status', '--json', '-i', sys.argv[1]]\n"
            "try:\n    cli.main(fast_exit=False)\nexcept SystemExit as exc:\n"
            "    print('exit', exc.code, 'yaml' in sys.modules, file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HERMES", "S6_PROFILE", "PUID", "PGID"))}
    runs = [subprocess.run([sys.executable, "-c", code, str(inv)], cwd=REPO, env=env,
                           capture_output=True, text=True) for _ in range(2)]
    assert [r.stderr.splitlines()[-1] for r in runs] == ["exit 0 True", "exit 0 False"]
    assert runs[0].stdout == runs[1].stdout


def test_each_change_of_what_was_read_is_parsed_again(tmp_path, cache_dir, parses):
    inv = layered(tmp_path)
    load(inv, cache_dir)

    def check(expect_parsed):
        parses.clear()
        got = load(inv, cache_dir)
        assert [Path(p).name for p in parses] == expect_parsed
        assert got == fresh(inv)
        return got

    assert check([]).lock_timeout == 4
    # an edit of the same size with the old mtime put back
    host = inv / "host_vars" / "localhost.yml"
    st = host.stat()
    host.write_text(host.read_text().replace("lock_timeout: 4", "lock_timeout: 5"))
    os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert host.stat().st_size == st.st_size
    assert check(["localhost.yml"]).lock_timeout == 5
    # a new file in a listing that was looked at
    write(inv / "group_vars" / "all.yaml", "crash_limit: 9\n")  # .yml still wins
    write(inv / "host_vars" / "other.yml", "crash_limit: 9\n")  # not this host's
    assert check([]).crash_limit == 5
    (inv / "group_vars" / "all.yml").unlink()  # removed: all.yaml is found now
    assert check(["all.yaml"]).crash_limit == 9
    assert check([]).hermes_bin == "hermes"
    # a rename: web's file becomes all's, all's is gone
    os.rename(inv / "group_vars" / "web.yml", inv / "group_vars" / "all.yml")
    (inv / "group_vars" / "all.yaml").unlink()
    got = check([])  # the same bytes were parsed before: the same document, new place
    assert (got.gateway_profiles, got.crash_limit) == (("a", "b*"), 5)
    # a symlink swapped between two files of the same size and mtime
    v1 = write(tmp_path / "v1.yml", "lock_timeout: 6\n")
    v2 = write(tmp_path / "v2.yml", "lock_timeout: 7\n")
    os.utime(v2, ns=(v1.stat().st_atime_ns, v1.stat().st_mtime_ns))
    host.unlink()
    host.symlink_to(v1)
    assert check(["localhost.yml"]).lock_timeout == 6
    host.unlink()
    host.symlink_to(v2)
    assert check(["localhost.yml"]).lock_timeout == 7
    # the file named by the environment variable, edited in place
    named = write(tmp_path / "named.yml", "all:\n  vars: {hermes_home: /x}\n")
    env = {"HERMES_TASKS_INVENTORY": str(named)}
    cache = lambda: ParsedCache(str(cache_dir))  # noqa: E731
    assert inventory.load(environ=env, cache=cache()).hermes_home == "/x"
    named.write_text("all:\n  vars: {hermes_home: /y}\n")
    assert inventory.load(environ=env, cache=cache()).hermes_home == "/y"


def test_another_pyyaml_is_a_miss(tmp_path, cache_dir, parses, monkeypatch):
    inv = layered(tmp_path)
    load(inv, cache_dir)
    parses.clear()
    monkeypatch.setattr(inventorycache, "stamp", lambda: [inventorycache.FORMAT, "other"])
    assert load(inv, cache_dir) == fresh(inv)
    assert len(parses) == 4 + 4


def poison(cache_dir: Path, inv: Path) -> None:
    """A well-formed cache for ``inv``'s files that says hermes_home is /evil."""
    load(inv, cache_dir)
    doc = json.loads((cache_dir / NAME).read_text())
    doc["docs"] = {k: v.replace('"/a"', '"/evil"') for k, v in doc["docs"].items()}
    (cache_dir / NAME).write_text(json.dumps(doc))


def deep(cache_dir, inv):
    (cache_dir / NAME).write_text("[" * 200000 + "]" * 200000)


def deep_entry(cache_dir, inv):
    poison(cache_dir, inv)
    doc = json.loads((cache_dir / NAME).read_text())
    doc["docs"] = {k: "[" * 200000 + "]" * 200000 for k in doc["docs"]}
    (cache_dir / NAME).write_text(json.dumps(doc))


def foreign(cache_dir, inv):
    poison(cache_dir, inv)
    os.chown(cache_dir / NAME, NOBODY, NOBODY)


def group_writable(cache_dir, inv):
    poison(cache_dir, inv)
    os.chmod(cache_dir / NAME, 0o620)


def symlink(cache_dir, inv):
    other = cache_dir.parent / "elsewhere"
    other.mkdir(mode=0o700)
    poison(other, inv)
    (cache_dir / NAME).symlink_to(other / NAME)


def corrupt(cache_dir, inv):
    (cache_dir / NAME).write_bytes(b"\x00\xffnot json")


def truncated(cache_dir, inv):
    load(inv, cache_dir)
    data = (cache_dir / NAME).read_bytes()
    (cache_dir / NAME).write_bytes(data[: len(data) // 2])


def wrong_shape(cache_dir, inv):
    (cache_dir / NAME).write_text(json.dumps(
        {"format": inventorycache.FORMAT, "stamp": inventorycache.stamp(), "docs": [1]}))


def a_fifo(cache_dir, inv):
    os.mkfifo(cache_dir / NAME, 0o600)  # must not hang the run


@pytest.mark.parametrize("spoil", [deep, deep_entry, foreign, group_writable, symlink, corrupt,
                                   truncated, wrong_shape, a_fifo])
def test_a_cache_file_that_cannot_be_trusted_is_ignored_and_replaced(tmp_path, cache_dir,
                                                                       parses, spoil):
    if spoil is foreign and os.geteuid() != 0:
        pytest.fail("the suite runs as root: a foreign owner needs chown")
    inv = layered(tmp_path)
    spoil(cache_dir, inv)
    target = (cache_dir / NAME).resolve() if (cache_dir / NAME).is_symlink() else None
    before = target.read_bytes() if target else None
    parses.clear()
    got = load(inv, cache_dir)
    assert len(parses) == 4  # every file parsed
    assert got == fresh(inv) and got.hermes_home == "/a"
    st = (cache_dir / NAME).lstat()  # replaced by our own, whole
    assert (st.st_uid, st.st_mode & 0o777, (cache_dir / NAME).is_symlink()) == \
        (os.geteuid(), 0o600, False)
    if target:
        assert target.read_bytes() == before  # never written through
    parses.clear()
    assert load(inv, cache_dir) == got and parses == []


def test_a_trusted_cache_is_what_is_used(tmp_path, cache_dir):
    """The other side of the trust rule: root's own 0600 file in root's own directory."""
    inv = layered(tmp_path)
    poison(cache_dir, inv)
    assert load(inv, cache_dir).hermes_home == "/evil"


@pytest.mark.parametrize("how", ["others-write", "group-write", "foreign", "missing", "file"])
def test_a_directory_that_cannot_be_trusted_is_never_read_nor_written(tmp_path, parses, how):
    inv = layered(tmp_path)
    d = tmp_path / "cache"
    if how != "missing":
        d.mkdir(mode=0o700)
        poison(d, inv)
    if how == "others-write":
        os.chmod(d, 0o1777)
    elif how == "group-write":
        os.chmod(d, 0o770)
    elif how == "foreign":
        os.chown(d, NOBODY, NOBODY)
    elif how == "file":
        shutil.rmtree(d)
        d.write_text("")
    before = sorted(os.listdir(d)) if d.is_dir() else None
    parses.clear()
    got = load(inv, d)
    assert len(parses) == 4
    assert got == fresh(inv) and got.hermes_home == "/a"
    if how == "missing":
        assert not d.exists()  # never created
    elif how != "file":
        assert sorted(os.listdir(d)) == before
        assert "/evil" in (d / NAME).read_text()  # left as it was


BROKEN = {
    "bad yaml": "all: [\n",
    "not a mapping": "- 1\n",
    "no all": "hosts: {}\n",
    "unknown key": "all:\n  vars: {lock_timout: 1}\n",
    "bad value": "all:\n  vars: {max_slots: -1}\n",
    "impossible date": "all:\n  vars: {hermes_bin: 2001-13-01}\n",
    "a date": "all:\n  vars: {hermes_bin: 2001-12-01}\n",
    "an int key": "all:\n  vars: {extra_env: {1: x}}\n",
    "a float key": "all:\n  vars: {extra_env: {1.5: x}}\n",
    "a bool for a number": "all:\n  vars: {lock_timeout: yes}\n",
    "nan": "all:\n  vars: {lock_timeout: .nan}\n",
    "infinity": "all:\n  vars: {lock_timeout: .inf}\n",
    "a set": "all:\n  vars: {gateway_profiles: !!set {a: null}}\n",
    "binary": "all:\n  vars: {hermes_bin: !!binary aGVsbG8=}\n",
    "alias loop": "all:\n  vars: &a {profile_vars: *a}\n",
    "too deep": "all:\n  vars:\n    extra_env: " + "[" * 1000 + "]" * 1000 + "\n",
    "deep but parsed": "all:\n  vars:\n    extra_env: " + "[" * 150 + "]" * 150 + "\n",
    "several hosts": "all:\n  hosts: {a: {}, b: {}}\n",
    "int host": "all:\n  hosts: {1: {}, localhost: {}}\n  vars: {max_slots: 3}\n",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_every_outcome_is_worded_as_parsing_words_it(tmp_path, cache_dir, name):
    inv = write(tmp_path / "hosts.yml", BROKEN[name])

    def outcome(cache):
        try:
            return repr(inventory.load(inv, environ={}, cache=cache))
        except InventoryError as exc:
            return f"error: {exc}"

    want = outcome(ParsedCache(None))
    assert [outcome(ParsedCache(str(cache_dir))) for _ in range(3)] == [want] * 3


def test_only_what_json_holds_exactly_is_kept():
    import datetime

    enc = inventorycache.encode
    for doc in ({"a": [1, 1.0, 2.5, -0.0, True, None, "é\u2028\ud800"], "b": {}},
                {"z": 1, "a": 2}, 2**80, "x"):
        assert json.loads(enc(doc)) == doc
    assert list(json.loads(enc({"z": 1, "a": 2}))) == ["z", "a"]
    for doc in ({1: "x"}, {None: 1}, {True: 1}, {"a": (1,)}, {"a": datetime.date(2001, 1, 1)},
                {"a": b"x"}, {"a": {1}}, float("nan"), float("inf"), {1.0: 2}):
        assert enc(doc) is None, doc
    loop: list = []
    loop.append(loop)
    assert enc(loop) is None


def test_a_user_without_a_cache_directory_of_their_own_parses():
    """Not root, from a checkout: root's directory is not theirs (no cache, no error); a
    directory of their own is used."""
    if os.geteuid() != 0:
        pytest.fail("the suite runs as root: this test switches to another user")
    user = s6env.ensure_service_user()
    top = Path(tempfile.mkdtemp(prefix="invcache-"))
    try:
        os.chmod(top, 0o755)
        inv = layered(top)
        for p in [inv, *inv.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        roots = top / "roots"
        roots.mkdir(mode=0o755)
        theirs = top / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, user.uid, user.gid)
        want = repr(fresh(inv))
        for _ in range(2):
            assert load_in_child(inv, roots, user) == {"settings": want, "yaml": True}
        assert os.listdir(roots) == []
        got = [load_in_child(inv, theirs, user) for _ in range(2)]
        assert got == [{"settings": want, "yaml": True}, {"settings": want, "yaml": False}]
        assert (theirs / NAME).stat().st_uid == user.uid
    finally:
        shutil.rmtree(top)


def test_the_image_primes_the_cache_where_boot_looks():
    text = (REPO / "Dockerfile").read_text()
    assert 'python -c "from hermes_tasks import inventory; inventory.load()"' in text
    assert f"test -s {inventorycache.DIRECTORY}/{NAME}" in text
    assert f"install -d -m 0700 {inventorycache.DIRECTORY}" in text
