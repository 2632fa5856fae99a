"""``reconcile``: bring every slot, and what runs, in line with the profiles on disk."""

from __future__ import annotations

from invoke import Exit

from .. import actions
from .common import SECRETS_HELP, check_mode, hermes_task, settings


@hermes_task(help={
    "check": "change nothing; report what would change (Invoke's --dry means the same)",
    "diff": "show a unified diff of every file that changes",
    "json": "print one JSON object instead of the human report",
    "wait": "wait until every gateway is ready (or down, as desired)",
    "timeout": "seconds to wait with --wait, decimals allowed (default: readiness_timeout)",
    **SECRETS_HELP,
})
def reconcile(c, check=False, diff=False, json=False, wait=False, timeout=None, inventory=None,
              var=None, show_secrets=False, host=None):
    """Bring every gateway slot and process in line with the profiles on disk (run at boot)."""
    code = actions.reconcile(settings(c, inventory, var, host), check_mode(c, check), diff,
                             json=json, wait=wait, timeout=timeout, show_secrets=show_secrets)
    if code:
        raise Exit(code=code)
