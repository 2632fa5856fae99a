"""A real s6 supervision tree in a temp directory, for integration tests (reference/s6.md §14).

Nothing here needs Docker: Debian's s6 2.11 tools in /usr/bin run a real ``s6-svscan`` on a
sandbox scandir. Every process this module starts is recorded and stopped by PID; it never
signals anything by name and never touches a process outside the sandboxes it created.
"""

from __future__ import annotations

import atexit
import dataclasses
import errno
import glob
import json
import os
import pwd
import shlex
import signal
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
FAKE_GATEWAY = Path(__file__).resolve().parent / "bin" / "fake-gateway"
S6_BIN = Path("/usr/bin")
SYSTEM_PYTHON = "/usr/bin/python3"
SERVICE_USER_NAME = "hermestest"
SANDBOX_PREFIX = "hermes-tasks-test-"
# Dot-entries that belong in a scandir: s6-svscan's control dir, our lock, our render cache.
# s6-svscan's, and ours: the lock, the render cache, the slot cache (which appears once a
# run finds slots written more than a second earlier unchanged, so it may or may not be
# there after a given run).
OWN_DOT_ENTRIES = (".s6-svscan", ".hermes-tasks.lock", ".hermes-tasks.cache", ".hermes-tasks.slots")

T = TypeVar("T")

# Everything this process started, so cleanup never reaches anyone else's processes.
_SANDBOX_ROOTS: set[Path] = set()
_LIVE_SUPERVISORS: dict[int, Supervisor] = {}
_SVSCAN_PIDS: set[int] = set()


@dataclasses.dataclass(frozen=True)
class ServiceUser:
    """The account gateways run as (``service_user``/``service_uid``/``service_gid``)."""

    name: str
    uid: int
    gid: int


@dataclasses.dataclass
class Sandbox:
    """A fresh fake container root: ``home`` is the volume, ``scandir`` is /run/service."""

    root: Path
    home: Path
    scandir: Path
    cmd_dir: Path
    env_dir: Path
    cont_init_dir: Path
    user: ServiceUser | None

    def slot(self, profile: str) -> Path:
        """Path of a profile's slot in the scandir (it may not exist)."""
        return self.scandir / f"gateway-{profile}"

    def cleanup(self) -> None:
        """Stop leftovers inside the root (by PID), then delete it. Idempotent."""
        kill_pids_in(self.root)
        remove_root(self.root)
        _SANDBOX_ROOTS.discard(self.root)


def remove_root(root: str | os.PathLike) -> None:
    """``rm -rf`` a sandbox root: tests plant 1,500-deep trees, which ``shutil.rmtree``
    (recursive in Python 3.11) cannot remove."""
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(root)], capture_output=True,
                   check=False)


# --------------------------------------------------------------------------- setup


def make_sandbox(service_user: bool) -> Sandbox:
    """Create a sandbox under the system temp dir (mode 0755, traversable by the service user).

    With ``service_user=True`` the service user is created if needed (see
    :func:`ensure_service_user`) and owns ``home``, like the container's volume.
    Call ``cleanup()`` (the fixtures do) when done.
    """
    root = Path(tempfile.mkdtemp(prefix=SANDBOX_PREFIX)).resolve()
    os.chmod(root, 0o755)
    _SANDBOX_ROOTS.add(root)
    sb = Sandbox(
        root=root,
        home=root / "home",
        scandir=root / "run" / "service",
        cmd_dir=root / "command",
        env_dir=root / "run" / "s6" / "container_environment",
        cont_init_dir=root / "etc" / "cont-init.d",
        user=ensure_service_user() if service_user else None,
    )
    for d in (sb.home, sb.scandir, sb.env_dir, sb.cmd_dir, sb.cont_init_dir):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o755)
    make_command_dir(sb.cmd_dir, sb.env_dir)
    if sb.user is not None:
        os.chown(sb.home, sb.user.uid, sb.user.gid)
    return sb


WITH_CONTENV = """\
#!/bin/sh
# Test stand-in for s6-overlay's /command/with-contenv: unless S6_KEEP_ENV is set to
# something other than 0, start from an empty environment (keeping PATH), load the
# container environment directory, then exec the arguments.
if [ "${{S6_KEEP_ENV:-0}}" = 0 ]; then
  exec env -i PATH="$PATH" {envdir} -Lf {env_dir} "$@"
fi
exec "$@"
"""


