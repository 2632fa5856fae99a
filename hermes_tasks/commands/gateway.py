"""``gateway.*``: start, stop, restart and query gateways through s6."""

from __future__ import annotations

import math

from invoke import Exit

from .. import actions, control, report
from ..errors import TaskError, UsageError
from .common import hermes_task, settings

ACTION_HELP = {
    "profile": "profile name (default: default, the root profile)",
    "wait": "wait until the gateway is ready (start/restart) or down (stop)",
    "timeout": "seconds to wait with --wait, decimals allowed (default: readiness_timeout)",
    "json": "print one JSON object instead of the human report",
}
ALL_HELP = {"all": "act on every gateway-* slot in the scandir"}


def wait_seconds(value, default: float) -> float:
    """``--timeout``: a non-negative finite number of seconds (``2.5`` is fine)."""
    if value is None:
        return float(default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(f"--timeout must be a non-negative number of seconds, got {value!r}")
    return seconds


def _run(c, action, profile, all_, wait, timeout, json, inventory, var):
    cfg = settings(inventory, var)
    if all_ and profile:
        raise UsageError("give either -p NAME or --all, not both")
    if all_:
        targets = control.registered(cfg)
        if not targets:
            raise TaskError(f"no gateway slots registered in {cfg.scandir}")
    else:
        targets = [control.target(cfg, profile or "default")]
    seconds = wait_seconds(timeout, cfg.readiness_timeout)
    rows = [control.act(cfg, gw, action, wait, seconds) for gw in targets]
    if not all_ and rows[0].result == "failed":
        raise TaskError(rows[0].message)
    report.emit(rows, json, f"gateway.{action}")
    code = report.exit_code(rows, multi=True)
    if code:
        raise Exit(code=code)


@hermes_task(help=ACTION_HELP)
def start(c, profile=None, wait=False, timeout=None, json=False, inventory=None, var=None):
    """Start a gateway and record desired_state: running (registers a missing slot)."""
    _run(c, control.START, profile, False, wait, timeout, json, inventory, var)


@hermes_task(help={**ACTION_HELP, **ALL_HELP})
def stop(c, profile=None, all_=False, wait=False, timeout=None, json=False, inventory=None,
         var=None):
    """Stop a gateway (or --all) and record desired_state: stopped."""
    _run(c, control.STOP, profile, all_, wait, timeout, json, inventory, var)


@hermes_task(help={**ACTION_HELP, **ALL_HELP})
def restart(c, profile=None, all_=False, wait=False, timeout=None, json=False, inventory=None,
            var=None):
    """Restart a gateway (or --all), bringing it up if it was down; records running."""
    _run(c, control.RESTART, profile, all_, wait, timeout, json, inventory, var)


@hermes_task(help={"profile": "only this profile's gateway",
                   "json": 'print {"gateways": [...]} as JSON'})
def status(c, profile=None, json=False, inventory=None, var=None):
    """Show each gateway: registered, up, wanted up, normally up, pid, desired state."""
    actions.status(settings(inventory, var), profile, json)
