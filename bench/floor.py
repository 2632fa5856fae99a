"""The floor: only the file operations a run cannot avoid (issues 7 and 24).

Usage: python bench/floor.py [--rerun | --status] HERMES_HOME SCANDIR

Default, the floor of a boot into an empty scandir (publish every slot):

Lists the profiles (a directory with SOUL.md; ``gateway_state.json`` says whether it
starts), then for each slot: mkdir a dot-staging dir, write run/finish/type (+down),
notification-fd, mkdir data, write data/check and data/own, mkdir log, write log/run,
pre-seed supervise/ + supervise/control + event/ (and under log/), rename into place. No
templates, no checks, no locking, no boot log. The slot has the same shape and modes as the
one hermes-tasks publishes (SPEC §5).

``--rerun``, the floor of an unchanged re-run (the scandir as a boot left it): the reads a
re-run cannot avoid to know that nothing changed, and no write. List the profiles; through
each profile's directory fd stat ``SOUL.md`` and read ``gateway_state.json``, ``.env`` and
``config.yaml`` (what the slot's content and ports depend on); list the scandir (a slot
that is no longer wanted); through each slot's directory fd stat each of its files,
directories and FIFOs once (content, modes and the skeleton's owners, SPEC §5) and read
``supervise/status`` (is it up). No cache, no lock, no boot log, no report.

``--status``, the floor of ``gateway.status``: for each profile, its state file, port files
and ``supervise/status`` read as above, and one printed line per profile.

With ``HERMES_BENCH_FLOOR_PHASES`` naming a file, the time spent in each of bench/phases.py's
phases is written there as JSON (bench/phases.py puts the floor next to each phase).
"""

import time

_FIRST = time.monotonic()  # bench/phases.py: the interpreter's start ends here

import os  # noqa: E402
import sys  # noqa: E402

_SPENT: dict = {}
_NOW = [time.perf_counter(), "other"]


def phase(name: str) -> None:
    """From now on time is bench/phases.py's phase ``name`` (a few calls per slot: ~0.1 µs)."""
    now = time.perf_counter()
    _SPENT[_NOW[1]] = _SPENT.get(_NOW[1], 0.0) + now - _NOW[0]
    _NOW[:] = [now, name]

IS_ROOT = os.geteuid() == 0
GID = 10000  # service_gid: group of the shared skeleton when run as root
RUN = ("#!/usr/bin/with-contenv sh\n# shellcheck shell=sh\n# {slot}\nexec 2>&1\n"
       'if [ -z "${{HERMES_HOME:-}}" ]; then\n  HERMES_HOME={home}\nfi\nexport HERMES_HOME\n'
       'HOME=$HERMES_HOME\nexport HOME\ncd "$HERMES_HOME" || exit 111\n'
       "export HERMES_S6_SUPERVISED_CHILD=1\nexport HERMES_SUPERVISED_CHILD=1\n"
       "exec hermes{p} gateway run --replace\n")
LOG_RUN = ("#!/usr/bin/with-contenv sh\n# shellcheck shell=sh\nexec 2>&1\n"
           'if [ -z "${{HERMES_HOME:-}}" ]; then\n  HERMES_HOME={home}\nfi\n'
           'log_dir="$HERMES_HOME/logs/gateways/"{name}\nmkdir -p "$log_dir" || exit 111\n'
           'exec /usr/bin/s6-log 1 n10 s1000000 T "$log_dir"\n')
# Readiness check (SPEC §5): the real one's size, so the floor writes as many bytes.
CHECK = ("#!/bin/sh\n# shellcheck shell=sh\n# {slot}/data/check\n" + "#" * 71 + "\n") * 16
OWN = b'#!/bin/sh\n# shellcheck shell=sh\n# the ownership wrapper, in short\nexec "$@"\n'
FINISH = (b'#!/bin/sh\n# shellcheck shell=sh\ncase "${1:-}" in\n  78) exit 125 ;;\n'
          b"  0) exit 125 ;;\n  *) exit 0 ;;\nesac\n")


def write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.write(fd, data)
    os.close(fd)


def node(path: str, mode: int, make, shared: bool = True) -> None:
    make(path, mode)
    if IS_ROOT and shared:
        os.chown(path, 0, GID)
    if mode & 0o7000:
        os.chmod(path, mode)  # mkdir drops setgid


def skeleton(base: str) -> None:
    node(base + "/supervise", 0o710, os.mkdir)
    node(base + "/supervise/control", 0o620, os.mkfifo)
    node(base + "/event", 0o700, os.mkdir, shared=False)  # root's alone (SPEC §5)


def autostart(profile_dir: str) -> bool:
    import json  # only the fresh floor parses state files

    try:
        with open(profile_dir + "/gateway_state.json", "rb") as fh:
            return json.load(fh).get("desired_state") == "running"
    except (OSError, ValueError):
        return False


