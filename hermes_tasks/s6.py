"""Calls to s6's own tools, with bounded timeouts and named errors.

Every tool is run from ``s6_bin_dir``. Exit codes are mapped as measured on real s6
(reference/s6.md §6): 100 no supervisor listening, 111 system error (usually EACCES),
99 a ``-w…`` wait timed out.

Only root subscribes to s6's events (``s6-svc -w…``, ``s6-svwait``): a slot's ``event/``
is root's alone (SPEC §5, reference/s6.md §7). Any other caller sends the plain command
and then polls ``supervise/status`` (:func:`poll_until`), bounded by the same timeout.
"""

from __future__ import annotations

import os
import time

from . import fsops, svstatus
from .errors import TaskError

STATUS_FIELDS = ("up", "wantedup", "normallyup", "pid")


class S6Error(TaskError):
    """A failed s6 call; subclasses say why. The message names the path and s6's words."""


class NoSuchSlot(S6Error):
    """The slot directory does not exist (nothing was run)."""


class NotSupervised(S6Error):
    """No s6-supervise (or, for ``s6-svscanctl``, no s6-svscan) listens on the path."""


class PermissionDenied(S6Error):
    """s6 refused us access (exit 111, EACCES): wrong user or unshared control FIFOs."""


class Timeout(S6Error):
    """A ``-w…``/``s6-svwait`` wait ran out (exit 99), or the tool itself hung."""


# How s6 words "nobody listens" (measured on 2.11: s6-svc/s6-svscanctl exit 100, s6-svstat
# exit 1, a wait right after a rescan exit 111 before supervise/status exists).
_NOT_LISTENING = ("supervisor not listening", "s6-supervise not running",
                  "unable to s6_svstatus_read: No such file")


class S6:
    """The s6 tools of one ``s6_bin_dir``.

    ``call_timeout`` bounds every call that does not wait for a state change (seconds).
    """

    call_timeout = 15.0

    def __init__(self, bin_dir: str):
        self.bin_dir = bin_dir

    def _run(self, tool: str, args: list[str], target: str, timeout: float | None = None) -> str:
        """Run one tool; return its stdout or raise the :class:`S6Error` that says why."""
        import subprocess  # not on an unchanged reconcile's path, which calls no tool

        argv = [os.path.join(self.bin_dir, tool), *args]
        timeout = self.call_timeout if timeout is None else timeout
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  errors="replace", stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError:
            raise S6Error(f"{argv[0]} not found: is s6_bin_dir ({self.bin_dir}) right?") from None
        except PermissionError:
            raise PermissionDenied(f"{argv[0]}: cannot execute it") from None
        except subprocess.TimeoutExpired:
            raise Timeout(f"{tool} on {target} did not answer within {timeout:g} s") from None
        if proc.returncode == 0:
            return proc.stdout
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        detail = lines[-1] if lines else f"{tool} exited {proc.returncode}"
        rc = proc.returncode
        if rc == 99:
            raise Timeout(f"{target}: timed out waiting for s6 ({detail})")
        if rc == 111 and "ermission denied" in detail:
            raise PermissionDenied(f"{target}: permission denied ({detail})")
        if rc == 102 or (rc in (1, 100, 111) and any(m in detail for m in _NOT_LISTENING)):
            who = "s6-svscan" if tool == "s6-svscanctl" else "s6-supervise"
            raise NotSupervised(f"{target}: no {who} is listening ({detail})")
        raise S6Error(f"{tool} failed on {target}: {detail}")

    def svc(self, slot: str, *flags: str, wait_ms: int | None = None) -> None:
        """``s6-svc`` with ``flags``; ``wait_ms`` adds ``-T`` for the ``-w…`` forms.

        Not root, a ``-w…`` flag is carried out by polling the status instead.
        """
        _need_slot(slot)
        waits = [f for f in flags if f.startswith("-w")]
        if waits and not fsops.IS_ROOT:
            goal = _GOALS[waits[0][2:]]
            before = _status(slot)
            self._run("s6-svc", [*(f for f in flags if f not in waits), slot], slot)
            timeout = (wait_ms if wait_ms is not None else 10000) / 1000
            poll_until(slot, lambda st: goal(st, before), timeout,
                       f"s6-svc {' '.join(flags)}")
            return
        args = list(flags)
        timeout = None
        if wait_ms is not None:
            args = [f"-T{wait_ms}", *args]
            timeout = wait_ms / 1000 + self.call_timeout
        self._run("s6-svc", [*args, slot], slot, timeout)

    def svstat(self, slot: str, fields=STATUS_FIELDS) -> dict[str, object]:
        """``s6-svstat -o`` fields: booleans as bool, ``pid`` as int or None."""
        _need_slot(slot)
        out = self._run("s6-svstat", ["-o", ",".join(fields), slot], slot).split()
        if len(out) != len(fields) or ("pid" in fields and not _is_int(out[fields.index("pid")])):
            raise S6Error(f"unexpected s6-svstat output for {slot}: {' '.join(out)!r}")
        status: dict[str, object] = {}
        for name, value in zip(fields, out):
            if value in ("true", "false"):
                status[name] = value == "true"
            elif name == "pid":
                status[name] = int(value) if int(value) > 0 else None
            else:
                status[name] = value
        return status

    def svscanctl(self, scandir: str, *flags: str) -> None:
        """``s6-svscanctl`` (``-a``, ``-an``…); NotSupervised when no s6-svscan listens."""
        self._run("s6-svscanctl", [*flags, scandir], scandir)

    # -- cheap probes (no process spawned) -------------------------------------------

    @staticmethod
    def scanner_running(scandir: str) -> bool | None:
        """Is an s6-svscan listening on ``scandir``? None when we may not tell (EACCES)."""
        return fsops.fifo_has_reader(os.path.join(scandir, ".s6-svscan", "control"))

    @staticmethod
    def supervised(slot: str) -> bool | None:
        """Is an s6-supervise listening on ``slot``? None when we may not tell."""
        return fsops.fifo_has_reader(os.path.join(slot, "supervise", "control"))

    def wait_unsupervised(self, paths: list[str], timeout: float) -> list[str]:
        """Wait until no supervisor listens on any of ``paths``; return those still alive."""
        deadline = time.monotonic() + timeout
        pending = list(paths)
        while pending:
            pending = [p for p in pending if self.supervised(p)]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        return pending


