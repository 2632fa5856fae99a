"""``profile.*``: create and delete profiles, with their slots (wrappers over :mod:`actions`)."""

from __future__ import annotations

from invoke import Exit

from .. import actions
from .common import SECRETS_HELP, check_mode, hermes_task, settings

COMMON = {
    "check": "change nothing; report what would change (Invoke's --dry means the same)",
    "diff": "show a unified diff of every slot file that changes",
    "json": "print one JSON object instead of the human report",
    **SECRETS_HELP,
}


@hermes_task(help={"name": "the new profile's name", "start": "start its gateway too",
                   **COMMON})
def create(c, name, start=False, check=False, diff=False, json=False, inventory=None, var=None,
           show_secrets=False, host=None):
    """Create profiles/NAME with a SOUL.md (never overwritten) and register its slot down."""
    code = actions.profile_create(settings(c, inventory, var, host), name, start,
                                  check_mode(c, check), diff, json=json,
                                  show_secrets=show_secrets)
    if code:
        raise Exit(code=code)


@hermes_task(help={"name": "the profile to delete",
                   "purge": "delete its directory instead of moving it to .trash", **COMMON})
def delete(c, name, purge=False, check=False, diff=False, json=False, inventory=None, var=None,
           show_secrets=False, host=None):
    """Stop and remove a profile's slot; move the profile to .trash (or --purge it)."""
    code = actions.profile_delete(settings(c, inventory, var, host), name, purge,
                                  check_mode(c, check), diff, json=json,
                                  show_secrets=show_secrets)
    if code:
        raise Exit(code=code)
