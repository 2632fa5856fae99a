"""Slot changes for whoever runs the task: directly, or through the root registrar slot.

The service user can control gateways but not define what root runs (SPEC §10). When it
needs a slot created or removed it restarts the root-owned ``hermes-tasks-registrar``
slot (``s6-svc -r``, then polls its status until it is ready again), whose run process
(:func:`serve`) reconciles as root with root's settings (``data/inventory.yml``), records
``data/result.json`` and signals readiness; the task reports that run's rows as its own.
So the caller's own ``--var``/``--inventory`` cannot reach root: a caller that names
settings root does not have is refused, and its ``--check`` is answered with root's.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from . import agent, fsops, inventory
from .errors import InventoryError, TaskError, UsageError
from .inventory import Settings
from .render import REGISTRAR
from .report import exit_code, stats
from .s6 import S6, S6Error

DATA = "data"
RESULT = os.path.join(DATA, "result.json")
SETTINGS = os.path.join(DATA, "inventory.yml")
NEEDS_ROOT = ("{what} needs root: run this task as root, or run `hermes-tasks reconcile` as root "
              "once so the registrar slot exists under a running s6-svscan")


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


def check_available(settings: Settings, what: str = "changing a slot") -> None:
    """Raise the one-line "``what`` needs root" error unless slot changes can happen now.

    Call it before changing the volume, so a task that cannot finish does not start:
    that includes refusing settings the caller named that cannot reach root.
    """
    from .facts import require_scandir

    require_scandir(settings)
    if may_change_slots(settings):
        return
    refuse_named(settings, root_settings(settings), what)
    slot = os.path.join(settings.scandir, REGISTRAR)
    s6 = S6(settings.s6_bin_dir)
    if not os.path.isdir(slot) or s6.supervised(slot) is False:
        raise TaskError(NEEDS_ROOT.format(what=what))
    try:
        wanted = s6.svstat(slot, ("wantedup",))["wantedup"]
    except S6Error as exc:
        raise TaskError(f"cannot read the registrar's state: {exc}") from None
    if not wanted:  # s6-svc -r does nothing to a service that is wanted down
        raise TaskError(f"the registrar {slot} is stopped: start it with "
                        f"`s6-svc -u {slot}` or run `hermes-tasks reconcile` as root")


def request(settings: Settings, what: str = "changing a slot") -> dict:
    """Restart the registrar, wait until it is ready again, and return its recorded result.

    The wait polls the registrar's status (the caller is not root: ``event/`` is closed to
    it, see :mod:`s6`). Raises TaskError when there is no registrar, it does not answer
    within ``registrar_timeout``, or its reconcile failed as a whole.
    """
    check_available(settings, what)
    slot = os.path.join(settings.scandir, REGISTRAR)
    asked = time.time()
    try:
        S6(settings.s6_bin_dir).svc(slot, "-wR", "-r",
                                    wait_ms=int(settings.registrar_timeout * 1000))
    except S6Error as exc:
        raise TaskError(f"the registrar ({slot}) did not answer: {exc}") from None
    try:
        with open(os.path.join(slot, RESULT), "rb") as fh:
            doc = json.loads(fh.read(1 << 22))
    except (OSError, ValueError) as exc:
        raise TaskError(f"the registrar left no readable result in {slot}/{RESULT} ({exc})") from None
    if not isinstance(doc, dict) or doc.get("started_at", 0) < asked:
        raise TaskError(f"the registrar's result in {slot}/{RESULT} predates this request; "
                        "see the s6-svscan log")
    if doc.get("error"):
        raise TaskError(f"the registrar's reconcile failed: {doc['error']}")
    return doc


def serve(data: str = DATA, notify_fd: int = 3) -> None:
    """The registrar slot's run process: reconcile as root, record, signal readiness, wait.

    SIGTERM (a requester's ``s6-svc -r``) stays blocked until readiness is signalled: a
    request that arrives mid-run is then answered by one more run, never by killing this
    one. The first start right after the reconcile that published the slot
    (``data/published`` present) skips the run. Whatever happens, readiness is signalled:
    a failing run must not become a restart loop.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    data = os.path.abspath(data)
    os.chdir("/")  # a root process never runs from a directory others write (SPEC §10)
    marker = os.path.join(data, "published")
    if os.path.lexists(marker):
        os.unlink(marker)
    else:
        doc = _reconcile(os.path.join(data, "inventory.yml"))
        try:
            with fsops.opened_dir(data) as dfd:
                # Readable by all: rows and counts only, never a setting's value.
                fsops.write_atomic(dfd, "result.json", json.dumps(doc).encode() + b"\n", 0o644,
                                   durable=False)
        except OSError as exc:
            doc["error"] = f"could not record the result: {exc}"
        print(f"{REGISTRAR}: reconcile exit={doc['exit_code']} {doc['stats']}"
              + (f" error: {doc['error']}" if doc["error"] else ""), flush=True)
    os.write(notify_fd, b"\n")
    os.close(notify_fd)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    agent.watch(os.path.join(data, "inventory.yml"))  # SPEC §14.3: never returns


def _reconcile(inventory_path: str) -> dict:
    """Run reconcile with the slot's settings; the record of it, failures included."""
    from . import engine
    from .intent import RECONCILE, Intent

    started, rows, error = time.time(), [], None
    try:
        settings = inventory.load(inventory_path, (), environ={})
        rows = engine.run(settings, Intent(RECONCILE), manage_registrar=False).rows
        code = exit_code(rows, multi=True)
    except TaskError as exc:
        code, error = exc.code, str(exc)
    except OSError as exc:
        code, error = 1, f"{exc.filename or ''}: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 - a bug: keep serving, show it in the log
        import traceback

        traceback.print_exc()
        code, error = 1, f"unexpected {type(exc).__name__}: {exc}"
    return {"started_at": started, "finished_at": time.time(), "exit_code": code,
            "error": error, "results": [r.as_json() for r in rows], "stats": stats(rows)}


if __name__ == "__main__":  # the registrar's run script: python -m hermes_tasks.registrar
    serve(*sys.argv[1:2])