def make_command_dir(path: str | os.PathLike, env_dir: str | os.PathLike | None = None) -> Path:
    """Fill ``path`` like s6-overlay's /command: s6 tools, execlineb and a ``with-contenv`` shim.

    ``env_dir`` defaults to ``<path>/../run/s6/container_environment`` (the sandbox layout).
    The shim is POSIX sh, so ``#!<path>/with-contenv sh`` works as a shebang on Linux.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    env_dir = Path(env_dir) if env_dir else path.parent / "run" / "s6" / "container_environment"
    for tool in sorted(glob.glob(str(S6_BIN / "s6-*"))) + [str(S6_BIN / "execlineb")]:
        link = path / os.path.basename(tool)
        if not link.exists():
            link.symlink_to(tool)
    shim = path / "with-contenv"
    shim.write_text(
        WITH_CONTENV.format(envdir=S6_BIN / "s6-envdir", env_dir=shlex.quote(str(env_dir)))
    )
    shim.chmod(0o755)
    return path


def write_container_env(env_dir: str | os.PathLike, mapping: Mapping[str, str | None]) -> None:
    """Write one file per variable, as s6-overlay saves the container environment.

    Values are written verbatim (read back with ``s6-envdir -Lf``). ``None`` or ``""`` writes
    an empty file, which s6-envdir treats as "unset this variable".
    """
    env_dir = Path(env_dir)
    env_dir.mkdir(parents=True, exist_ok=True)
    for name, value in mapping.items():
        if not name or "=" in name or "/" in name or name.startswith("."):
            raise ValueError(f"not a usable variable name: {name!r}")
        (env_dir / name).write_text(value or "")


def ensure_service_user() -> ServiceUser:
    """Return the test service user, creating ``hermestest`` (system, no home) when root.

    When not root, the current user is returned: the privilege model collapses to one user.
    """
    if os.geteuid() != 0:
        pw = pwd.getpwuid(os.geteuid())
        return ServiceUser(pw.pw_name, pw.pw_uid, os.getegid())
    try:
        pw = pwd.getpwnam(SERVICE_USER_NAME)
    except KeyError:
        res = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SERVICE_USER_NAME],
            capture_output=True, text=True,
        )
        try:  # a parallel worker may have created it first
            pw = pwd.getpwnam(SERVICE_USER_NAME)
        except KeyError:
            raise RuntimeError(f"useradd {SERVICE_USER_NAME} failed: {res.stderr.strip()}") from None
    return ServiceUser(pw.pw_name, pw.pw_uid, pw.pw_gid)


# --------------------------------------------------------------------------- /proc


@dataclasses.dataclass(frozen=True)
class Proc:
    """One process as seen in /proc (``cwd`` without a trailing `` (deleted)``)."""

    pid: int
    comm: str
    cwd: str
    cmdline: tuple[str, ...]


def processes() -> Iterator[Proc]:
    """Live, non-zombie processes whose cwd is readable; races are skipped silently."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        base = f"/proc/{entry}"
        try:
            with open(f"{base}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
            if stat[stat.rindex(")") + 2] in "ZX":
                continue
            with open(f"{base}/comm", "rb") as fh:
                comm = fh.read().decode(errors="replace").strip()
            with open(f"{base}/cmdline", "rb") as fh:
                cmdline = tuple(a.decode(errors="replace") for a in fh.read().split(b"\0") if a)
            cwd = os.readlink(f"{base}/cwd")
        except (OSError, ValueError, IndexError):
            continue
        yield Proc(int(entry), comm, cwd.removesuffix(" (deleted)"), cmdline)


def _inside(path: str, root: Path) -> bool:
    return path == str(root) or path.startswith(str(root) + "/")


def _own_lineage() -> set[int]:
    """This process and its ancestors: never candidates for killing."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
            pid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            break
    return pids


def pids_in(root: str | os.PathLike) -> list[int]:
    """PIDs whose cwd is inside ``root`` or whose argv names a path inside it."""
    root = Path(root).resolve()
    mine = _own_lineage()
    return sorted(
        p.pid for p in processes()
        if p.pid not in mine
        and (_inside(p.cwd, root) or any(_inside(a, root) for a in p.cmdline))
    )


def kill_pids_in(root: str | os.PathLike, grace: float = 0.0) -> list[int]:
    """SIGKILL, by PID, every process :func:`pids_in` finds (after ``grace`` s); return them."""
    if grace:
        try:
            wait_for(lambda: not pids_in(root), grace)
        except TimeoutError:
            pass
    killed: list[int] = []
    for _ in range(50):
        left = pids_in(root)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    return sorted(set(killed))


def supervise_pids(slot_dir: str | os.PathLike) -> list[int]:
    """PIDs of the s6-supervise processes of ``slot_dir`` and of ``slot_dir/log``.

    Matches on the real cwd, so it also finds supervisors of a renamed slot (pass the new
    path) or of a deleted one (pass the old path).
    """
    slot = os.path.realpath(slot_dir)
    wanted = {slot, os.path.join(slot, "log")}
    return sorted(p.pid for p in processes() if p.comm == "s6-supervise" and p.cwd in wanted)


# --------------------------------------------------------------------------- waiting and status


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.02,
             what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Raises ``TimeoutError`` (naming ``what`` and the last value) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for "
                               f"{what or predicate!r} (last value: {value!r})")
        time.sleep(interval)


def _parse_field(text: str):
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        return text


def svstat(slot_dir: str | os.PathLike,
           fields: tuple[str, ...] = ("up", "wantedup", "normallyup", "pid")) -> dict:
    """Ask ``s6-svstat -o`` for ``fields``; booleans and integers are converted.

    Raises ``subprocess.CalledProcessError`` when s6-svstat fails (exit 1: no supervisor).
    """
    out = subprocess.run(
        [str(S6_BIN / "s6-svstat"), "-o", ",".join(fields), str(slot_dir)],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return {name: _parse_field(value) for name, value in zip(fields, out, strict=True)}


def wait_status_file(slot_dir: str | os.PathLike, timeout: float = 5.0) -> Path:
    """Wait until ``supervise/status`` exists: before that, s6-svstat/s6-svwait fail (s6.md §4.2)."""
    status = Path(slot_dir) / "supervise" / "status"
    wait_for(status.exists, timeout, what=f"{status}")
    return status


def wait_up(slot_dir: str | os.PathLike, timeout: float = 5.0) -> dict:
    """Wait until s6 reports the service up; return its :func:`svstat` fields."""
    wait_status_file(slot_dir, timeout)

    def up():
        st = svstat(slot_dir)
        return st if st["up"] else None

    return wait_for(up, timeout, what=f"{slot_dir} up")


def wait_down(slot_dir: str | os.PathLike, timeout: float = 5.0) -> dict:
    """Wait until s6 reports the service down; return its :func:`svstat` fields."""
    wait_status_file(slot_dir, timeout)

    def down():
        st = svstat(slot_dir)
        return st if not st["up"] else None

    return wait_for(down, timeout, what=f"{slot_dir} down")


def publish_test_slot(scandir: str | os.PathLike, name: str, run: str, *,
                      log_run: str | None = None, down: bool = False) -> Path:
    """Build a hand-made slot in ``.<name>.tmp`` and rename it into place (no rescan).

    ``run``/``log_run`` are script texts (written 0755). Returns the published path.
    """
    scandir = Path(scandir)
    staging = scandir / f".{name}.tmp"
    staging.mkdir()
    (staging / "run").write_text(run)
    (staging / "run").chmod(0o755)
    if log_run is not None:
        (staging / "log").mkdir()
        (staging / "log" / "run").write_text(log_run)
        (staging / "log" / "run").chmod(0o755)
    if down:
        (staging / "down").touch()
    final = scandir / name
    os.rename(staging, final)
    return final


# --------------------------------------------------------------------------- the supervisor


class Supervisor:
    """A real ``s6-svscan`` on a sandbox's scandir (stage 1 of the container).

    Started with a clean environment (``PATH=<cmd_dir>:/usr/bin:/bin`` plus ``env``) and its
    output in ``<root>/svscan.log``. Use as a context manager, or call ``start()``/``stop()``;
    any supervisor left running is stopped at interpreter exit (and by the test fixtures).
    ``capacity`` adds 2.11's ``-c N``. ``wrap`` is a command that execs its arguments
    (e.g. ``unshare --net …``): s6-svscan keeps the pid of ``Popen``.
    """

    def __init__(self, sandbox: Sandbox, *, capacity: int | None = None,
                 env: Mapping[str, str] | None = None, wrap: list[str] = ()):
        self.sandbox = sandbox
        self.wrap = list(wrap)
        self.scandir = sandbox.scandir
        self.log_path = sandbox.root / "svscan.log"
        self.capacity = capacity
        self.env = {"PATH": f"{sandbox.cmd_dir}:/usr/bin:/bin", **(env or {})}
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def control(self) -> Path:
        return self.scandir / ".s6-svscan" / "control"

    def start(self, timeout: float = 5.0) -> Supervisor:
        """Start s6-svscan and wait until its control FIFO has a reader."""
        argv = [*self.wrap, str(S6_BIN / "s6-svscan")]
        if self.capacity:
            argv += ["-c", str(self.capacity)]
        argv.append(str(self.scandir))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, env=self.env, cwd=self.sandbox.root, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        _LIVE_SUPERVISORS[self.proc.pid] = self
        _SVSCAN_PIDS.add(self.proc.pid)
        try:
            wait_for(self._listening, timeout, what=f"s6-svscan listening on {self.control}")
        except BaseException:
            self.stop()
            raise
        return self

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"s6-svscan exited {self.proc.returncode}: {self.log_text()}")
        try:
            fd = os.open(self.control, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENOENT):
                return False
            raise
        os.close(fd)
        return True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def svscanctl(self, *flags: str) -> subprocess.CompletedProcess:
        """Run ``s6-svscanctl <flags> <scandir>`` (checked)."""
        return subprocess.run([str(S6_BIN / "s6-svscanctl"), *flags, str(self.scandir)],
                              check=True, capture_output=True, text=True)

    def rescan(self, flags: str = "-a") -> None:
        """Tell s6-svscan to rescan (``-a``; pass ``"-an"`` to also drop vanished slots)."""
        self.svscanctl(flags)

    def stop(self, timeout: float = 10.0) -> list[int]:
        """Tear the tree down (``-t``), wait, then SIGKILL leftovers in the sandbox by PID.

        Returns the PIDs that had to be killed (empty after a clean teardown). Idempotent.
        """
        if self.proc is None:
            return []
        if self.proc.poll() is None:
            try:
                self.svscanctl("-t")
            except subprocess.CalledProcessError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _LIVE_SUPERVISORS.pop(self.proc.pid, None)
        # 2.11's s6-svscan waits for its supervisors before exiting (measured), so what is
        # left now is orphans (e.g. children of a run script that did not exec).
        return kill_pids_in(self.sandbox.root, grace=0.2)

    def log_text(self) -> str:
        """Everything s6-svscan and unlogged services wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_all() -> list[int]:
    """Stop every supervisor this process started and clean every sandbox it made.

    Returns the PIDs that had to be killed. Safe to call repeatedly (atexit does).
    """
    killed: list[int] = []
    for sup in list(_LIVE_SUPERVISORS.values()):
        killed += sup.stop()
    for root in list(_SANDBOX_ROOTS):
        killed += kill_pids_in(root)
    return killed


def live_supervisors() -> list[Supervisor]:
    """Supervisors started by this process and not stopped yet."""
    return list(_LIVE_SUPERVISORS.values())


def stray_svscans() -> list[int]:
    """PIDs of s6-svscan processes started by this process that are still alive."""
    live = {p.pid for p in processes() if p.comm == "s6-svscan"}
    return sorted(_SVSCAN_PIDS & live)


def sandbox_roots() -> list[Path]:
    """Sandboxes made by this process and not cleaned up yet."""
    return sorted(_SANDBOX_ROOTS)


def _cleanup_at_exit() -> None:
    stop_all()
    for root in list(_SANDBOX_ROOTS):
        remove_root(root)
        _SANDBOX_ROOTS.discard(root)


atexit.register(_cleanup_at_exit)


# --------------------------------------------------------------------------- running the tool


def _can_run(python: str, user: ServiceUser | None) -> bool:
    try:
        return subprocess.run([python, "-c", ""], capture_output=True,
                              **user_kwargs(user)).returncode == 0
    except PermissionError:
        return False


def user_kwargs(user: ServiceUser | None) -> dict:
    if user is None or (user.uid == os.geteuid() and user.gid == os.getegid()):
        return {}
    if os.geteuid() != 0:
        raise PermissionError(f"cannot run as {user.name}: not root")
    return {"user": user.uid, "group": user.gid, "extra_groups": []}


_PYTHON_CACHE: dict[int | None, tuple[str, list[str]]] = {}


def python_for(user: ServiceUser | None) -> tuple[str, list[str]]:
    """The interpreter ``user`` can execute, and extra ``PYTHONPATH`` entries it needs.

    Normally ``sys.executable``. When that is unreachable for ``user`` (the venv's base
    interpreter lives under a 0700 /root here), fall back to the system python3 with the venv's
    site-packages on PYTHONPATH (same 3.11 ABI).
    """
    key = None if user is None else user.uid
    if key not in _PYTHON_CACHE:
        if _can_run(sys.executable, user):
            _PYTHON_CACHE[key] = (sys.executable, [])
        else:
            _PYTHON_CACHE[key] = (SYSTEM_PYTHON, list(site.getsitepackages()))
    return _PYTHON_CACHE[key]


def tool_env(sandbox: Sandbox, extra_path: list[str] = ()) -> dict[str, str]:
    """The clean environment tasks run with: container-like PATH, repo on PYTHONPATH."""
    return {
        "PATH": f"{sandbox.cmd_dir}:/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join(
            [str(REPO_ROOT), *extra_path, *filter(None, os.environ.get("PYTHONPATH", "").split(":"))]
        ),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LC_ALL": "C.UTF-8",
    }


