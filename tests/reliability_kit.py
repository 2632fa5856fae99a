"""Helpers shared by the reliability and security tests.

- building homes of many profiles, and snapshots of the profile data on the volume that
  ignore exactly the files hermes-tasks owns there;
- checks of a scandir: every visible slot complete, no supervisor on anything incomplete,
  every gateway attached to its logger;
- a rescanner thread hammering ``s6-svscanctl -a``;
- a crash-point driver (``python tests/reliability_kit.py crash K -- <task> <args>``) that
  runs the real CLI and SIGKILLs itself just before its K-th file-system or s6 operation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import s6env  # noqa: E402

# Files hermes-tasks may change in a profile directory (SPEC §4, §7); everything else there
# is the user's and must stay byte-identical.
# .gateway-planned-stop.json: hermes's marker, written before a deliberate stop (SPEC §15);
# the real gateway consumes it, the stand-in leaves it.
OWNED_IN_PROFILE = {"gateway.pid", "processes.json", ".gateway.lock", ".gateway-owner.json",
                    ".gateway-planned-stop.json"}
OWNED_TOP = {"logs", ".trash", ".standin", "gateway-ports.json", "gateway-ports.json.corrupt"}
STATE = "gateway_state.json"
TMP_SUFFIX = ".hermes-tasks.tmp"
STATE_KEYS_WE_WRITE = {"desired_state", "updated_at"}
# What the gateway itself writes into the same file while it runs (hermes and the stand-in).
STATE_KEYS_GATEWAY_WRITES = {"gateway_state", "pid", "kind", "argv", "start_time",
                             "exit_reason", "platforms", "restart_requested", "active_agents"}


# --------------------------------------------------------------------------- homes


def write_profile(home: Path, name: str, state: dict | None = None, extra: bool = True,
                  user: s6env.ServiceUser | None = None) -> Path:
    """A profile directory with SOUL.md, a state file and some user data (owned by ``user``)."""
    d = home if name == "default" else home / "profiles" / name
    d.mkdir(parents=True, exist_ok=True)
    if name != "default":
        (d / "SOUL.md").write_text(f"# {name}\nA persona with data that must survive.\n")
    if state is not None:
        (d / STATE).write_text(json.dumps({"gateway_state": "stopped", "pid_hint": 42, **state}))
    if extra:
        (d / "memories").mkdir(exist_ok=True)
        (d / "memories" / "notes.md").write_bytes(os.urandom(64).hex().encode() + b"\n")
        (d / "config.yaml").write_text(f"model: test\nname: {name}\n")
    if user is not None:
        chown_tree(d if name != "default" else home, user)
        if name != "default":
            os.chown(home / "profiles", user.uid, user.gid)
    return d


def chown_tree(path: Path, user: s6env.ServiceUser) -> None:
    for dirpath, dirs, files in os.walk(path):
        for n in [dirpath, *(os.path.join(dirpath, f) for f in dirs + files)]:
            os.lchown(n, user.uid, user.gid)


def set_state(home: Path, name: str, desired: str | None) -> None:
    """Change a profile's desired_state as the operator would (atomically, keeping keys)."""
    d = home if name == "default" else home / "profiles" / name
    path = d / STATE
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = {}
    if desired is None:
        doc.pop("desired_state", None)
    else:
        doc["desired_state"] = desired
    tmp = d / ".test-state.tmp"
    tmp.write_text(json.dumps(doc))
    st = os.stat(d)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def snapshot(home: Path) -> dict[str, tuple]:
    """The user's data under ``home``: relative path -> (kind, mode, uid, content digest).

    Left out: what hermes-tasks owns (``logs/``, ``.trash/``, the stand-in's ``.standin/``,
    stale ``gateway.pid``/``processes.json``, the ownership lock and record, our
    ``*.hermes-tasks.tmp`` temp files, the stand-in's own temp files), and in
    ``gateway_state.json`` the keys we write (``desired_state``/``updated_at``) and those a
    running gateway rewrites itself.
    """
    out: dict[str, tuple] = {}
    home = Path(home)

    def walk(base: Path, prefix: str, top: bool):
        try:
            names = sorted(os.listdir(base))
        except FileNotFoundError:
            return
        for name in names:
            if top and name in OWNED_TOP:
                continue
            if name in OWNED_IN_PROFILE or name.endswith(TMP_SUFFIX) or (
                    name.startswith(".gateway_state_") and name.endswith(".tmp")):
                continue
            path = base / name
            rel = f"{prefix}{name}"
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode, st.st_uid, "")
                walk(path, rel + "/", False)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, st.st_uid, os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                data = path.read_bytes()
                if name == STATE:
                    try:
                        doc = json.loads(data)
                        if isinstance(doc, dict):
                            data = json.dumps({k: v for k, v in doc.items()
                                               if k not in STATE_KEYS_WE_WRITE
                                               and k not in STATE_KEYS_GATEWAY_WRITES},
                                              sort_keys=True).encode()
                            mode = -1  # rewritten by gateway.* with our mode: not user data
                    except (ValueError, RecursionError):
                        pass
                # A live gateway (the service user) rewrites its state file by rename, so
                # that file's owner says who wrote last, not whether user data was kept.
                uid = -1 if name == STATE and mode == -1 else st.st_uid
                out[rel] = ("file", mode, uid, _digest(data))
            else:
                out[rel] = ("other", mode, st.st_uid, "")

    walk(home, "", True)
    return out


