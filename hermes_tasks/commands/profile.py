"""``profile.*``: create and delete profiles, with their slots."""

from __future__ import annotations

from .. import lifecycle, redact, report
from ..errors import TaskError
from .common import SECRETS_HELP, check_mode, hermes_task, settings

COMMON = {
    "check": "change nothing; report what would change",
    "diff": "show a unified diff of every slot file that changes",
    "json": "print one JSON object instead of the human report",
    **SECRETS_HELP,
}


def _finish(rows, json, title, check):
    """Report the profile's row; a failed one is the task's one-line error (exit 1)."""
    for row in rows:
        if row.result == "failed":
            raise TaskError(row.message if row.slot and row.slot in row.message
                            else f"{row.slot}: {row.message}")
    report.emit(rows, json, title, check=check)


@hermes_task(help={"name": "the new profile's name", "start": "start its gateway too",
                   **COMMON})
def create(c, name, start=False, check=False, diff=False, json=False, inventory=None, var=None,
           show_secrets=False, host=None):
    """Create profiles/NAME with a SOUL.md (never overwritten) and register its slot down."""
    redact.reveal(show_secrets)
    check = check_mode(c, check)
    rows = lifecycle.create(settings(inventory, var, host), name, start, check, diff)
    _finish(rows, json, "profile.create", check)


@hermes_task(help={"name": "the profile to delete",
                   "purge": "delete its directory instead of moving it to .trash", **COMMON})
def delete(c, name, purge=False, check=False, diff=False, json=False, inventory=None, var=None,
           show_secrets=False, host=None):
    """Stop and remove a profile's slot; move the profile to .trash (or --purge it)."""
    redact.reveal(show_secrets)
    check = check_mode(c, check)
    rows = lifecycle.delete(settings(inventory, var, host), name, purge, check)
    _finish(rows, json, "profile.delete", check)
