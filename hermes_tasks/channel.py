"""The caller's side of the intent channel to the root registrar (SPEC §14.1).

A caller who may not change slots (the service user) sends root its intent over the
registrar's socket (:mod:`.registrar` serves it) and gets root's rows back; settings the
caller named that root lacks are refused here first (they would be dropped silently). With
``profile_isolation`` it asks root for ``gateway.status``'s documents the same way
(:func:`ask_status`).
"""

from __future__ import annotations

import json
import os
import time

from . import fsops, inventory
from .errors import InventoryError, TaskError, UsageError
from .intent import RECONCILE, Intent
from .inventory import Settings
from .render import REGISTRAR
from .report import Row

DATA = "data"
SETTINGS = os.path.join(DATA, "inventory.yml")
SOCKET = os.path.join(DATA, "registrar.sock")
NEEDS_ROOT = ("{what} needs root: run this task as root, or run `hermes-tasks reconcile` as root "
              "once so the registrar slot exists under a running s6-svscan")
STOPPED = ("the registrar {slot} is stopped: start it with `s6-svc -u {slot}` as root, or run "
           "`hermes-tasks reconcile` as root")
STATUS = "gateway.status"  # a read root answers: not an intent, takes no lock
LOGS = "gateway.logs"  # likewise: the last lines of an isolated profile's log (SPEC §16)
MAX_LOG_LINES = 100_000  # what one answer may carry (MAX_ANSWER bounds its size too)
MAX_REQUEST = 1 << 16
MAX_ANSWER = 1 << 26  # rows with diffs of a few thousand slots
IO_TIMEOUT = 1.0  # the most a caller can hold the registrar, reading or answering


def may_change_slots(settings: Settings) -> bool:
    """Root, or the owner of the scandir (a container run entirely as one user)."""
    return fsops.IS_ROOT or os.access(settings.scandir, os.W_OK)


def root_settings(settings: Settings) -> Settings | None:
    """The settings the registrar reconciles with (its ``data/inventory.yml``, readable by
    the service group); None when there is no registrar or its copy cannot be read."""
    path = os.path.join(settings.scandir, REGISTRAR, SETTINGS)
    try:
        return inventory.load(path, (), environ={})
    except InventoryError:
        return None


def refuse_named(settings: Settings, root: Settings | None, what: str) -> None:
    """A UsageError when the caller named settings root does not have: they would be
    dropped silently.

    Named: a ``--var KEY`` (compared by its key), an ``--inventory`` or
    ``$HERMES_TASKS_INVENTORY`` (every setting compared). Naming exactly root's values is
    fine: nothing is lost.
    """
    if not settings.named:
        return
    mine = settings.as_vars()
    whole = any(not n.startswith("--var ") for n in settings.named)
    keys = list(mine) if whole else [n[len("--var "):] for n in settings.named]
    if root is None:
        differ = "root's settings are not readable here"
    else:
        theirs = root.as_vars()
        keys = [k for k in keys if mine[k] != theirs.get(k)]
        if not keys:
            return
        differ = f"root's {', '.join(keys)} differ"
    given = list(dict.fromkeys(n for n in settings.named
                               if not n.startswith("--var ") or n[6:] in keys))
    raise UsageError(f"{what}: {', '.join(given)} cannot reach root: as a non-root user this "
                     f"goes through the registrar, which uses root's own settings ({differ}); "
                     "run it as root, or without them")


def ask(settings: Settings, intent: Intent, check: bool, diff: bool, warn,
        show_secrets: bool = False):
    """Send ``intent`` to the registrar; root's rows and its registrar row (None here),
    its warnings passed on.

    Raises TaskError when there is no registrar, it does not answer within
    ``registrar_timeout`` (plus ``--timeout`` with ``--wait``), or root's run failed as a
    whole (its one-line error, with its exit code).
    """
    what = intent.task if intent.task == RECONCILE else f"{intent.task} {sorted(intent.names or [])}"
    request = {"task": intent.task, "names": sorted(intent.names) if intent.names else None,
               "all": intent.all, "start": intent.start, "purge": intent.purge,
               "wait": intent.wait, "timeout": intent.timeout, "check": check, "diff": diff,
               "show_secrets": show_secrets}
    deadline = time.monotonic() + settings.registrar_timeout + (
        intent.timeout if intent.wait else 0)
    slot = os.path.join(settings.scandir, REGISTRAR)
    return _answer(_exchange(settings, request, what, deadline), slot, warn,
                   lambda d: ([_row(r) for r in d["results"]],
                              _row(d["registrar"]) if d.get("registrar") else None))


