"""Flags and helpers shared by every task."""

from __future__ import annotations

from invoke import Task, task

from .. import inventory, workdir
from ..inventory import Settings

INVENTORY_HELP = {
    "inventory": "inventory file or directory (default: $HERMES_TASKS_INVENTORY, else the "
                 "shipped container inventory)",
    "var": "override one setting, key=value (value parsed as YAML; repeatable)",
    "host": "this machine's entry in a multi-host inventory (default: $HERMES_TASKS_HOST, "
            "else 'localhost', else the only entry)",
}


SECRETS_HELP = {"show-secrets": "show secret-looking extra_env values (names holding KEY, TOKEN, "
                                "SECRET, PASS…) instead of ******** (SPEC §8)"}


class HermesTask(Task):
    """A task whose ``--show-secrets`` and ``--host`` have no short flag: a stray ``-h`` must
    not print secrets, and keeps meaning help to a reader."""

    def arg_opts(self, name, default, taken_names):
        if name == "host":
            taken_names = set(taken_names) | set(name)
        opts = super().arg_opts(name, default, taken_names)
        if name in ("show_secrets", "health"):  # -h keeps meaning help
            opts["names"] = [n for n in opts["names"] if len(n) > 1]
        if name == "lines":  # `gateway.logs -n 5`, as tail says it
            opts["names"] = ["lines", "n"]
        return opts


def hermes_task(help: dict[str, str], **kwargs):
    """``@task`` with the ``--inventory``/``--var``/``--host`` flags and their help added."""
    iterable = ["var", *kwargs.pop("iterable", [])]

    def wrap(fn):
        return task(help={**help, **INVENTORY_HELP}, iterable=iterable, klass=HermesTask,
                    **kwargs)(fn)

    return wrap


def settings(c, inventory_path: str | None, var: list[str], host: str | None = None
             ) -> Settings:
    """The settings a task's flags name; a relative ``--inventory`` is relative to where
    the command was typed (``c``: the task's context, which knows that directory)."""
    return inventory.load(inventory_path or None, var or (), host=host or None,
                          origin=workdir.origin(c))


def check_mode(c, check: bool) -> bool:
    """``--check``, or Invoke's ``--dry``, which means the same here."""
    return bool(check or c.config.run.dry)

