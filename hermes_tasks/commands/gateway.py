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
    code = actions.gateway(settings(inventory, var, host), action, profile, all_, wait, timeout,
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
                   "json": 'print {"gateways": [...]} as JSON'})
def status(c, profile=None, json=False, inventory=None, var=None, host=None):
    """Show each gateway's state (desired, up, ready, pid, last exit, owner, ports).

    For each gateway (or one): registered, supervised, up, ready, pid, last exit, desired
    state and owner."""
    actions.status(settings(inventory, var, host), profile, json)
