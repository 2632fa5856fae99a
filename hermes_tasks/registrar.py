"""The root registrar: a caller who may not change slots sends root its intent (SPEC §14.1).

The registrar slot (``hermes-tasks-registrar``, root's, its ``supervise/control`` root's
alone) runs :func:`serve`: a long-running root process listening on a unix socket,
``data/registrar.sock`` (0660 root:``service_gid`` in a directory only root writes, the
peer's uid checked). A request is one JSON line: the task, its profile names and its flags
(``--wait``, ``--timeout``, ``--purge``, ``--start``, ``--all``, ``--check``, ``--diff``),
never settings. Root plans it with root's settings (``data/inventory.yml``) and carries it
out with the same engine and executor as a root run, then answers with the rows (and
diffs) and warnings; :func:`channel.ask` hands them to the caller, which prints them as its own,
so ``--check``, ``--json``, the recap and exit codes are what root would print. A
``gateway.status`` request (``{"task": "gateway.status", "profile": NAME or null}``) is a
read: root answers its status documents (:func:`status.collect`), which the caller prints
as root would.

The service user can only ask: it cannot signal, pause or kill the registrar. A request is
read bounded (size and one second), before root's lock is taken; the answer is written
after the lock is released, bounded too: a frozen or vanished caller never holds the lock
nor delays the next request by more than about a second. A caller's own
``--var``/``--inventory`` cannot reach root: one that names settings root does not have is
refused (:func:`channel.refuse_named`).
"""

from __future__ import annotations

import json
import math
import os
import select
import socket
import struct
import sys
import time

from . import agent, engine, fsops, inventory, records
from .channel import DATA, IO_TIMEOUT, LOGS, MAX_LOG_LINES, MAX_REQUEST, STATUS, _read
from .errors import TaskError, UsageError
from .intent import CREATE, DELETE, RECONCILE, RESTART, START, STOP, Intent
from .inventory import Settings
from .render import REGISTRAR
from .report import exit_code, stats

TASKS = (RECONCILE, START, STOP, RESTART, CREATE, DELETE)


# --------------------------------------------------------------------------- root's side


def serve(data: str = DATA, notify_fd: int = 3) -> None:
    """The registrar slot's run process: converge once, listen, signal readiness, serve.

    The first start right after the reconcile that published the slot (``data/published``
    present) skips the first run. Whatever happens, readiness is signalled once the socket
    listens: a failing run must not become a restart loop.
    """
    data = os.path.abspath(data)
    os.chdir("/")  # a root process never runs from a directory others write (SPEC §10)
    source = RootSettings(os.path.join(data, "inventory.yml"))
    settings, error = source.get()
    marker = os.path.join(data, "published")
    if os.path.lexists(marker):
        os.unlink(marker)
    elif settings is not None:
        doc = handle(settings, {"task": RECONCILE})
        _log(f"reconcile exit={doc.get('code', 0)} {doc.get('stats', {})}"
             + (f" error: {doc['error']}" if doc.get("error") else ""))
    listener = listen(os.path.join(data, "registrar.sock"),
                      settings.service_gid if settings else None)
    os.write(notify_fd, b"\n")
    os.close(notify_fd)
    tick, interval = agent.ticker(source.get, _log)
    Server(listener, source, tick, interval).run()


