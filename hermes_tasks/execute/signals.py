"""Bringing many gateways down and up at once: signal all, wait once (SPEC §6 batching).

Works for root and for the service user alike: it only writes control FIFOs through
``s6-svc`` and polls ``supervise/status`` (the service user never uses ``event/``, §5).
"""

from __future__ import annotations

import dataclasses
import os
import time

from .. import crashloop, svstatus
from ..profiles import SLOT_PREFIX
from ..s6 import S6, NotSupervised, PermissionDenied, S6Error

POLL = 0.02
DOWN_TIMEOUT = 10.0


def _status(path: str) -> svstatus.Status | None:
    try:
        return svstatus.read(path)
    except (OSError, ValueError):
        return None


def down(s6: S6, paths: list[str], flag: str = "-d", timeout: float = DOWN_TIMEOUT
         ) -> dict[str, str]:
    """Tell every slot to go down, wait for all of them once; SIGKILL what ignores SIGTERM.

    Returns {path: error} for the slots s6 refused or that never went down. What is waited
    for is the process that ran when it was told: one that another task replaced meanwhile
    (a new slot directory at the same path, or a new gateway process that another task
    started again) is not ours to wait for, nor to kill.
    """
    told = {p: (_identity(p), _pid(p)) for p in paths}

    def done(path: str) -> bool:
        ident, pid = told[path]
        if _identity(path) != ident:
            return True
        st = _status(path)
        if st is None or not (st.up or st.finishing):
            return True
        return pid is not None and st.up and st.pid != pid

    errors = tell(s6, paths, flag)
    pending = _wait([p for p in paths if p not in errors], done, timeout)
    # a daemon ignoring SIGTERM: the change must still happen
    errors.update(tell(s6, [p for p in pending if not done(p)], "-k"))
    for path in _wait([p for p in pending if p not in errors], done, timeout):
        errors[path] = f"{path}: still up {2 * timeout:g} s after it was told to stop"
    return errors


def _pid(path: str) -> int | None:
    st = _status(path)
    return st.pid if st is not None and st.up else None


def _identity(path: str) -> tuple[int, int] | None:
    """Which directory ``path`` is now (s6 follows a symlinked slot, so do we)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def up(s6: S6, paths: list[str], flag: str = "-u") -> dict[str, str]:
    """Tell every slot to come up (no wait); {path: error} for those s6 refused.

    A crash-loop hold is lifted first (SPEC §14.6): the deaths so far no longer count.
    """
    for path in paths:
        crashloop.clear(path)
    return tell(s6, paths, flag)


def tell(s6: S6, paths: list[str], flag: str) -> dict[str, str]:
    """``s6-svc <flag>`` to each slot; {path: error} for those s6 refused."""
    errors: dict[str, str] = {}
    for path in paths:
        try:
            s6.svc(path, flag)
        except S6Error as exc:
            errors[path] = explain(exc, path)
    return errors


def explain(exc: S6Error, path: str) -> str:
    """One line: which gateway, what s6 said, and what to do about it."""
    slot = os.path.basename(path)
    if isinstance(exc, PermissionDenied):
        return (f"{slot}: permission denied by s6 ({exc}): run this as root or as the service "
                "user; `hermes-tasks reconcile` as root repairs the shared control FIFOs")
    if isinstance(exc, NotSupervised):
        return (f"{slot} is not supervised: no s6-supervise listens on it (is s6-svscan "
                "running? run `hermes-tasks reconcile` as root, then retry)")
    return f"{slot}: {exc}" if slot not in str(exc) else str(exc)


def _wait(paths: list[str], done, timeout: float) -> list[str]:
    """Poll until ``done(path)`` for every path or the timeout; return the ones not done."""
    deadline = time.monotonic() + timeout
    pending = list(paths)
    while pending:
        pending = [p for p in pending if not done(p)]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(POLL)
    return pending


def supervised(paths: list[str], timeout: float) -> list[str]:
    """Wait until each slot has a live supervisor that wrote its status; return the others."""
    def ok(path: str) -> bool:
        return (os.path.exists(os.path.join(path, "supervise", "status"))
                and S6.supervised(path) is not False)
    return _wait(paths, ok, timeout)


def supervised_progress(paths: list[str], stall: float, overall: float) -> list[str]:
    """Like :func:`supervised`, but waiting as long as s6-svscan keeps making progress
    (SPEC §14.7): it gives up on the rest once no further slot got a supervisor for
    ``stall`` seconds, or at ``overall`` seconds in all. Returns the slots not supervised.

    Many slots published at once (450 gateways at boot) take s6-svscan a while; a fixed
    bound failed slots that were supervised seconds later.
    """
    def ok(path: str) -> bool:
        return (os.path.exists(os.path.join(path, "supervise", "status"))
                and S6.supervised(path) is not False)

    start = time.monotonic()
    pending = list(paths)
    while pending:
        left = overall - (time.monotonic() - start)
        if left <= 0:
            break
        before = len(pending)
        pending = _wait(pending, ok, min(stall, left))
        if len(pending) == before:  # nothing new within the stall window
            break
    return pending


def snapshot(paths: list[str], home: str) -> dict:
    """Each gateway slot's readiness target (path -> readiness.Target), taken just before it
    is signalled (see :func:`wait`)."""
    from .. import readiness  # only when something comes up: not on an unchanged run

    return {path: readiness.target(path, home, _profile(path)) for path in paths}


def wait(paths: list[str], goal: str, timeout: float, settings,
         before: dict) -> dict[str, str]:
    """``--wait``: until each gateway is ready (``goal`` "up") or down; {path: why not}.

    Ready is :mod:`readiness`'s (SPEC §5): s6 has it up and the gateway says ``running`` as
    that process (on a shared volume, with this host's ownership record). A gateway that
    exits after it was told to come up (a change since its :func:`snapshot`) and stays down
    fails at once with its exit code and its own reason. Standbys (SPEC §13.1) are not
    passed here: the plan marks them (``Step.standby``, from ``facts.owners``).
    """
    from .. import readiness

    home = settings.hermes_home
    owner = settings.host_id if settings.shared_volume else None
    targets = [dataclasses.replace(before.get(p) or readiness.target(p, home, _profile(p)),
                                   host_id=owner) for p in paths]
    outcomes = readiness.wait(targets, readiness.READY if goal == "up" else readiness.DOWN,
                              timeout)
    failures = {}
    for path, outcome in zip(paths, outcomes, strict=True):
        if not outcome.ok:
            failures[path] = f"{outcome.describe()} (see {log_file(settings, _profile(path))})" \
                + _quoted_log(settings, _profile(path))
    return failures


QUOTED_LINES = 3


def _quoted_log(settings, profile: str) -> str:
    """The log's last lines, for a failed ``--wait`` row (one line: `` | `` between them)."""
    from .. import logs

    parts = logs.directory(profile, settings.host_id, settings.shared_volume)
    lines = logs.tail(settings.hermes_home, parts, QUOTED_LINES)
    return f"; last log lines: {' | '.join(lines)}" if lines else ""


def log_file(settings, profile: str) -> str:
    """Where the gateway's logger writes (templates/gateway/log/run.j2)."""
    parts = [settings.hermes_home, "logs", "gateways", profile]
    if settings.shared_volume:
        parts.append(settings.host_id)
    return os.path.join(*parts, "current")


def _profile(path: str) -> str:
    return os.path.basename(path).removeprefix(SLOT_PREFIX)