def snapshot_dir(path: Path) -> dict[str, tuple]:
    """:func:`snapshot` of one profile directory (keys relative to it, "" for itself)."""
    st = os.lstat(path)
    inner = snapshot(path)
    return {"": ("dir", stat.S_IMODE(st.st_mode), st.st_uid, ""), **inner}


def diff_snapshots(before: dict, after: dict) -> list[str]:
    problems = []
    for rel in sorted(set(before) | set(after)):
        if before.get(rel) != after.get(rel):
            problems.append(f"{rel}: {before.get(rel)} -> {after.get(rel)}")
    return problems


# --------------------------------------------------------------------------- slots


@dataclasses.dataclass
class Expected:
    """What each profile's slot files may hold: every rendering seen so far (old or new)."""

    contents: dict[tuple[str, str], set[bytes]] = dataclasses.field(default_factory=dict)

    def add(self, settings, names) -> None:
        from hermes_tasks.render import Renderer

        r = Renderer(settings)
        for name in names:
            for rel, f in r.gateway(name, True, {"api_server": 1024, "webhook": 1025}).files.items():
                self.contents.setdefault((name, rel), set()).add(any_ports(f.content))


_PORT_LINE = re.compile(rb"^export (API_SERVER_PORT|WEBHOOK_PORT)=[0-9]+$", re.M)


def any_ports(data: bytes) -> bytes:
    """A run script with its port exports made alike (allocations depend on history)."""
    return _PORT_LINE.sub(rb"export \1=PORT", data)


def ports_now(settings) -> dict[str, dict[str, int]]:
    """Each profile's exported ports as reconcile computes them from the volume now
    (read only; the tests' tasks run with a clean environment)."""
    from hermes_tasks import ports, profiles

    found, _ = profiles.discover(settings.hermes_home, lambda _m: None)
    gws = ports.for_settings(settings, [p.name for p in found[1:]], lambda _m: None,
                             write=False, environ={})
    return {name: dict(gw.exports) for name, gw in gws.items()}


MODES = {"type": 0o644, "run": 0o750, "finish": 0o755, "log/run": 0o755}
SKELETON = {"supervise": (stat.S_ISDIR, 0o710), "supervise/control": (stat.S_ISFIFO, 0o620),
            "event": (stat.S_ISDIR, 0o700)}
PRIVATE = {"event"}  # root:root, never the service group's (SPEC §5)


