"""Gateways another host runs (SPEC §14.3): ask its agent, and with --wait, see it act.

On a shared volume a gateway runs on the host whose ``data/own`` holds the profile's
ownership lock. ``gateway.stop`` elsewhere records ``desired_state`` (the plan does); a
``gateway.restart`` records a one-shot request (:data:`ownership.RESTART_REQUEST`) that the
owner's agent consumes. Either takes effect within the owner's ``watch_interval``; --wait
watches the volume until it did (or fails with what was last seen).
"""

from __future__ import annotations

import json
import os
import time

from .. import fsops, ownership, profiles, state, supervision
from ..changes import AskOwner

POLL = 0.1


def ask(settings, steps, errors: dict[str, str]) -> None:
    """Record each step's restart request in its profile directory (the service user's)."""
    for step in steps:
        if not _restart(step) or step.slot in errors:
            continue
        data = json.dumps({"by": settings.host_id, "at": time.time()}).encode() + b"\n"
        try:
            with fsops.opened_dir(settings.hermes_home,
                                  profiles.profile_parts(step.profile)) as dfd:
                fsops.write_atomic(dfd, ownership.RESTART_REQUEST, data, 0o644,
                                   owner=(settings.service_uid, settings.service_gid),
                                   durable=False)
        except OSError as exc:
            errors[step.slot] = (f"could not record the restart request for "
                                 f"{_owner(step)}: {exc.strerror or exc}")


def snapshot(settings, steps) -> dict[str, dict | None]:
    """Each asked-of gateway's owner record before asking (a restart must change it)."""
    return {s.slot: ownership.read_owner(settings.hermes_home, s.profile)
            for s in steps if _owner(s)}


def settle(settings, steps, before: dict, timeout: float, errors: dict[str, str],
           notes: dict[str, list[str]]) -> None:
    """--wait: until each owner acted — a stopped gateway let go of the ownership lock, a
    restarted one consumed the request and runs again as a new process — or the timeout."""
    home = settings.hermes_home
    pending = [s for s in steps if _owner(s) and s.slot not in errors]

    def acted(step) -> bool:
        record = _acted(home, step, before.get(step.slot), settings.host_id)
        if record is None:
            return False
        notes.setdefault(step.slot, []).append(
            f"{_owner(step)} restarted it: now pid {record['pid']} on "
            f"{record['host_id']}" if _restart(step) else f"{_owner(step)} stopped it")
        return True

    pending = supervision.wait_all(pending, acted, timeout, POLL)
    for step in pending:
        if _restart(step):
            seen = ("the request is still on record" if _requested(home, step.profile)
                    else "it took the request but runs no new gateway yet")
        else:
            seen = "its gateway still holds the profile"
        errors[step.slot] = (f"{_owner(step)} did not act within {timeout:g} s: {seen} (is its "
                             "agent running, with watch_interval above 0?)")


def _requested(home: str, profile: str) -> bool:
    """Whether the profile's restart request is still on record (not yet consumed)."""
    try:
        with fsops.opened_dir(home, profiles.profile_parts(profile)) as dfd:
            os.stat(ownership.RESTART_REQUEST, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return False
    return True


def _acted(home: str, step, before: dict | None, me: str) -> dict | None:
    """The owner record once the owner acted (a stop: the last one seen), else None."""
    record = ownership.read_owner(home, step.profile)
    if not _restart(step):  # stop: the gateway there is gone (the lock is free)
        if ownership.held_elsewhere(home, step.profile, me, True) is None:  # shared only
            return record or {}
        return None
    if _requested(home, step.profile):
        return None
    if record is None or record == before or record["pid"] is None:
        return None
    return record if state.read(home, step.profile).is_running_pid(record["pid"]) else None


def _owner(step) -> str | None:
    """The host that runs the step's gateway and is asked to act (SPEC §14.3), or None."""
    asked = step.get(AskOwner)
    return asked.host if asked else None


def _restart(step) -> bool:
    asked = step.get(AskOwner)
    return bool(asked and asked.restart)