def _answer(raw: bytes, slot: str, warn, read):
    """root's answer decoded: its error raised as the caller's own, its warnings passed on,
    then ``read(doc)``; anything unreadable is one TaskError naming the registrar."""
    try:
        doc = json.loads(raw)
        if doc.get("error") is not None:
            raise (UsageError if doc.get("usage") else TaskError)(
                str(doc["error"]), int(doc.get("code") or 1))
        for message in doc.get("warnings", []):
            warn(str(message))
        return read(doc)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        raise TaskError(f"the registrar {slot} answered something unreadable; see its log "
                        "(the s6-svscan log)") from None


def ask_status(settings: Settings, profile: str | None, warn) -> list[dict]:
    """root's ``gateway.status`` documents (every profile, or ``profile``), computed by the
    registrar with root's settings: with ``profile_isolation`` only root can read the
    profiles' files (SPEC §16), and the operator's service user keeps ``gateway.*``.

    Errors as :func:`ask`; root's warnings passed on.
    """
    return _read_only(settings, {"task": STATUS, "profile": profile},
                      STATUS + (f" -p {profile}" if profile else ""), warn, "gateways", dict)


def ask_logs(settings: Settings, profile: str, lines: int, host: str, warn) -> list[str]:
    """The last ``lines`` lines of ``profile``'s log as root reads them (readable text, one
    per line): with ``profile_isolation`` a profile's log directory is its own uid's.
    Errors as :func:`ask`."""
    return _read_only(settings, {"task": LOGS, "profile": profile, "lines": lines,
                                 "host": host}, f"{LOGS} -p {profile}", warn, "lines", str)


def _read_only(settings: Settings, request: dict, what: str, warn, key: str, kind) -> list:
    """A read root answers with a list of ``kind`` under ``key`` (no lock on its side)."""
    deadline = time.monotonic() + settings.registrar_timeout
    slot = os.path.join(settings.scandir, REGISTRAR)

    def items(doc: dict) -> list:
        got = doc[key]
        if not isinstance(got, list) or not all(isinstance(x, kind) for x in got):
            raise TypeError(key)
        return got

    return _answer(_exchange(settings, request, what, deadline), slot, warn, items)


def _exchange(settings: Settings, request: dict, what: str, deadline: float) -> bytes:
    """Send one request to the registrar and read its whole answer (bounded in size and
    by ``deadline``); TaskError when it cannot be reached or does not answer."""
    import socket  # only a caller who asks pays for it, not root's reconcile

    slot = os.path.join(settings.scandir, REGISTRAR)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(settings.registrar_timeout)
        try:
            sock.connect(os.path.join(slot, SOCKET))
        except (FileNotFoundError, NotADirectoryError):
            raise TaskError(NEEDS_ROOT.format(what=what)) from None
        except ConnectionRefusedError:
            raise TaskError(STOPPED.format(slot=slot)) from None
        except OSError as exc:
            raise TaskError(f"cannot reach the registrar {slot}: {exc.strerror or exc}") from None
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            raw = _read(sock, MAX_ANSWER, deadline, until_eof=True)
        except (OSError, ValueError) as exc:
            raise TaskError(f"the registrar {slot} did not answer: {exc.strerror or exc}") from None
    if raw is None:
        raise TaskError(f"the registrar {slot} did not answer within "
                        f"{settings.registrar_timeout:g} s (registrar_timeout)")
    return raw


def _row(doc: dict) -> Row:
    return Row(doc["slot"], doc["profile"], doc["prior_state"], doc["action"], doc["result"],
               doc.get("message", ""), doc.get("diff", ""))


def _read(sock, limit: int, deadline: float, until_eof: bool) -> bytes | None:
    """Up to ``limit`` bytes: to the first newline (or EOF); None past ``deadline``.

    ValueError when more than ``limit`` bytes come.
    """
    chunks, size = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            return None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ValueError(f"more than {limit} bytes")
        if not until_eof and b"\n" in chunk:
            break
    return b"".join(chunks)
