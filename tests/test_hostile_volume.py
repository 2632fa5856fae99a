"""The volume is hostile (SPEC §14.9, issue 21): no planted object stops, delays or crashes root.

A table: each kind of object the service user can plant (a file where a directory belongs or
the reverse, a FIFO, a socket, a dangling and a looping symlink, a 3 GiB sparse file, a
1,500-deep tree, binary bytes, invalid UTF-8, deep JSON) at each path root reads on the volume.
Then the container boot (``hermes-tasks-boot``) and each root task run for real, as root, on a
volume owned by the service user, and each must: exit as documented, print no traceback (only
one-line ``hermes-tasks: warning|error:`` lines), publish ``gateway-default`` and the registrar
at boot, name the planted path in a warning when it read it, and leave root's canaries (files
outside the volume a link could point at) unchanged.

The reading rules themselves (one module, :mod:`hermes_tasks.volumeread`) are checked per kind
in-process at the end, which is cheap; the CLI table is the user-visible outcome.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import reliability_kit as kit
import s6env

DEEP = 1500
KINDS = ("swap", "fifo", "socket", "dangling", "loop", "link_canary", "sparse", "deep_tree",
         "binary", "bad_utf8", "deep_json")
# Paths below hermes_home that root reads, and whether a directory belongs there.
PATHS = {
    "gateway_state.json": False,
    "profiles/alice/gateway_state.json": False,
    "gateway-ports.json": False,
    "gateway-ports.json.corrupt": False,  # planted beside an unusable ports file
    ".gateway-owner.json": False,
    "profiles/alice/.gateway-owner.json": False,
    ".gateway.lock": False,
    "profiles/alice/.gateway.lock": False,
    ".env": False,
    "profiles/alice/.env": False,
    "config.yaml": False,
    "profiles/alice/config.yaml": False,
    "profiles/alice/SOUL.md": False,
    "logs/container-boot.log": False,
    "logs": True,
    ".trash": True,
}
# Paths whose content root parses (a warning must name them when it is unusable).
PARSED = {"gateway_state.json", "profiles/alice/gateway_state.json", "gateway-ports.json",
          ".env", "profiles/alice/.env", "config.yaml", "profiles/alice/config.yaml"}


def plant(home: Path, rel: str, kind: str, canary: Path, user) -> None:
    """Put an object of ``kind`` at ``home/rel`` as the service user would (owned by it)."""
    path = home / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    if rel == "gateway-ports.json.corrupt":
        (home / "gateway-ports.json").write_bytes(b"not json")  # so root sets it aside
    if kind == "swap":
        if PATHS[rel]:
            path.write_bytes(b"a file where a directory belongs\n")
        else:
            path.mkdir()
            (path / "inside").write_text("x\n")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "dangling":
        path.symlink_to(canary / "missing")
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "sparse":
        with open(path, "wb") as fh:
            fh.truncate(3 << 30)
    elif kind == "deep_tree":
        path.mkdir()
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(DEEP):
                os.mkdir("d", dir_fd=fd)
                nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = nfd
        finally:
            os.close(fd)
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 64)
    elif kind == "bad_utf8":
        path.write_bytes(b'{"desired_state": "\xff\xfe\xc3", "profiles": "\xff"}\nA=\xff\n')
    elif kind == "deep_json":
        path.write_bytes(b"[" * 100_000)
    elif kind == "link_canary":  # root's own file or directory: never read, written through
        path.symlink_to(canary if PATHS[rel] else canary / "secret")
    _chown(home, user)


def _chown(home: Path, user) -> None:
    out = subprocess.run(["chown", "-hR", f"{user.uid}:{user.gid}", str(home)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def canaries(sb) -> Path:
    """Root-owned files outside the volume; every planted link that could reach one does."""
    canary = sb.root / "canary"
    canary.mkdir(exist_ok=True)
    (canary / "secret").write_text("root's\n")
    os.chmod(canary / "secret", 0o600)
    return canary


def canary_state(canary: Path) -> dict:
    return {p.name: (p.read_bytes(), os.lstat(p).st_mode, os.lstat(p).st_uid)
            for p in canary.iterdir()}


def populate(sb) -> None:
    s6env.make_profile(sb.home, "default", {"desired_state": "stopped"})
    s6env.make_profile(sb.home, "alice", {"desired_state": "stopped"})
    s6env.give_tree(sb.home, sb.user)


def write_inventory(sb) -> Path:
    """An inventory file for ``hermes-tasks-boot`` (which takes no flags), the sandbox's."""
    args = s6env.inventory_args(sb)
    pairs = dict(a.split("=", 1) for a in args[1::2])
    path = sb.root / "inventory.yml"
    doc = {"all": {"hosts": {"localhost": None}, "vars": {
        k: (None if v == "null" else int(v) if v.isdigit() else v) for k, v in pairs.items()}}}
    path.write_text(json.dumps(doc))
    return path