def poll_until(slot: str, predicate, timeout: float, what: str = "the wait",
               interval: float = 0.02) -> svstatus.Status:
    """Read ``supervise/status`` until ``predicate(status)`` holds; return that status.

    Raises :class:`Timeout` after ``timeout`` seconds, :class:`PermissionDenied` when the
    record cannot be read, :class:`NotSupervised` when no supervisor is (or stays) there.
    """
    deadline = time.monotonic() + timeout
    while True:
        st = _status(slot)
        if predicate(st):
            return st
        if time.monotonic() > deadline:
            if st.supervised is False:
                raise NotSupervised(f"{slot}: no s6-supervise is listening")
            raise Timeout(f"{slot}: timed out waiting for s6 ({what}, {timeout:g} s)")
        time.sleep(interval)


def _status(slot: str) -> svstatus.Status:
    try:
        return svstatus.read(slot)
    except PermissionError:
        raise PermissionDenied(f"{slot}: permission denied reading supervise/status") from None
    except ValueError as exc:
        raise S6Error(f"{slot}: {exc}") from None


def _changed(st: svstatus.Status, before: svstatus.Status | None) -> bool:
    """A new instance since ``before`` (for -wr/-wR: the restart has happened)."""
    return before is None or not before.up or st.pid != before.pid


# What each -w… letter (and s6-svwait flag) waits for, judged from the status record:
# u up, U up and ready, d down, D down with finish done, r/R restarted (then up / ready).
_GOALS = {
    "u": lambda st, before: st.up,
    "U": lambda st, before: st.up and st.ready,
    "d": lambda st, before: not st.up,
    "D": lambda st, before: not st.up and not st.finishing,
    "r": lambda st, before: st.up and _changed(st, before),
    "R": lambda st, before: st.ready and _changed(st, before),
}


def _need_slot(slot: str) -> None:
    if not os.path.isdir(slot):
        raise NoSuchSlot(f"no slot at {slot}")


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()
