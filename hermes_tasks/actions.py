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
    _add_ports(cfg, docs)
    if json:
        print(jsonlib.dumps({"gateways": docs}))
        return 0
    for d in docs:
        if not d["registered"]:
            line = "not registered"
        else:
            line = (f"up (pid {d['pid']})" if d["up"] else "down") + \
                (", wanted up" if d["wanted_up"] else ", wanted down") + \
                (", normally up" if d["normally_up"] else ", normally down")
        print(f"{d['slot']}: {line}; desired_state={d['desired_state']}; "
              f"ports: {_ports_text(d)}")
    if not docs:
        print(f"no gateway slots registered in {cfg.scandir}")
    return 0


def _add_ports(cfg: Settings, docs: list[dict]) -> None:
    """Each gateway's API server and webhook ports (SPEC §11), read like reconcile does.

    ``api_server_port``/``webhook_port`` are the ports each would bind (null when
    unknown); ``*_enabled`` whether hermes would turn that platform on.
    """
    from . import ports, profiles, report

    found, _ = profiles.discover(cfg.hermes_home, lambda _msg: None)
    names = [p.name for p in found[1:]]
    gws = ports.for_settings(cfg, names, lambda msg: report.warn(msg), write=False)
    for d in docs:
        gw = gws.get(d["profile"])
        for plat in ports.PLATFORMS:
            d[f"{plat}_port"] = gw.ports.get(plat) if gw else None
            d[f"{plat}_enabled"] = bool(gw and plat in gw.bound)


def _ports_text(d: dict) -> str:
    return ", ".join(f"{plat} {d.get(plat + '_port') or '-'} "
                     f"({'on' if d.get(plat + '_enabled') else 'off'})"
                     for plat in ("api_server", "webhook"))
