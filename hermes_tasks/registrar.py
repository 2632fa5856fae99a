"""Slot changes for whoever runs the task: directly, or through the root registrar slot.

The service user can control gateways but not define what root runs (SPEC §10). When it
needs a slot created or removed it restarts the root-owned ``hermes-tasks-registrar``
slot, whose run script reconciles as root, and reports that run's result as its own.
"""

from __future__ import annotations

import json
import os
import time

from . import engine, fsops
from .errors import TaskError
from .inventory import Settings
from .render import REGISTRAR
from .report import Row
from .s6 import S6, S6Error

RESULT = os.path.join("data", "result.json")


def may_change_slots(settings: Settings) -> bool:
    """Root, or the owner of the scandir (a container run entirely as one user)."""
    return fsops.IS_ROOT or os.access(settings.scandir, os.W_OK)


def converge(settings: Settings, only: set[str] | None, check: bool = False, diff: bool = False,
             warn=None) -> list[Row]:
    """Reconcile the slots of ``only`` (profile names; None = all); return their rows."""
    if check or may_change_slots(settings):
        rows, _ = engine.reconcile(settings, check=check, diff=diff, only=only, warn=warn)
        return rows
    doc = request(settings)
    rows = [Row(r["slot"], r["profile"], r["prior_state"], r["action"], r["result"],
                r.get("message", "")) for r in doc.get("results", [])]
    return [r for r in rows if only is None or r.profile in only]


def request(settings: Settings) -> dict:
    """Restart the registrar, wait for its readiness, and return its recorded result."""
    slot = os.path.join(settings.scandir, REGISTRAR)
    s6 = S6(settings.s6_bin_dir)
    if not os.path.isdir(slot) or s6.supervised(slot) is False:
        raise TaskError("changing slots needs root: run this task as root, or run "
                        "`hermes-tasks reconcile` as root once so the registrar slot exists "
                        "under a running s6-svscan")
    asked = time.time()
    wait_ms = int((settings.lock_timeout + 60) * 1000)
    try:
        s6.svc(slot, "-wR", "-r", wait_ms=wait_ms)
    except S6Error as exc:
        raise TaskError(f"the registrar did not answer: {exc}") from None
    try:
        with open(os.path.join(slot, RESULT), "rb") as fh:
            doc = json.loads(fh.read(1 << 22))
    except (OSError, ValueError) as exc:
        raise TaskError(f"the registrar left no readable result ({exc})") from None
    if doc.get("finished_at", 0) < asked - 1:
        raise TaskError("the registrar's result is older than this request; see its log")
    return doc