def run_boot(sb, inventory: Path):
    python, extra = s6env.python_for(None)
    env = {**s6env.tool_env(sb, extra), "HERMES_TASKS_INVENTORY": str(inventory)}
    return subprocess.run([python, "-m", "hermes_tasks.boot"], env=env, cwd=sb.root,
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def assert_clean(res, codes) -> list[str]:
    text = res.stdout + res.stderr
    assert "Traceback" not in text, res.stderr
    assert res.returncode in codes, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    for line in lines:
        assert line.startswith(("hermes-tasks: warning: ", "hermes-tasks: error: ")), line
    assert sum(ln.startswith("hermes-tasks: error: ") for ln in lines) <= 1, lines
    for line in text.splitlines():
        assert "\x1b" not in line and "\r" not in line, repr(line)
    return lines


def named(lines: list[str], sb, rel: str) -> bool:
    return any(str(sb.home / rel) in ln for ln in lines)


CASES = [(rel, kind) for rel in PATHS for kind in KINDS]


@pytest.mark.parametrize(("rel", "kind"), CASES, ids=[f"{r}:{k}" for r, k in CASES])
def test_planted_object_never_stops_root(root_sandbox, supervisor, rel, kind):
    sb = root_sandbox
    populate(sb)
    canary = canaries(sb)
    before = canary_state(canary)
    plant(sb.home, rel, kind, canary, sb.user)
    inventory = write_inventory(sb)
    tasks = []

    boot = run_boot(sb, inventory)
    lines = assert_clean(boot, {0})
    tasks.append(("boot", boot))
    assert (sb.scandir / "gateway-default" / "run").exists(), boot.stderr
    assert (sb.scandir / "hermes-tasks-registrar" / "run").exists(), boot.stderr
    alice_skipped = rel == "profiles/alice/SOUL.md"
    assert (sb.scandir / "gateway-alice").exists() != alice_skipped, boot.stderr
    if rel in PARSED or alice_skipped:
        if not (rel.endswith((".env", "config.yaml")) and kind in ("binary", "bad_utf8")):
            assert named(lines, sb, rel) or any(
                "skipping profile alice" in ln for ln in lines), lines

    runs = [(["reconcile"], {0}),
            (["gateway.status"], {0}),
            (["gateway.stop", "-p", "alice"], {1} if alice_skipped else {0}),
            (["gateway.start", "-p", "alice"], {1} if alice_skipped else {0}),
            (["profile.create", "bob"], {0}),
            (["profile.delete", "bob", "--purge"], {0}),
            (["profile.delete", "alice", "--purge"], {1} if alice_skipped else {0})]
    for argv, codes in runs:
        t0 = time.monotonic()
        res = s6env.run_tasks(sb, argv[0], *argv[1:])
        took = time.monotonic() - t0
        assert_clean(res, codes)
        assert took < 8, (argv, took)
    assert (sb.scandir / "gateway-default" / "run").exists()
    assert (sb.scandir / "hermes-tasks-registrar" / "run").exists()
    assert canary_state(canary) == before
