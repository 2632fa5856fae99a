"""``gateway.*``: start, stop, restart and query gateways through s6."""

from __future__ import annotations

from invoke import Exit

from .. import actions, control, report
from ..errors import TaskError, UsageError
from .common import hermes_task, settings

ACTION_HELP = {
    "profile": "profile name (default: default, the root profile)",
    "wait": "wait until s6 reports the new state",
    "timeout": "seconds to wait with --wait (default 30)",
    "json": "print one JSON object instead of the human report",
}
ALL_HELP = {"all": "act on every gateway-* slot in the scandir"}


def _run(c, action, profile, all_, wait, timeout, json, inventory, var, host):
    cfg = settings(inventory, var, host)
    if all_ and profile:
        raise UsageError("give either -p NAME or --all, not both")
    if all_:
        targets = control.registered(cfg)
        if not targets:
            raise TaskError(f"no gateway slots registered in {cfg.scandir}")
    else:
        targets = [control.target(cfg, profile or "default")]
    rows = [control.act(cfg, gw, action, wait, float(timeout)) for gw in targets]
    if not all_ and rows[0].result == "failed":
        raise TaskError(rows[0].message)
    report.emit(rows, json, f"gateway.{action}")
    code = report.exit_code(rows, multi=True)
    if code:
        raise Exit(code=code)


@hermes_task(help=ACTION_HELP)
def start(c, profile=None, wait=False, timeout=30, json=False, inventory=None, var=None,
          host=None):
    """Start a gateway and record desired_state: running (registers a missing slot)."""
    _run(c, control.START, profile, False, wait, timeout, json, inventory, var, host)


@hermes_task(help={**ACTION_HELP, **ALL_HELP})
def stop(c, profile=None, all_=False, wait=False, timeout=30, json=False, inventory=None,
         var=None, host=None):
    """Stop a gateway (or --all) and record desired_state: stopped."""
    _run(c, control.STOP, profile, all_, wait, timeout, json, inventory, var, host)


@hermes_task(help={**ACTION_HELP, **ALL_HELP})
def restart(c, profile=None, all_=False, wait=False, timeout=30, json=False, inventory=None,
            var=None, host=None):
    """Restart a gateway (or --all), bringing it up if it was down; records running."""
    _run(c, control.RESTART, profile, all_, wait, timeout, json, inventory, var, host)


@hermes_task(help={"profile": "only this profile's gateway",
                   "json": 'print {"gateways": [...]} as JSON'})
def status(c, profile=None, json=False, inventory=None, var=None, host=None):
    """Show each gateway: registered, up, wanted up, normally up, pid, desired state."""
    actions.status(settings(inventory, var, host), profile, json)
