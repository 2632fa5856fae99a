"""``gateway.*``: start, stop, restart and query gateways (thin wrappers over :mod:`actions`)."""

from __future__ import annotations

from invoke import Exit

from .. import actions
from .common import check_mode, hermes_task, settings

ACTION_HELP = {
    "profile": "profile name (default: default, the root profile)",
    "wait": "wait until the gateway is ready (or down, for stop)",
    "timeout": "seconds to wait with --wait, decimals allowed (default: readiness_timeout)",
    "json": "print one JSON object instead of the human report",
    "check": "change nothing; report what would change (Invoke's --dry means the same)",
}
ALL_HELP = {"all": "act on every gateway-* slot in the scandir"}


def _run(c, action, profile, all_, wait, timeout, json, check, inventory, var, host):
    code = actions.gateway(settings(c, inventory, var, host), action, profile, all_, wait, timeout,
                           json=json, check=check_mode(c, check))
    if code:
        raise Exit(code=code)


@hermes_task(help=ACTION_HELP)
def start(c, profile=None, wait=False, timeout=None, json=False, check=False, inventory=None,
          var=None, host=None):
    """Start a gateway and record desired_state: running (registers a missing slot)."""
    _run(c, "start", profile, False, wait, timeout, json, check, inventory, var, host)


@hermes_task(help={**ACTION_HELP, **ALL_HELP})
def stop(c, profile=None, all_=False, wait=False, timeout=None, json=False, check=False,
         inventory=None, var=None, host=None):
    """Stop a gateway (or --all) and record desired_state: stopped."""
    _run(c, "stop", profile, all_, wait, timeout, json, check, inventory, var, host)


@hermes_task(help={**ACTION_HELP, **ALL_HELP})
def restart(c, profile=None, all_=False, wait=False, timeout=None, json=False, check=False,
            inventory=None, var=None, host=None):
    """Restart a gateway (or --all: those up or desired running); records running."""
    _run(c, "restart", profile, all_, wait, timeout, json, check, inventory, var, host)


@hermes_task(help={"profile": "only this profile's gateway",
                   "json": 'print {"gateways": [...]} as JSON (same as --format json)',
                   "health": "exit 1 unless every gateway that should run here is ready and "
                             "the supervision tree is sound (one stderr line per problem)",
                   "format": "text (default), json, or prometheus (OpenMetrics text)"})
def status(c, profile=None, json=False, health=False, format=None, inventory=None, var=None,
           host=None):
    """Explain every gateway on the volume, and why one is not running as desired.

    Desired and observed state, ready, pid, uptime, host, ports, platforms, restarts, last
    exit; --health for a health check, --format prometheus for metrics."""
    from .. import gatewaystatus

    code = gatewaystatus.command(settings(c, inventory, var, host), profile, json,
                                 health=health, format=format)
    if code:
        raise Exit(code=code)


@hermes_task(help={"profile": "the profile whose gateway log to show (default: default)",
                   "lines": "how many of the last lines to print (default 20)",
                   "follow": "keep printing lines as they are written (Ctrl-C ends)"})
def logs(c, profile=None, lines=20, follow=False, inventory=None, var=None, host=None):
    """Print a gateway's log with readable UTC times (logs/gateways/<name>[/<host>]).

    On a shared volume, --host H reads host H's log (H need not be in the inventory).
    """
    from ..errors import InventoryError

    try:
        cfg = settings(c, inventory, var, host)
    except InventoryError:
        if not host:
            raise
        cfg = settings(c, inventory, var, None)  # a host of the shared volume, not of this inventory
    actions.logs(cfg, profile, lines, follow, host or cfg.host_id)
