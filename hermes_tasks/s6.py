"""Calls to s6's own tools, with bounded timeouts and named errors.

Every tool is run from ``s6_bin_dir``. Exit codes are mapped as measured on real s6
(reference/s6.md §6): 100 no supervisor listening, 111 system error (usually EACCES),
99 a ``-w…`` wait timed out.
"""

from __future__ import annotations

import os
import subprocess
import time

from . import fsops
from .errors import TaskError

STATUS_FIELDS = ("up", "wantedup", "normallyup", "pid")


class S6Error(TaskError):
    """A failed s6 call; subclasses say why."""


class NoSuchSlot(S6Error):
    pass


class NotSupervised(S6Error):
    pass


class PermissionDenied(S6Error):
    pass


class Timeout(S6Error):
    pass


class S6:
    """The s6 tools of one ``s6_bin_dir``."""

    def __init__(self, bin_dir: str):
        self.bin_dir = bin_dir

    def _run(self, tool: str, args: list[str], target: str, timeout: float = 15) -> str:
        argv = [os.path.join(self.bin_dir, tool), *args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  errors="replace")
        except FileNotFoundError:
            raise S6Error(f"{argv[0]} not found: is s6_bin_dir ({self.bin_dir}) right?") from None
        except subprocess.TimeoutExpired:
            raise Timeout(f"{tool} on {target} did not answer within {timeout:g} s") from None
        if proc.returncode == 0:
            return proc.stdout
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        detail = detail[-1] if detail else f"exit {proc.returncode}"
        rc = proc.returncode
        if rc == 99:
            raise Timeout(f"{target}: timed out waiting for s6 ({detail})")
        if rc == 111 and "ermission denied" in detail:
            raise PermissionDenied(f"{target}: permission denied ({detail})")
        if rc in (100, 1) and ("not running" in detail or "supervisor not listening" in detail
                               or "No such file" in detail):
            raise NotSupervised(f"{target}: no s6-supervise is running for it ({detail})")
        raise S6Error(f"{tool} failed on {target}: {detail}")

    def svc(self, slot: str, *flags: str, wait_ms: int | None = None) -> None:
        """``s6-svc`` with ``flags``; ``wait_ms`` adds ``-T`` for the ``-w…`` forms."""
        if not os.path.isdir(slot):
            raise NoSuchSlot(f"no slot at {slot}")
        args = list(flags)
        timeout = 15.0
        if wait_ms is not None:
            args = [f"-T{wait_ms}", *args]
            timeout = wait_ms / 1000 + 10
        self._run("s6-svc", [*args, slot], slot, timeout)

    def svstat(self, slot: str, fields=STATUS_FIELDS) -> dict[str, object]:
        """``s6-svstat -o`` fields: booleans as bool, ``pid`` as int or None."""
        if not os.path.isdir(slot):
            raise NoSuchSlot(f"no slot at {slot}")
        out = self._run("s6-svstat", ["-o", ",".join(fields), slot], slot).split()
        if len(out) != len(fields):
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

    def is_up(self, slot: str) -> bool:
        """True when the slot's daemon is up; False when down or unsupervised."""
        if self.supervised(slot) is False:
            return False
        try:
            return bool(self.svstat(slot, ("up",))["up"])
        except (NotSupervised, NoSuchSlot):
            return False

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

    def wait_supervised(self, slot: str, timeout: float) -> bool:
        """Wait until a supervisor has written ``supervise/status`` for ``slot``.

        s6-svwait and ``-w…`` fail right after a rescan until that file exists (s6.md §4.2).
        """
        deadline = time.monotonic() + timeout
        status = os.path.join(slot, "supervise", "status")
        while time.monotonic() < deadline:
            if os.path.exists(status) and self.supervised(slot) is not False:
                return True
            time.sleep(0.01)
        return False

    def restart(self, slot: str, timeout_ms: int = 10000, up_flag: str = "-u") -> None:
        """Bring a gateway down, wait, and up again.

        A plain ``-r`` is not enough: our ``finish`` turns exit 0 into "stay down", so a
        daemon that exits 0 on SIGTERM would not come back.
        """
        try:
            self.svc(slot, "-wD", "-d", wait_ms=timeout_ms)
        except Timeout:
            self.svc(slot, "-k")  # a daemon ignoring SIGTERM; the restart must still happen
        self.svc(slot, up_flag)
