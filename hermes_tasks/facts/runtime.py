"""What runs: a slot's s6 status and the gateway's own report, read without a process per slot.

``supervise/status`` is read directly (:mod:`svstatus`); the gateway's own
``gateway_state.json`` says why it stopped (``exit_reason``, platform ``error_message``).
"""

from __future__ import annotations

import os

from .. import crashloop, records, state, supervision, svstatus
from ..profiles import profile_parts

# finish turns these into "stay down" (exit 125): reconcile reports them, never restarts them.
KEPT_DOWN = (0, 78)


@records.record(frozen=True)
class Runtime:
    """One gateway as s6 and the gateway itself report it."""

    status: svstatus.Status
    reason: str = ""  # from gateway_state.json (state.GatewayState.reason)
    logger: str = ""  # why the slot's logger cannot start (empty when it runs or may)
    # finish holds it down after a crash loop (SPEC §14.6); None when not held
    hold: crashloop.Hold | None = None
    # the profile's .env/config.yaml changed since the hold: the next reconcile lifts it
    hold_lifted: bool = False
    log_tail: tuple[str, ...] = ()  # the gateway log's last lines, when held

    @property
    def held(self) -> bool:
        """Held down by its finish after a crash loop (and not brought up since)."""
        st = self.status
        return (self.hold is not None and st.supervised is not False and not st.up
                and not st.wanted_up and not st.finishing)

    def hold_text(self) -> str:
        """``crash loop: 5 exits in 60 s, last exit 1; last log lines: …`` for a failed row."""
        return supervision.failure(None, None, what=self.hold.text() if self.hold else "",
                                   tail=self.log_tail)

    @property
    def supervised(self) -> bool | None:
        return self.status.supervised

    @property
    def up(self) -> bool:
        return self.status.running

    @property
    def exited(self) -> bool:
        """Down because it exited 0 or 78 and ``finish`` kept it down (not told by s6).

        A slot with a ``down`` marker that never ran reads "exit 0" too: only a normally-up
        slot (no marker) counts.
        """
        st = self.status
        return (st.supervised is not False and not st.up and not st.wanted_up
                and st.normally_up and not st.finishing and st.exit_code in KEPT_DOWN)

    def exit_text(self) -> str:
        """``exited 78: <reason>`` for a failed row (:func:`supervision.failure`)."""
        return supervision.failure(self.status.exit_code, None, self.reason)


NOT_SUPERVISED = Runtime(svstatus.Status(supervised=False))


def read(slot_path: str, home: str, profile: str | None, dir_fd: int | None = None,
         down: bool | None = None, staying_down: bool = False) -> Runtime:
    """The runtime facts of the slot at ``slot_path``; ``profile`` (below ``home``) for the
    gateway's reason. ``dir_fd``: the slot's directory, already open; ``down``: whether
    it has a down marker, when just seen.

    ``staying_down``: the plan keeps this gateway down (its rendered slot has a down
    marker), so only whether it runs matters: the exit reason and the crash-loop hold,
    which explain why a gateway that should run does not, are not read (no reason, no
    hold). A status the caller may not read counts as "cannot tell" (supervised None).
    """
    try:
        status = svstatus.read(slot_path, dir_fd, down)
    except (PermissionError, ValueError):
        status = svstatus.Status(supervised=None)
    except FileNotFoundError:
        return NOT_SUPERVISED
    reason = ""
    if staying_down:
        logger = logger_problem(slot_path) if status.supervised and profile is not None else ""
        return Runtime(status, reason, logger)
    if profile is not None and not status.running and status.exit_code in KEPT_DOWN:
        reason = state.read(home, profile).reason or ""
    hold = None
    lifted = False
    if not status.running and not status.wanted_up:
        hold = crashloop.read_hold(slot_path, dir_fd)
        if hold is not None and profile is not None:
            lifted = crashloop.files_changed(home, profile_parts(profile), hold)
    logger = logger_problem(slot_path) if status.supervised and profile is not None else ""
    return Runtime(status, reason, logger, hold, lifted)


def with_log_tail(rt: Runtime, home: str, parts: tuple[str, ...], lines: int = 3) -> Runtime:
    """``rt`` with the last lines of the gateway's log (a held gateway's report says why),
    read below ``home`` through no-follow directories (the volume is hostile)."""
    from .. import logs

    if rt.hold is None:
        return rt
    return records.replace(rt, log_tail=tuple(line[:200] for line in
                                              logs.tail(home, parts, lines)))


def logger_problem(slot_path: str) -> str:
    """Why the slot's logger is not running although s6 wants it up (it keeps exiting,
    e.g. 111 on a log directory the service user may not write), or ""."""
    try:
        st = svstatus.read(slot_path + "/log", None, False)
    except (OSError, ValueError):
        return ""
    if not st.supervised or st.running or not st.wanted_up or st.finishing:
        return ""
    if st.exit_code in (None, 0) and st.signal is None:
        return ""
    how = supervision.ended(st.exit_code, st.signal)
    return (f"logger not running: s6-log {how} (is logs/gateways/{os.path.basename(slot_path)[8:]} "
            "writable by the service user?)")