def profile_dirs(home: str) -> list[tuple[str, str]]:
    profiles = [("default", home)]
    try:
        names = sorted(os.listdir(home + "/profiles"))
    except FileNotFoundError:
        names = []
    return profiles + [(n, f"{home}/profiles/{n}") for n in names
                       if os.path.isfile(f"{home}/profiles/{n}/SOUL.md")]


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# Every entry of a published slot (bench/floor.py's own fresh slots have the same shape).
SLOT_ENTRIES = ("run", "finish", "type", "notification-fd", "down", "data", "data/check",
                "data/own", "log", "log/run", "supervise", "supervise/control", "event",
                "log/supervise", "log/supervise/control", "log/event")


def read_at(dfd: int, name: str) -> bytes | None:
    """One small file through a directory fd: open, read, close (None if absent)."""
    try:
        fd = os.open(name, _FILE, dir_fd=dfd)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def profile_facts(home: str, name: str, pdir: str, soul: bool = True) -> bytes | None:
    """What a re-run must read of a profile; its state file's bytes."""
    phase("profile discovery")
    dfd = os.open(pdir, _DIR)
    try:
        if soul:
            os.stat("SOUL.md", dir_fd=dfd, follow_symlinks=False)
        state = read_at(dfd, "gateway_state.json")
        phase("ports")
        read_at(dfd, ".env")
        read_at(dfd, "config.yaml")
        return state
    finally:
        os.close(dfd)


def slot_facts(path: str) -> bytes | None:
    """Stat every entry of a slot once; its ``supervise/status`` bytes."""
    phase("reading slots/runtime")
    dfd = os.open(path, _DIR)
    try:
        os.fstat(dfd)
        for rel in SLOT_ENTRIES:
            try:
                os.stat(rel, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                pass
        return read_at(dfd, "supervise/status")
    finally:
        os.close(dfd)


def rerun(home: str, scandir: str) -> None:
    phase("profile discovery")
    for name, pdir in profile_dirs(home):
        profile_facts(home, name, pdir)
    phase("reading slots/runtime")
    for slot in sorted(os.listdir(scandir)):
        if slot.startswith("gateway-"):
            slot_facts(f"{scandir}/{slot}")


def status(home: str, scandir: str) -> None:
    lines = []
    phase("profile discovery")
    for name, pdir in profile_dirs(home):
        state = profile_facts(home, name, pdir, soul=False)
        try:
            raw = slot_facts(f"{scandir}/gateway-{name}")
        except FileNotFoundError:
            raw = None
        # supervise/status: 12-byte stamp, 12-byte ready stamp, 8-byte pid (big-endian), ...
        pid = int.from_bytes(raw[24:32], "big") if raw and len(raw) >= 35 else 0
        phase("boot log + report")
        lines.append(f"{name}\t{len(state or b'')}\t{f'up pid {pid}' if pid else 'down'}\n")
    sys.stdout.write("".join(lines))


def main(home: str, scandir: str) -> None:
    os.umask(0)
    phase("profile discovery")
    for name, pdir in profile_dirs(home):
        phase("execute")
        slot = "gateway-" + name
        tmp = f"{scandir}/.{slot}.tmp"
        os.mkdir(tmp, 0o755)
        p = "" if name == "default" else " -p " + name
        write(tmp + "/run", RUN.format(slot=slot, home=home, p=p).encode(), 0o750)
        if IS_ROOT:
            os.chown(tmp + "/run", 0, GID)  # it holds extra_env: the service group's to read
        write(tmp + "/finish", FINISH, 0o755)
        write(tmp + "/type", b"longrun\n", 0o644)
        write(tmp + "/notification-fd", b"3\n", 0o644)
        os.mkdir(tmp + "/data", 0o755)
        write(tmp + "/data/check", CHECK.format(slot=slot).encode(), 0o755)
        write(tmp + "/data/own", OWN, 0o755)
        phase("profile discovery")
        up = autostart(pdir)
        phase("execute")
        if not up:
            write(tmp + "/down", b"", 0o644)
        os.mkdir(tmp + "/log", 0o755)
        write(tmp + "/log/run", LOG_RUN.format(home=home, name=name).encode(), 0o755)
        skeleton(tmp)
        skeleton(tmp + "/log")
        os.rename(tmp, f"{scandir}/{slot}")


def write_phases(path: str) -> None:
    """bench/phases.py's view of this run: the interpreter's start, each phase, the end."""
    import json

    phase("other")
    doc = {"start": _FIRST - float(os.environ.get("HERMES_BENCH_PHASES_T0", _FIRST)),
           "spent": _SPENT}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    with open(path + ".end", "w", encoding="utf-8") as fh:
        fh.write(repr(time.monotonic()))


if __name__ == "__main__":
    phase("other")
    if sys.argv[1] in ("--rerun", "--status"):
        (rerun if sys.argv[1] == "--rerun" else status)(*sys.argv[2:4])
    else:
        main(*sys.argv[1:3])
    if os.environ.get("HERMES_BENCH_FLOOR_PHASES"):
        write_phases(os.environ["HERMES_BENCH_FLOOR_PHASES"])
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown: a floor skips what it can (ours does too)