class Server:
    """One request at a time, from a poll loop.

    ``tick`` (None for now) is called every ``interval`` seconds between requests: the one
    place a periodic pass of the long-running agent (SPEC §14.3) is added.
    """

    def __init__(self, listener: socket.socket, source: RootSettings, tick=None,
                 interval: float | None = None):
        self.listener, self.source = listener, source
        self.tick, self.interval = tick, interval

    def run(self, stop=lambda: False) -> None:
        due = time.monotonic() + (self.interval or 0)
        while not stop():
            timeout = max(0.0, due - time.monotonic()) if self.tick else None
            ready, _, _ = select.select([self.listener], [], [], timeout)
            if ready:
                self.serve_one()
            if self.tick and time.monotonic() >= due:  # requests do not hurry the agent
                self.tick()
                due = time.monotonic() + self.interval

    def serve_one(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        with conn:
            conn.setblocking(True)  # bounded by the timeouts set per read and answer
            try:
                self._answer(conn)
            except Exception as exc:  # noqa: BLE001 - a bug: keep serving, show it in the log
                import traceback

                traceback.print_exc()
                _log(f"request failed: unexpected {type(exc).__name__}: {exc}")

    def _answer(self, conn: socket.socket) -> None:
        settings, error = self.source.get()
        uid, who = _peer(conn)
        if not self._allowed(uid, settings):
            _log(f"refused a request from {who}")
            return
        try:
            raw = _read(conn, MAX_REQUEST, time.monotonic() + IO_TIMEOUT, until_eof=False)
        except (OSError, ValueError) as exc:
            _log(f"unreadable request from {who}: {exc}")
            return
        if raw is None:
            _log(f"no request from {who} within {IO_TIMEOUT:g} s")
            return
        try:
            request = json.loads(raw)
        except (ValueError, RecursionError):
            request = None
        if settings is None:
            doc = {"error": error, "code": 1}
        else:
            doc = handle(settings, request)
        _log(f"{who}: {_title(request)} exit={doc.get('code', 0)}"
             + (f" error: {doc['error']}" if doc.get("error") else ""))
        conn.settimeout(IO_TIMEOUT)  # the whole answer; the lock is no longer held
        try:
            conn.sendall(json.dumps(doc).encode() + b"\n")
        except OSError as exc:
            _log(f"{who} did not take the answer: {exc}")

    @staticmethod
    def _allowed(uid: int, settings: Settings | None) -> bool:
        if uid in (0, os.geteuid()):
            return True
        return settings is not None and uid == settings.service_uid


def handle(settings: Settings, request) -> dict:
    """Carry out one request as root; the answer (rows, warnings, or an error and code)."""
    warnings: list[str] = []
    if isinstance(request, dict) and request.get("task") == STATUS:
        return _status(settings, request, warnings)
    if isinstance(request, dict) and request.get("task") == LOGS:
        return _logs(settings, request, warnings)
    try:
        intent, check, diff, show = _intent(request)
        if intent.wait and intent.timeout > settings.readiness_timeout:
            # a --wait holds root's lock: another user's request waits no longer than
            # root's own setting allows, whatever it asked (and whether or not it is still there)
            warnings.append(f"--timeout {intent.timeout:g} s is more than root's "
                            f"readiness_timeout: waiting at most {settings.readiness_timeout:g} s")
            intent = records.replace(intent, timeout=float(settings.readiness_timeout))
        result = engine.run(settings, intent, check=check, diff=diff, manage_registrar=False,
                            warn=warnings.append, show_secrets=show)
    except (TaskError, OSError) as exc:
        return _failure(exc, warnings)
    rows = result.rows
    return {"results": [r.as_json() for r in rows],
            "registrar": result.registrar.as_json() if result.registrar else None,
            "stats": stats(rows), "warnings": warnings,
            "code": exit_code(rows, multi=True)}


def _status(settings: Settings, request: dict, warnings: list[str]) -> dict:
    """``gateway.status``'s documents as root computes them (root's settings, a read: no
    lock), for a caller who cannot read isolated profiles' files (SPEC §16)."""
    from . import control, status
    from .profiles import valid_name

    profile = request.get("profile")
    try:
        if profile is not None and not (isinstance(profile, str) and valid_name(profile)):
            raise UsageError("the registrar got a request with an invalid profile name")
        docs = status.collect(settings, control.target(settings, profile) if profile else None,
                              warnings.append)
    except (TaskError, OSError) as exc:
        return _failure(exc, warnings)
    return {"gateways": docs, "warnings": warnings, "code": 0}


def _logs(settings: Settings, request: dict, warnings: list[str]) -> dict:
    """``gateway.logs``'s lines as root reads them (a read: no lock), for a caller who cannot
    enter an isolated profile's log directory (SPEC §16). Bounded: at most
    ``MAX_LOG_LINES`` lines, read from the end through no-follow directories."""
    from . import control
    from . import logs as logview
    from .inventory import HOST_ID_RE
    from .profiles import valid_name

    profile, lines, host = request.get("profile"), request.get("lines"), request.get("host")
    try:
        if not (isinstance(profile, str) and valid_name(profile)):
            raise UsageError("the registrar got a request with an invalid profile name")
        if not (isinstance(lines, int) and not isinstance(lines, bool)
                and 0 <= lines <= MAX_LOG_LINES):
            raise UsageError(f"--lines: expected a whole number up to {MAX_LOG_LINES}")
        if not (isinstance(host, str) and HOST_ID_RE.fullmatch(host)):
            raise UsageError("the registrar got a request with an invalid host name")
        parts = logview.directory(control.target(settings, profile), host,
                                  settings.shared_volume)
        got = logview.last(settings.hermes_home, parts, lines)
    except (TaskError, OSError) as exc:
        return _failure(exc, warnings)
    return {"lines": got, "warnings": warnings, "code": 0}


def _failure(exc: TaskError | OSError, warnings: list[str]) -> dict:
    """A request that failed as a whole: its one-line error and exit code, as the caller
    raises them (:func:`channel._answer`)."""
    if isinstance(exc, TaskError):
        return {"error": str(exc), "code": exc.code, "usage": isinstance(exc, UsageError),
                "warnings": warnings}
    where = f"{exc.filename}: " if exc.filename else ""
    return {"error": f"{where}{exc.strerror or exc}", "code": 1, "warnings": warnings}


def _intent(request) -> tuple[Intent, bool, bool, bool]:
    """The intent a request names, every field checked (it comes from another user)."""
    from .profiles import DEFAULT, valid_name

    if not isinstance(request, dict) or request.get("task") not in TASKS:
        raise UsageError("the registrar got a request it cannot read")
    flags = {k: request.get(k, False)
             for k in ("all", "start", "purge", "wait", "check", "diff", "show_secrets")}
    if not all(isinstance(v, bool) for v in flags.values()):
        raise UsageError("the registrar got a request with a flag that is not true/false")
    names = request.get("names")
    if names is not None:
        if (not isinstance(names, list) or len(names) > 4096
                or not all(isinstance(n, str) and valid_name(n) for n in names)):
            raise UsageError("the registrar got a request with an invalid profile name")
        names = frozenset(names)
    task = request["task"]
    if task in (CREATE, DELETE, START) and not names or task == RECONCILE and names:
        raise UsageError(f"the registrar got a {task} request without its profile names")
    if task == DELETE and DEFAULT in names:
        raise UsageError("the default profile is the root hermes_home and cannot be deleted")
    timeout = request.get("timeout", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not 0 <= timeout < math.inf:
        raise UsageError("the registrar got a request with an invalid --timeout")
    intent = Intent(task, names, all=flags["all"], start=flags["start"], purge=flags["purge"],
                    wait=flags["wait"], timeout=float(timeout))
    return intent, flags["check"], flags["diff"], flags["show_secrets"]


def listen(path: str, gid: int | None) -> socket.socket:
    """A listening unix socket at ``path`` (in a directory only root writes), 0660 to the
    service group: the one way the service user reaches root."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    if os.path.lexists(path):
        os.unlink(path)
    # Whatever mode bind() gives it, nobody can connect before listen(): the owner and
    # mode are set first (no umask switch, which would be the whole process's).
    sock.bind(path)
    if fsops.IS_ROOT and gid is not None:
        os.chown(path, 0, gid, follow_symlinks=False)
    os.chmod(path, 0o660)
    sock.listen(64)
    sock.setblocking(False)  # accept() after select() never waits on a caller that left
    return sock


_PEERCRED = struct.Struct("3i")


def _peer(conn: socket.socket) -> tuple[int, str]:
    """The connecting process's uid (from the kernel, not from the request) and a label."""
    pid, uid, _gid = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                      _PEERCRED.size))
    return uid, f"uid {uid} (pid {pid})"


class RootSettings:
    """Root's settings from the slot's ``data/inventory.yml``, read again whenever a root
    reconcile has rewritten it (by its stat), so a request never runs with stale ones."""

    def __init__(self, path: str):
        self.path, self.seen, self.value = path, None, (None, "no settings read yet")

    def get(self) -> tuple[Settings | None, str | None]:
        try:
            st = os.stat(self.path)
            seen = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        except OSError:
            seen = None
        if seen is None or seen != self.seen:
            self.seen = seen
            try:
                self.value = (inventory.load(self.path, (), environ={}), None)
            except TaskError as exc:
                _log(f"cannot read its settings: {exc}")
                self.value = (None, f"the registrar cannot read its settings: {exc}")
        return self.value


def _title(request) -> str:
    if isinstance(request, dict):
        return f"{request.get('task')!r:.20} {request.get('names')!r:.200}"
    return "unreadable request"


def _log(message: str) -> None:
    print(f"{REGISTRAR}: {message}", flush=True)


if __name__ == "__main__":  # the registrar's run script: python -m hermes_tasks.registrar
    serve(*sys.argv[1:2])
