"""What runs: a slot's s6 status and the gateway's own report, read without a process per slot.

``supervise/status`` is read directly (:mod:`svstatus`); the gateway's own
``gateway_state.json`` says why it stopped (``exit_reason``, platform ``error_message``).
"""

from __future__ import annotations

import dataclasses
import json

from .. import fsops, svstatus
from ..profiles import STATE_FILE, STATE_LIMIT, escape

REASON_LIMIT = 200
# finish turns these into "stay down" (exit 125): reconcile reports them, never restarts them.
KEPT_DOWN = (0, 78)


@dataclasses.dataclass(frozen=True)
class Runtime:
    """One gateway as s6 and the gateway itself report it."""

    status: svstatus.Status
    reason: str = ""  # from gateway_state.json, escaped and cut at REASON_LIMIT

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
        """``exited 78: <reason>`` for a failed row."""
        text = f"exited {self.status.exit_code}"
        return f"{text}: {self.reason}" if self.reason else text


NOT_SUPERVISED = Runtime(svstatus.Status(supervised=False))


def read(slot_path: str, profile_dir: str | None) -> Runtime:
    """The runtime facts of the slot at ``slot_path``; ``profile_dir`` for the gateway's reason.

    A status the caller may not read counts as "cannot tell" (supervised None).
    """
    try:
        status = svstatus.read(slot_path)
    except (PermissionError, ValueError):
        status = svstatus.Status(supervised=None)
    except FileNotFoundError:
        return NOT_SUPERVISED
    reason = ""
    if profile_dir is not None and not status.running and status.exit_code in KEPT_DOWN:
        reason = exit_reason(profile_dir)
    return Runtime(status, reason)


def exit_reason(profile_dir: str) -> str:
    """``exit_reason`` and each platform's ``error_message`` from the gateway's state file."""
    try:
        with fsops.opened_dir(profile_dir) as dfd:
            doc = json.loads(fsops.read_bounded(dfd, STATE_FILE, STATE_LIMIT).decode("utf-8-sig"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return ""
    if not isinstance(doc, dict):
        return ""
    parts = []
    if isinstance(doc.get("exit_reason"), str) and doc["exit_reason"]:
        parts.append(doc["exit_reason"])
    platforms = doc.get("platforms")
    if isinstance(platforms, dict):
        for name, info in sorted(platforms.items(), key=lambda kv: str(kv[0])):
            if isinstance(info, dict) and isinstance(info.get("error_message"), str) \
                    and info["error_message"]:
                parts.append(f"{name}: {info['error_message']}")
    text = escape("; ".join(parts).replace(" ", "\0")).replace("\\x00", " ")
    return text[:REASON_LIMIT]
