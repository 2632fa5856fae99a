"""Waiting until gateways are ready (or down): what ``--wait`` means (SPEC §5, §7, §13.12).

A gateway is ready when s6 has it up and its own ``gateway_state.json`` says ``running``
with the pid s6 supervises (and that process's start time, when recorded). The wait reads
``supervise/status`` and the state file directly, every 25 ms, for one gateway or many at
once: no subprocess per poll and no ``s6-svwait`` (whose event subscription needs a
writable ``event/``, SPEC §5), so it works the same for root and for the service user, and
it returns within a poll of the gateway writing ``running``. s6's own ready flag, set by
``data/check``, counts too; it lags by up to one check interval.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from . import crashloop, records, state, supervision, svstatus
from .profiles import SLOT_PREFIX

READY, DOWN, FAILED, TIMEOUT = "ready", "down", "failed", "timeout"
POLL = 0.025


@records.record(frozen=True)
class Target:
    """One gateway to wait for: its slot directory and where its state file lives."""

    slot: str
    home: str
    profile: str
    # supervise/status as read before the command was sent: a later change is the command's
    before: svstatus.Status | None = None
    # On a shared volume: ready also needs this host's ownership record for that pid (§5).
    host_id: str | None = None
    # When s6 last recorded a death before the command (its death tally): later deaths are
    # the command's; a gateway that dies twice fails the wait at once (SPEC §14.6).
    last_death: float | None = None


@records.record(frozen=True)
class Outcome:
    """How one wait ended. ``result`` is one of READY, DOWN, FAILED, TIMEOUT."""

    result: str
    pid: int | None = None
    exit_code: int | None = None
    signal: str | None = None
    reason: str | None = None  # the gateway's own, from its state file
    detail: str = ""  # one phrase on what was last seen, for FAILED/TIMEOUT

    @property
    def ok(self) -> bool:
        return self.result in (READY, DOWN)

    def describe(self, log: str | None = None, tail: tuple[str, ...] = ()) -> str:
        """One line for a report: what happened, with the gateway's exit code and reason
        (:func:`supervision.failure`'s wording); ``log``/``tail``: its log and last lines."""
        if self.result == READY:
            return f"ready (pid {self.pid})"
        if self.result == DOWN:
            return "down"
        return supervision.failure(self.exit_code, self.signal, self.reason, log, self.detail,
                                   tail)


def snapshot(slot: str) -> svstatus.Status | None:
    """``supervise/status`` now (None when unreadable): take it before sending a command."""
    return supervision.status(slot)


def proc_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (what hermes records as ``start_time``), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
        return int(raw[raw.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _changed(st: svstatus.Status, before: svstatus.Status | None) -> bool:
    """Whether the record moved since ``before`` (a start or an exit after the command)."""
    return before is None or (st.since, st.pid) != (before.since, before.pid)


def _check(t: Target, goal: str, seen_up: bool) -> tuple[Outcome | None, bool, str]:
    """One look at one gateway: (final outcome or None, seen up since, what it is doing)."""
    try:
        st = svstatus.read(t.slot)
    except (OSError, ValueError) as exc:
        return Outcome(FAILED, detail=f"cannot read its s6 status: {exc}"), seen_up, ""
    if st.supervised is False:
        return Outcome(FAILED, detail="not supervised (no s6-supervise listens on it)"), \
            seen_up, ""
    if goal == DOWN:
        if not st.up and not st.finishing:
            return Outcome(DOWN, exit_code=st.exit_code, signal=st.signal), seen_up, ""
        return None, seen_up, f"still up (pid {st.pid})" if st.up else "finishing"
    if st.up:
        doc = None if st.ready else state.read(t.home, t.profile)
        if is_ready(st, t.home, t.profile, t.host_id, doc):
            return Outcome(READY, pid=st.pid), True, ""
        said = doc.gateway_state if doc.pid == st.pid else None
        return None, True, f"up (pid {st.pid}) but not ready" + (
            f" (it says {said})" if said else " (it has not said running yet)")
    moved = seen_up or _changed(st, t.before)
    if moved and not st.wanted_up and not st.finishing:
        doc = state.read(t.home, t.profile)
        hold = crashloop.read_hold(t.slot)
        return Outcome(FAILED, exit_code=st.exit_code, signal=st.signal, reason=doc.reason,
                       detail=hold.text() if hold else supervision.ended(st.exit_code, st.signal)
                       or "went down"), seen_up, ""
    if moved and (st.exit_code is not None or st.signal):
        died = [d for d in crashloop.deaths(t.slot) if t.last_death is None or d[0] > t.last_death]
        if len(died) >= 2:  # a crash loop in the making: no use waiting for the timeout
            doc = state.read(t.home, t.profile)
            return Outcome(FAILED, exit_code=st.exit_code, signal=st.signal, reason=doc.reason,
                           detail=f"exited {len(died)} times since it was started"), \
                seen_up, ""
    if moved and (st.exit_code is not None or st.signal):
        doc = state.read(t.home, t.profile)
        return None, seen_up, "down, restarting; it last " + supervision.failure(
            st.exit_code, st.signal, doc.reason)
    return None, seen_up, "down, not started yet" if st.wanted_up else "down"


def is_ready(st: svstatus.Status, home: str, profile: str, host_id: str | None = None,
             doc: state.GatewayState | None = None) -> bool:
    """The one definition of "ready", for ``--wait`` and ``gateway.status`` (SPEC §14.8).

    Up, and either s6's ready flag (``data/check`` passed) or, since that flag lags by up
    to a check interval, the gateway's own state file saying ``running`` as the supervised
    process (``doc``: that file, when already read). ``host_id`` (shared volume only):
    this host's owner record must hold the profile for that pid too.
    """
    if not st.up or st.pid is None:
        return False
    if st.ready:
        return True
    doc = state.read(home, profile) if doc is None else doc
    return doc.is_running_pid(st.pid, proc_start_time(st.pid)) and _owns(
        home, profile, host_id, st.pid)


def _owns(home: str, profile: str, host_id: str | None, pid: int | None) -> bool:
    """On a shared volume, whether this host's record owns the profile for ``pid``."""
    if host_id is None:
        return True
    from .ownership import read_owner

    record = read_owner(home, profile)
    return bool(record and record["host_id"] == host_id and record["pid"] == pid)


def wait(targets: Iterable[Target], goal: str, timeout: float,
         poll: float = POLL) -> list[Outcome]:
    """Wait for every target to reach ``goal`` (READY or DOWN); one outcome per target.

    READY: up with the gateway saying running as the supervised process. A gateway that
    goes down and stays down (its ``finish`` refused a restart: exit 0 or 78) is FAILED
    with its exit code and the reason from its state file; one that s6 restarts is waited
    for. DOWN: s6 reports it down. Whatever is still pending at ``timeout`` seconds is
    TIMEOUT with what was last seen. Never raises.
    """
    targets = list(targets)
    outcomes: list[Outcome | None] = [None] * len(targets)
    seen = [False] * len(targets)
    doing = [""] * len(targets)

    def settled() -> bool:
        for i, t in enumerate(targets):
            if outcomes[i] is None:
                outcomes[i], seen[i], doing[i] = _check(t, goal, seen[i])
        return all(o is not None for o in outcomes)

    if supervision.wait_until(settled, timeout, poll):
        return outcomes  # type: ignore[return-value]
    word = "ready" if goal == READY else "down"
    return [o if o is not None else
            Outcome(TIMEOUT, detail=f"not {word} after {timeout:g} s: {doing[i] or 'no change'}")
            for i, o in enumerate(outcomes)]


def target(slot: str, home: str, profile: str) -> Target:
    """A :class:`Target` with its status snapshot taken now (call before the command)."""
    if not os.path.isdir(slot):
        return Target(slot, home, profile, None)
    return Target(slot, home, profile, snapshot(slot), last_death=crashloop.newest_death(slot)
                  or 0.0)


# -- --wait for the executor: the slots it just signalled ----------------------------------

QUOTED_LINES = 3


def targets(paths: list[str], home: str) -> dict[str, Target]:
    """Each gateway slot's :class:`Target` (path -> Target), taken just before it is
    signalled (see :func:`settle`)."""
    return {path: target(path, home, _profile(path)) for path in paths}


def settle(paths: list[str], goal: str, timeout: float, settings,
           before: dict[str, Target]) -> dict[str, str]:
    """``--wait``: until each gateway is ready (``goal`` "up") or down; {path: why not}.

    Ready is :func:`is_ready` (SPEC §5): s6 has it up and the gateway says ``running`` as
    that process (on a shared volume, with this host's ownership record). A gateway that
    exits after it was told to come up (a change since its :func:`targets` snapshot) and
    stays down fails at once with its exit code, its own reason, its log and the log's
    last lines (:func:`supervision.failure`). Standbys (SPEC §13.1) are not passed here:
    the plan marks them (``Step.standby``, from ``facts.owners``).
    """
    from . import logs

    home = settings.hermes_home
    owner = settings.host_id if settings.shared_volume else None
    chosen = [records.replace(before.get(p) or target(p, home, _profile(p)),
                                  host_id=owner) for p in paths]
    outcomes = wait(chosen, READY if goal == "up" else DOWN, timeout)
    failures = {}
    for path, outcome in zip(paths, outcomes, strict=True):
        if not outcome.ok:
            parts = logs.directory(_profile(path), settings.host_id, settings.shared_volume)
            failures[path] = outcome.describe(logs.current(home, parts),
                                              tuple(logs.tail(home, parts, QUOTED_LINES)))
    return failures


def _profile(path: str) -> str:
    return os.path.basename(path).removeprefix(SLOT_PREFIX)
