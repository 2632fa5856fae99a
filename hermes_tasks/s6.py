"""Calls to s6's own tools, with bounded timeouts and named errors.

Every tool is run from ``s6_bin_dir``. Exit codes are mapped as measured on real s6
(reference/s6.md §6): 100 no supervisor listening, 111 system error (usually EACCES),
99 a ``-w…`` wait timed out.

This module only runs the tools. Reading a slot's status and waiting for it to change
are :mod:`supervision`'s (it polls ``supervise/status``, so root and the service user wait
alike: a slot's ``event/`` is root's alone, SPEC §5, reference/s6.md §7).
"""

from __future__ import annotations

import os

from . import fsops
from .errors import TaskError


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
        """``s6-svc`` with ``flags``; ``wait_ms`` adds ``-T`` for the ``-w…`` forms (root's:
        they subscribe to ``event/``; everyone else waits with :mod:`supervision`)."""
        _need_slot(slot)
        args = list(flags)
        timeout = None
        if wait_ms is not None:
            args = [f"-T{wait_ms}", *args]
            timeout = wait_ms / 1000 + self.call_timeout
        self._run("s6-svc", [*args, slot], slot, timeout)

    def svscanctl(self, scandir: str, *flags: str) -> None:
        """``s6-svscanctl`` (``-a``, ``-an``…); NotSupervised when no s6-svscan listens."""
        self._run("s6-svscanctl", [*flags, scandir], scandir)

    # -- cheap probes (no process spawned) -------------------------------------------

    @staticmethod
    def scanner_running(scandir: str) -> bool | None:
        """Is an s6-svscan listening on ``scandir``? None when we may not tell (EACCES)."""
        return fsops.fifo_has_reader(os.path.join(scandir, ".s6-svscan", "control"))


def _need_slot(slot: str) -> None:
    if not os.path.isdir(slot):
        raise NoSuchSlot(f"no slot at {slot}")
