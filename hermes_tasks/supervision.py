"""A slot's runtime, in one place: read its status, wait until something holds, bring many
slots down and up, and word how a gateway ended.

- :func:`status` reads ``supervise/status`` (decoded by :mod:`svstatus`, never s6-svstat);
  :func:`supervised` asks whether a supervisor listens (as ``s6-svok`` does).
- :func:`wait_until` is the one poll loop: every bounded wait of the tool is built on it.
- :func:`down`/:func:`up`: signal all, wait once (SPEC §6 batching). Works for root and for
  the service user alike: only ``s6-svc`` on control FIFOs and polling ``supervise/status``
  (the service user never subscribes to ``event/``, SPEC §5).
- :func:`ended`/:func:`failure`: "exited 78: <the gateway's reason>" — the one wording of a
  gateway's exit, for the rows (:mod:`facts.runtime`), ``--wait`` (:mod:`readiness`) and
  ``gateway.status`` (:mod:`status`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence

from . import crashloop, svstatus
from .s6 import S6, NotSupervised, PermissionDenied, S6Error

POLL = 0.02
DOWN_TIMEOUT = 10.0


# -- the one poll loop ---------------------------------------------------------------


def wait_until(cond: Callable[[], object], timeout: float, interval: float = POLL) -> bool:
    """Call ``cond`` until it is true or ``timeout`` seconds passed; whether it held.

    ``cond`` is always asked at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(interval, left))


def wait_all(items: Iterable, done: Callable[[object], object], timeout: float,
             interval: float = POLL) -> list:
    """:func:`wait_until` ``done(item)`` for every item; return the items still not done."""
    pending = list(items)

    def settled() -> bool:
        pending[:] = [i for i in pending if not done(i)]
        return not pending

    wait_until(settled, timeout, interval)
    return pending


# -- reading ---------------------------------------------------------------------------


def supervised(slot: str) -> bool | None:
    """Is an s6-supervise listening on ``slot``? None when we may not tell (EACCES)."""
    return svstatus.supervised(os.path.join(slot, "supervise", "control"))


def status(slot: str) -> svstatus.Status | None:
    """``supervise/status`` now; None when it cannot be read (EACCES, not a record)."""
    try:
        return svstatus.read(slot)
    except (OSError, ValueError):
        return None


def _has_supervisor(path: str) -> bool:
    """A live supervisor that has written its status (so the slot can be signalled)."""
    return (os.path.exists(os.path.join(path, "supervise", "status"))
            and supervised(path) is not False)


def wait_supervised(paths: list[str], stall: float, overall: float) -> list[str]:
    """Wait until each slot has a live supervisor that wrote its status, as long as
    s6-svscan keeps making progress (SPEC §14.7): give up on the rest once no further slot
    got a supervisor for ``stall`` seconds, or at ``overall`` seconds in all. Returns the
    slots not supervised.

    Many slots published at once (450 gateways at boot) take s6-svscan a while; a fixed
    bound failed slots that were supervised seconds later.
    """
    start = time.monotonic()
    pending = list(paths)
    while pending:
        left = overall - (time.monotonic() - start)
        if left <= 0:
            break
        before = len(pending)
        pending = wait_all(pending, _has_supervisor, min(stall, left))
        if len(pending) == before:  # nothing new within the stall window
            break
    return pending


def wait_unsupervised(paths: list[str], timeout: float) -> list[str]:
    """Wait until no supervisor listens on any of ``paths``; return those still alive."""
    return wait_all(paths, lambda p: not supervised(p), timeout, 0.01)


# -- bringing down and up ----------------------------------------------------------------


def down(s6: S6, paths: list[str], flag: str = "-d", timeout: float = DOWN_TIMEOUT
         ) -> dict[str, str]:
    """Tell every slot to go down, wait for all of them once; SIGKILL what ignores SIGTERM.

    Down means down with ``finish`` done (``s6-svc -wD``'s goal). Returns {path: error}
    for the slots s6 refused or that never went down. What is waited for is the process
    that ran when it was told: one that another task replaced meanwhile (a new slot
    directory at the same path, or a new gateway process that another task started again)
    is not ours to wait for, nor to kill.
    """
    told = {p: (_identity(p), _pid(p)) for p in paths}

    def done(path: str) -> bool:
        ident, pid = told[path]
        if _identity(path) != ident:
            return True
        st = status(path)
        if st is None or not (st.up or st.finishing):
            return True
        return pid is not None and st.up and st.pid != pid

    errors = tell(s6, paths, flag)
    pending = wait_all([p for p in paths if p not in errors], done, timeout)
    # a daemon ignoring SIGTERM: the change must still happen
    errors.update(tell(s6, [p for p in pending if not done(p)], "-k"))
    for path in wait_all([p for p in pending if p not in errors], done, timeout):
        errors[path] = f"{path}: still up {2 * timeout:g} s after it was told to stop"
    return errors


def take_down(s6: S6, path: str, timeout: float = DOWN_TIMEOUT) -> None:
    """Stop a slot about to leave the scan: its gateway, then its logger, each waited for.

    So the rescan that drops the old supervisors can never run the old gateway beside a
    new one, nor let a new s6-log meet the old one's lock on the shared log directory. A
    symlinked slot is followed (s6 supervises its target). What will not go down is left
    to the caller's wait for its supervisor to exit.
    """
    for target in (path, os.path.join(path, "log")):
        if supervised(target):
            down(s6, [target], "-d", timeout)


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


def _pid(path: str) -> int | None:
    st = status(path)
    return st.pid if st is not None and st.up else None


def _identity(path: str) -> tuple[int, int] | None:
    """Which directory ``path`` is now (s6 follows a symlinked slot, so do we)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


# -- how a gateway ended ------------------------------------------------------------------


def ended(code: int | None, sig: str | None) -> str:
    """``exited 78`` or ``killed by SIGKILL``; "" when s6 recorded neither."""
    if sig:
        return f"killed by {sig}"
    return f"exited {code}" if code is not None else ""


def failure(code: int | None, sig: str | None, reason: str | None = None,
            log: str | None = None, what: str = "", tail: Sequence[str] = ()) -> str:
    """How a gateway failed, the one wording for rows, ``--wait`` and ``gateway.status``:
    ``[what; ]exited 78: <its reason> (see <log>); last log lines: a | b``.

    ``what``: a phrase on what was seen (a crash loop, a timeout); ``reason``: the
    gateway's own (gateway_state.json); ``log``: where its logger writes
    (:func:`logs.current`); ``tail``: the log's last lines. Each is left out when empty.
    """
    how = ended(code, sig)
    text = what
    if how and how != text:  # ``what`` may be just that (a gateway that exited and stays down)
        text = f"{text}; {how}" if text else how
    if reason:
        text += f": {reason}"
    if log:
        text += f" (see {log})"
    if tail:
        text += "; last log lines: " + " | ".join(tail)
    return text