def slot_problems(scandir: Path, gid: int | None, expected: Expected | None = None,
                  names: list[str] | None = None) -> list[str]:
    """Every visible ``gateway-*`` entry must be a complete slot (SPEC §5)."""
    problems = []
    for entry in sorted(names if names is not None else os.listdir(scandir)):
        if not entry.startswith("gateway-"):
            continue
        slot = Path(scandir) / entry
        profile = entry[len("gateway-"):]
        try:
            st = os.lstat(slot)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            problems.append(f"{entry}: not a directory")
            continue
        for rel, mode in MODES.items():
            try:
                fst = os.lstat(slot / rel)
            except FileNotFoundError:
                problems.append(f"{entry}/{rel}: missing")
                continue
            if not stat.S_ISREG(fst.st_mode) or stat.S_IMODE(fst.st_mode) != mode:
                problems.append(f"{entry}/{rel}: mode {oct(fst.st_mode)}")
            data = (slot / rel).read_bytes()
            if expected is not None and (profile, rel) in expected.contents:
                if any_ports(data) not in expected.contents[(profile, rel)]:
                    problems.append(f"{entry}/{rel}: content is no complete rendering "
                                    f"({len(data)} bytes)")
            elif not data:
                problems.append(f"{entry}/{rel}: empty")
            if os.geteuid() == 0 and fst.st_uid != 0:
                problems.append(f"{entry}/{rel}: owned by uid {fst.st_uid}")
        for base in ("", "log/"):
            for rel, (kind, mode) in SKELETON.items():
                try:
                    fst = os.lstat(slot / (base + rel))
                except FileNotFoundError:
                    problems.append(f"{entry}/{base}{rel}: missing")
                    continue
                if not kind(fst.st_mode) or stat.S_IMODE(fst.st_mode) != mode:
                    problems.append(f"{entry}/{base}{rel}: mode {oct(fst.st_mode)}")
                want = (0, 0 if rel in PRIVATE else gid)
                if gid is not None and os.geteuid() == 0 and (fst.st_uid, fst.st_gid) != want:
                    problems.append(f"{entry}/{base}{rel}: owner {fst.st_uid}:{fst.st_gid}")
    return problems


def leftover_dot_entries(scandir: Path) -> list[str]:
    """Dot-entries other than s6-svscan's own and our lock; temp files inside slots."""
    left = [n for n in os.listdir(scandir) if n.startswith(".")
            and n not in s6env.OWN_DOT_ENTRIES]
    for dirpath, _, files in os.walk(scandir):
        left += [os.path.join(dirpath, f) for f in files if f.endswith(TMP_SUFFIX)]
    return sorted(left)


BAD_SVSCAN_WORDS = ("unable to exec", "unable to spawn", "not a FIFO", "unable to start",
                    "No such file or directory", "unable to lock", "Device or resource busy")


# s6-svscan read the name in readdir, then it was renamed away before its stat: a benign
# race of every rename in a scandir under rescans (the entry is simply seen next scan).
BENIGN_SVSCAN = re.compile(r"^s6-svscan: warning: unable to stat [^ ]+: No such file or directory$")


def svscan_log_problems(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if any(w in line for w in BAD_SVSCAN_WORDS) and not BENIGN_SVSCAN.match(line)]


def svscan_benign_races(text: str) -> int:
    return sum(bool(BENIGN_SVSCAN.match(line)) for line in text.splitlines())


def supervision(scandir: Path) -> dict[str, list[s6env.Proc]]:
    """s6-supervise processes by the path (relative to the scandir) they run in."""
    root = str(Path(scandir).resolve())
    out: dict[str, list[s6env.Proc]] = {}
    for p in s6env.processes():
        if p.comm == "s6-supervise" and (p.cwd == root or p.cwd.startswith(root + "/")):
            out.setdefault(p.cwd[len(root) + 1:], []).append(p)
    return out


