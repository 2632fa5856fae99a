"""The container's role and switches, as hermes-agent 0.19.0's image reads them (SPEC §15).

Facts about the container, not settings: its command (PID 1's argv, or under s6-overlay v3
the process that carries the main wrapper) and a few variables of its environment. Read
bounded; nothing here writes (the boot's seeding is :func:`seed_root_state`).

* command ``dashboard …`` → the boot publishes no gateway slot (upstream saw duplicate bots
  and ``logs/gateways/<p>/lock`` "Resource busy" storms from a second container);
* ``gateway run …`` (the pre-s6 command) without ``--no-supervise`` and without
  ``HERMES_GATEWAY_NO_SUPERVISE`` → the root ``gateway_state.json`` is seeded ``running``
  when there is none (``migrated_from: legacy-container-cmd``);
* ``HERMES_GATEWAY_BOOTSTRAP_STATE=running`` → the same seed on a fresh volume;
* ``GATEWAY_MULTIPLEX_PROFILES`` truthy → the default gateway serves every profile, named
  slots are registered down.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence

WRAPPER = "main-wrapper.sh"  # the image's main program (docker/main-wrapper.sh)
TRUTHY = ("1", "true", "yes", "on")  # hermes's utils.TRUTHY_STRINGS
_CMDLINE_LIMIT = 64 * 1024
_SCAN_LIMIT = 4096  # processes looked at for the v3 wrapper: a container has a handful

SUPERVISOR, DASHBOARD, LEGACY, OTHER = "supervisor", "dashboard", "gateway-run", "other"
MIGRATED_FROM = "legacy-container-cmd"


def truthy(value: str | None) -> bool:
    """hermes's rule: 1/true/yes/on, case-insensitive, trimmed; blank or unset is off."""
    return value is not None and value.strip().lower() in TRUTHY


def multiplex(env: Mapping[str, str] = os.environ) -> bool:
    return truthy(env.get("GATEWAY_MULTIPLEX_PROFILES"))


def _cmdline(path: str) -> tuple[str, ...] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, _CMDLINE_LIMIT)
    except OSError:
        return None
    finally:
        os.close(fd)
    return tuple(p.decode("utf-8", "replace") for p in raw.split(b"\0") if p)


def _has_wrapper(argv: Sequence[str]) -> bool:
    return any(os.path.basename(a) == WRAPPER for a in argv)


def _trusted(path: str) -> bool:
    """Whether the process behind ``/proc/<pid>`` runs as root or as us (the directory's
    owner is its effective uid): as root, the service user's processes may name the wrapper
    too; an unprivileged container (``--user``) has one user for everything."""
    try:
        return os.stat(path).st_uid in (0, os.geteuid())
    except OSError:
        return False


def read_argv(proc: str = "/proc") -> tuple[str, ...]:
    """The container's command line: PID 1's when it carries the wrapper (s6-overlay v2,
    ``/init … main-wrapper.sh …``), else the first root process that does (v3: PID 1 is
    s6-svscan and ``rc.init top … main-wrapper.sh …``, root's, runs the command), else
    PID 1's. A process of the service user naming the wrapper (``sh -c '… main-wrapper.sh
    dashboard'``) must not turn the container into a dashboard."""
    first = _cmdline(f"{proc}/1/cmdline") or ()
    if _has_wrapper(first):
        return first
    try:
        pids = sorted(int(n) for n in os.listdir(proc) if n.isdigit())[:_SCAN_LIMIT]
    except OSError:
        pids = []
    for pid in pids:
        if pid == 1 or not _trusted(f"{proc}/{pid}"):
            continue
        argv = _cmdline(f"{proc}/{pid}/cmdline")
        if argv and _has_wrapper(argv):
            return argv
    return first


def command(argv: Sequence[str]) -> list[str]:
    """The hermes arguments of the container's command: everything after the wrapper (or a
    bare ``init``), without a leading ``hermes`` (the wrapper runs ``hermes "$@"``)."""
    args = list(argv)
    at = next((i for i, a in enumerate(args) if os.path.basename(a) == WRAPPER), None)
    if at is not None:
        args = args[at + 1:]
    elif args and os.path.basename(args[0]) == "init":
        args = args[1:]
    else:
        return []  # not the image's command line (a plain host or another init)
    if args and os.path.basename(args[0]) == "hermes":
        args = args[1:]
    return args


def role(argv: Sequence[str], env: Mapping[str, str] = os.environ) -> str:
    """supervisor (no command), dashboard, gateway-run (the legacy command, to be
    migrated), or other (``gateway run --no-supervise``, any other command)."""
    args = command(argv)
    if not args:
        return SUPERVISOR
    if args[0] == "dashboard":
        return DASHBOARD
    if args[:2] == ["gateway", "run"]:
        if "--no-supervise" in args or truthy(env.get("HERMES_GATEWAY_NO_SUPERVISE")):
            return OTHER
        return LEGACY
    return OTHER


def seed(role_: str, env: Mapping[str, str] = os.environ) -> dict | None:
    """The root ``gateway_state.json`` to create when there is none, or None."""
    now = int(time.time())
    if role_ == LEGACY:
        return {"gateway_state": "running", "desired_state": "running", "timestamp": now,
                "migrated_from": MIGRATED_FROM}
    if (env.get("HERMES_GATEWAY_BOOTSTRAP_STATE") or "").strip().lower() == "running":
        return {"gateway_state": "running", "desired_state": "running", "timestamp": now}
    return None


def seed_root_state(home: str, doc: dict, owner: tuple[int, int]) -> bool:
    """Create ``<home>/gateway_state.json`` holding ``doc`` unless any entry has that name
    (an existing file always wins); never through a symlink, owned by ``owner`` when root
    creates it. Returns whether it was created."""
    from . import fsops
    from .state import STATE_FILE

    data = (json.dumps(doc, separators=(",", ":")) + "\n").encode()
    with fsops.opened_dir(home) as dfd:
        return fsops.write_exclusive(dfd, STATE_FILE, data, 0o644, owner=owner)


def prepare_boot(settings, warn, proc: str = "/proc", env: Mapping[str, str] = os.environ,
                 out=None) -> bool:
    """The boot's container step, before reconcile: False when this container publishes no
    gateway slot at all (a dashboard); else seed the root state its command or
    ``HERMES_GATEWAY_BOOTSTRAP_STATE`` asks for (an existing file always wins)."""
    import sys

    from .profiles import escape

    out = out or sys.stdout
    role_ = role(read_argv(proc), env)
    if role_ == DASHBOARD:
        out.write("hermes-tasks-boot: dashboard container: no gateway slot published "
                  "(the gateway container on this volume runs the gateways)\n")
        return False
    doc = seed(role_, env)
    if doc is None:
        return True
    why = ("the legacy `gateway run` container command" if role_ == LEGACY
           else "HERMES_GATEWAY_BOOTSTRAP_STATE=running")
    home = settings.hermes_home
    try:
        created = seed_root_state(home, doc, (settings.service_uid, settings.service_gid))
    except OSError as exc:
        warn(f"could not seed {escape(os.path.join(home, 'gateway_state.json'))} ({why}): "
             f"{exc.strerror or exc}")
        return True
    if created:
        out.write(f"hermes-tasks-boot: seeded {escape(home)}/gateway_state.json with "
                  f"desired_state running ({why})\n")
    return True
