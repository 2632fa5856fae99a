"""Task bodies that need no Invoke: each takes settings and flags, reports, returns an exit code.

The Invoke tasks in ``commands/`` call these; so does the fast path of :mod:`cli`, which
skips importing Invoke for the calls on the boot path.
"""

from __future__ import annotations

import json as jsonlib

from . import report
from .inventory import Settings


def reconcile(cfg: Settings, check: bool, diff: bool, json: bool) -> int:
    """``reconcile``: converge every slot, report, and return 0 or 2."""
    from . import engine, registrar  # not needed by gateway.status

    if not registrar.may_change_slots(cfg):
        # The service user may not change slots: the root registrar reconciles for it (and
        # its --check is answered with the registrar's settings).
        rows, aside = registrar.converge(cfg, None, check=check, diff=diff, what="reconcile"), None
    else:
        rows, aside = engine.reconcile(cfg, check=check, diff=diff)
    code = report.exit_code(rows + ([aside] if aside else []), multi=True)
    report.emit(rows, json, "reconcile", check=check,
                extra={"registrar": aside.as_json()} if aside else None,
                aside=[aside] if aside and aside.result != "ok" else [])
    return code


def status(cfg: Settings, profile: str | None, json: bool) -> int:
    """``gateway.status``: one gateway (or every registered one), read through s6."""
    from . import control  # not needed by reconcile

    targets = [control.target(cfg, profile)] if profile else control.registered(cfg)
    docs = [control.status(cfg, gw) for gw in targets]
    if json:
        print(jsonlib.dumps({"gateways": docs}))
        return 0
    for d in docs:
        if not d["registered"]:
            line = "not registered"
        else:
            line = (f"up (pid {d['pid']})" if d["up"] else "down") + \
                (f", standby, owned by {d['owner']['host_id']}" if d["standby"] else "") + \
                (", wanted up" if d["wanted_up"] else ", wanted down") + \
                (", normally up" if d["normally_up"] else ", normally down")
        print(f"{d['slot']}: {line}; desired_state={d['desired_state']}")
    if not docs:
        print(f"no gateway slots registered in {cfg.scandir}")
    return 0