def children_of(pids: set[int]) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(text[text.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        if ppid in pids:
            found.append(int(entry))
    return found


def supervision_problems(scandir: Path, gid: int | None, expected: Expected | None,
                         settle: float = 2.0, ignore: set[str] = frozenset()) -> list[str]:
    """No supervisor on a staging dir; every supervised slot complete and logged.

    Retired dirs (``.X.old``/``.X.removing``) may still be supervised: their supervisors
    follow the rename until ``-an``. Allows ``settle`` seconds for the rescanner to attach
    a freshly published slot's logger.
    """
    deadline = time.monotonic() + settle
    while True:
        problems = []
        sup = supervision(scandir)
        for rel in sup:
            top = rel.split("/", 1)[0]
            if top.startswith(".") and not top.endswith((".old", ".removing")):
                problems.append(f"supervisor running on staging dir {rel}")
        visible = sorted({rel.split("/", 1)[0] for rel in sup if rel.startswith("gateway-")}
                         - set(ignore))
        problems += slot_problems(scandir, gid, expected, names=visible)
        for top in visible:
            if top in sup and f"{top}/log" not in sup:
                problems.append(f"{top} is supervised without a logger")
        # A gateway's stdout must be the logger pipe, never s6-svscan's own output.
        for top in visible:
            for pid in children_of({p.pid for p in sup.get(top, [])}):
                try:
                    fd1 = os.readlink(f"/proc/{pid}/fd/1")
                except OSError:
                    continue
                if not fd1.startswith("pipe:"):
                    problems.append(f"{top}: process {pid} writes to {fd1}, not to its logger")
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.05)


class Rescanner(threading.Thread):
    """Runs ``s6-svscanctl -a <scandir>`` every ``interval`` seconds until stopped."""

    def __init__(self, scandir: Path, interval: float = 0.004):
        super().__init__(daemon=True)
        self.scandir = str(scandir)
        self.interval = interval
        self.count = 0
        self.failures = 0
        self._halt = threading.Event()

    def run(self) -> None:
        argv = [str(s6env.S6_BIN / "s6-svscanctl"), "-a", self.scandir]
        while not self._halt.is_set():
            rc = subprocess.run(argv, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode
            self.count += 1
            self.failures += rc != 0
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def no_traceback(*texts: str) -> bool:
    return not any("Traceback" in t for t in texts)


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1


def settings_for(sb: s6env.Sandbox, *extra: str):
    """The Settings a ``run_tasks`` call sees (``extra``: more ``key=value`` overrides)."""
    from hermes_tasks import inventory

    args = s6env.inventory_args(sb)
    return inventory.load(None, [*args[1::2], *extra], environ={})


# --------------------------------------------------------------------------- crash points

# Operations after which the world may look different; the driver counts calls to these
# and dies just before the K-th one.
CRASH_OPS = ("rename", "replace", "mkdir", "mkfifo", "unlink", "rmdir", "write", "fsync",
             "chmod", "fchmod", "chown", "fchown", "lchown", "link", "symlink", "ftruncate",
             "truncate", "pwrite")


def _install_crash_hooks(crash_at: int | tuple[str, str], log_path: str | None) -> None:
    """Die just before op number ``crash_at``, or, given ``(prefix, after)``, before the first
    op starting with ``prefix`` once an op naming ``after`` was seen (independent of how many
    other ops a run makes first)."""
    import signal as _signal

    counter = {"n": 0}
    trace = []
    seen = {"after": False}

    def due(what: str) -> bool:
        if isinstance(crash_at, int):
            return counter["n"] == crash_at
        prefix, after = crash_at
        if seen["after"] and what.startswith(prefix):
            return True
        seen["after"] = seen["after"] or after in what
        return False

    def bump(what: str) -> None:
        counter["n"] += 1
        trace.append(what)
        if due(what):
            if log_path:
                with open(log_path, "w") as fh:
                    json.dump({"ops": counter["n"], "trace": trace, "crashed": True}, fh)
            os.kill(os.getpid(), _signal.SIGKILL)

    def wrap(name, fn):
        def hooked(*args, **kwargs):
            target = args[0] if args and isinstance(args[0], (str, bytes)) else ""
            bump(f"{name} {os.fsdecode(target) if target else ''}".strip())
            return fn(*args, **kwargs)
        return hooked

    for name in CRASH_OPS:
        if hasattr(os, name):
            setattr(os, name, wrap(name, getattr(os, name)))
    real_open = os.open

    def hooked_open(path, flags, *args, **kwargs):
        if flags & (os.O_CREAT | os.O_TRUNC):  # plain write opens (FIFO probes) change nothing
            bump(f"open-for-write {os.fsdecode(path)}")
        return real_open(path, flags, *args, **kwargs)

    os.open = hooked_open
    real_run = subprocess.run

    def hooked_run(argv, *args, **kwargs):
        bump("exec " + " ".join(os.path.basename(str(a)) if i == 0 else str(a)
                                for i, a in enumerate(argv[:3])))
        return real_run(argv, *args, **kwargs)

    subprocess.run = hooked_run

    if log_path:
        import atexit

        def done():
            with open(log_path, "w") as fh:
                json.dump({"ops": counter["n"], "trace": trace, "crashed": False}, fh)

        atexit.register(done)


def crash_main(argv: list[str]) -> None:
    """``crash K [--log FILE] -- <hermes-tasks args>``: run the CLI, dying before op K."""
    # K, or PREFIX@AFTER: before the first op starting with PREFIX after one naming AFTER.
    crash_at = int(argv[0]) if argv[0].isdigit() else tuple(argv[0].split("@", 1))
    log_path = None
    rest = argv[1:]
    if rest[:1] == ["--log"]:
        log_path, rest = rest[1], rest[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    sys.path.insert(0, str(TESTS_DIR.parent))
    from hermes_tasks import cli  # imported before hooks: imports are not crash points

    _install_crash_hooks(crash_at, log_path)
    sys.argv = ["hermes-tasks", *rest]
    cli.main(fast_exit=False)  # its atexit hook records the crash points


# --------------------------------------------------------------------------- mounts


class Mount:
    """A tmpfs mounted (as root) on ``path`` for the duration of a ``with`` block.

    ``options`` e.g. ``"size=64k"`` or ``"ro"``. Unmounted by path on exit, lazily if busy.
    """

    def __init__(self, path: Path, options: str = "size=16m"):
        self.path = Path(path)
        self.options = options

    def __enter__(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", self.options, "hermes-tasks-test",
                        str(self.path)], check=True, capture_output=True, text=True)
        return self.path

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True,
                       capture_output=True, text=True)

    def __exit__(self, *exc) -> None:
        if subprocess.run(["umount", str(self.path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


# --------------------------------------------------------------------------- gateway instances

_BTIME: list[float] = []
_TICKS = os.sysconf("SC_CLK_TCK")


def _boot_time() -> float:
    if not _BTIME:
        with open("/proc/stat") as fh:
            _BTIME.append(float(next(line for line in fh if line.startswith("btime")).split()[1]))
    return _BTIME[0]


def instance_alive(event: dict) -> bool:
    """Is the process of this recorded ``start`` event still that process?

    Unlike a bare PID check this survives PID reuse over long runs: the process must be
    alive, not a zombie, a fake-gateway, and have started when the event says it did.
    """
    pid = event["pid"]
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except OSError:
        return False
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] in "ZX" or b"fake-gateway" not in cmdline:
        return False
    started = _boot_time() + int(fields[19]) / _TICKS
    return event["t"] - 5 <= started <= event["t"] + 1.5


def live_instances(home, name: str) -> list[dict]:
    """The recorded ``start`` events of ``name`` whose process is still running."""
    import standin

    return [e for e in standin.starts(home, name) if instance_alive(e)]


def assert_never_overlapping(home, name: str) -> None:
    """No two instances of one profile's gateway ever ran at the same time."""
    import standin

    spans = []
    for e in standin.events(home, name):
        if e["event"] == "start":
            spans.append([e["pid"], e["t"], None, e])
        elif e["event"] in ("stop", "exit"):
            for span in reversed(spans):
                if span[0] == e["pid"] and span[2] is None:
                    span[2] = e["t"]
                    break
    alive = [s for s in spans if s[2] is None and instance_alive(s[3])]
    assert len(alive) <= 1, f"{name}: instances alive together: {[s[0] for s in alive]}"
    for a, b in zip(spans, spans[1:]):
        if a[2] is not None:
            assert a[2] <= b[1], f"{name}: pid {b[0]} started while pid {a[0]} still ran"
        else:
            # no stop record (SIGKILLed, or still alive): it must not be alive now
            assert not instance_alive(a[3]) or a is spans[-1], \
                f"{name}: pid {a[0]} is still alive beside a later instance"


def running_gateways(scandir: Path) -> dict[str, int]:
    """``{slot name: pid}`` of every process a gateway slot's main supervisor runs now.

    s6's own view (the supervisor's child), read from /proc without spawning s6-svstat.
    """
    sup = supervision(scandir)
    by_pid = {p.pid: rel for rel, procs in sup.items() for p in procs
              if rel.startswith("gateway-") and "/" not in rel}
    out = {}
    for pid in children_of(set(by_pid)):
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if fields[0] not in "ZX":
            out[by_pid[int(fields[1])]] = pid
    return out


def settled_up(home, scandir: Path, timeout: float = 15.0) -> set[str]:
    """Profiles whose gateway is up, once each running process has recorded its start."""
    def ready():
        running = running_gateways(scandir)
        names = {slot[len("gateway-"):]: pid for slot, pid in running.items()}
        for name, pid in names.items():
            if pid not in {e["pid"] for e in live_instances(home, name)}:
                return None
        return set(names) or {""}

    return s6env.wait_for(ready, timeout, what="gateways to finish starting") - {""}


if __name__ == "__main__":
    if sys.argv[1:2] == ["crash"]:
        crash_main(sys.argv[2:])
    else:
        raise SystemExit("usage: reliability_kit.py crash K [--log FILE] -- TASK ARGS...")