def inventory_args(sandbox: Sandbox) -> list[str]:
    """``--var`` flags pointing the tool at the sandbox (and at the fake gateway)."""
    pairs = [
        ("hermes_home", sandbox.home), ("scandir", sandbox.scandir),
        ("s6_bin_dir", sandbox.cmd_dir), ("hermes_bin", FAKE_GATEWAY),
        # the registrar's agent converges on its own only where a test asks for it
        ("watch_interval", 0),
    ]
    if sandbox.user is not None:
        pairs += [("service_user", sandbox.user.name), ("service_uid", sandbox.user.uid),
                  ("service_gid", sandbox.user.gid)]
    else:
        pairs.append(("service_user", "null"))
    return [arg for key, value in pairs for arg in ("--var", f"{key}={value}")]


def run_tasks(sandbox: Sandbox, task: str | None, *args: str, user: ServiceUser | None = None,
              env: Mapping[str, str] | None = None, timeout: float = 120,
              inventory_vars: bool = True, argv: list[str] | None = None,
              ) -> subprocess.CompletedProcess:
    """Run ``python -m hermes_tasks <task> <args> [--var …]`` with a clean env; capture text.

    ``user`` runs it as that account (root only). ``env`` adds or overrides variables.
    ``argv`` replaces the whole command (``task``, ``args`` and the ``--var`` flags are
    ignored); a leading ``"python"`` in it is replaced by the interpreter ``user`` can run.
    The working directory is the sandbox root. Never raises on a nonzero exit.
    """
    python, extra_path = python_for(user)
    if argv is not None:
        cmd = [python if a == "python" and i == 0 else a for i, a in enumerate(argv)]
    else:
        cmd = [python, "-m", "hermes_tasks", task, *args]
        if inventory_vars:
            cmd += inventory_args(sandbox)
    full_env = {**tool_env(sandbox, extra_path), **(env or {})}
    return subprocess.run(cmd, env=full_env, cwd=sandbox.root, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **user_kwargs(user))


def make_profile(home: Path, name: str, state: dict | None = None) -> Path:
    """Make a profile directory (SOUL.md for named ones) with an optional gateway_state.json."""
    d = home if name == "default" else home / "profiles" / name
    d.mkdir(parents=True, exist_ok=True)
    if name != "default":
        (d / "SOUL.md").write_text("soul\n")
    if state is not None:
        (d / "gateway_state.json").write_text(json.dumps(state))
    return d


def own(sandbox: Sandbox, path: Path) -> None:
    """Give ``path`` (recursively) to the sandbox's service user, like the container volume."""
    if sandbox.user:
        give_tree(path, sandbox.user)


def give_tree(path: Path, user: ServiceUser) -> None:
    """``chown -hR`` ``path`` to ``user`` (never following symlinks)."""
    for dirpath, dirs, files in os.walk(path):
        for n in [dirpath, *(os.path.join(dirpath, f) for f in dirs + files)]:
            os.lchown(n, user.uid, user.gid)
