"""``reconcile``: bring every slot in line with the profiles on disk."""

from __future__ import annotations

from invoke import Exit

from .. import engine, report
from .. import registrar as registrar_mod
from .common import check_mode, hermes_task, settings


@hermes_task(help={
    "check": "change nothing; report what would change (Invoke's --dry means the same)",
    "diff": "show a unified diff of every file that changes",
    "json": "print one JSON object instead of the human report",
    "registrar_result": "internal: used by the registrar slot to record its run",
})
def reconcile(c, check=False, diff=False, json=False, registrar_result=None, inventory=None,
              var=None):
    """Bring every gateway slot in line with the profiles on disk (run at every boot)."""
    cfg = settings(inventory, var)
    check = check_mode(c, check)
    in_registrar = bool(registrar_result)
    if not (check or in_registrar or registrar_mod.may_change_slots(cfg)):
        # The service user may not change slots: the root registrar reconciles for it.
        rows, registrar = registrar_mod.converge(cfg, None), None
    else:
        rows, registrar = engine.reconcile(cfg, check=check, diff=diff,
                                           manage_registrar=False if in_registrar else None)
    code = report.exit_code(rows + ([registrar] if registrar else []), multi=True)
    if in_registrar:
        engine.write_result(registrar_result, rows, code)
    report.emit(rows, json, "reconcile", check=check,
                extra={"registrar": registrar.as_json()} if registrar else None,
                aside=[registrar] if registrar and registrar.result != "ok" else [])
    if code:
        raise Exit(code=code)
