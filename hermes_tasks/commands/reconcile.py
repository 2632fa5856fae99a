"""``reconcile``: bring every slot in line with the profiles on disk."""

from __future__ import annotations

from invoke import Exit

from .. import actions, redact
from .common import SECRETS_HELP, check_mode, hermes_task, settings


@hermes_task(help={
    "check": "change nothing; report what would change (Invoke's --dry means the same)",
    "diff": "show a unified diff of every file that changes",
    "json": "print one JSON object instead of the human report",
    **SECRETS_HELP,
})
def reconcile(c, check=False, diff=False, json=False, inventory=None, var=None,
              show_secrets=False, host=None):
    """Bring every gateway slot in line with the profiles on disk (run at every boot)."""
    redact.reveal(show_secrets)
    code = actions.reconcile(settings(inventory, var, host), check_mode(c, check), diff, json)
    if code:
        raise Exit(code=code)
