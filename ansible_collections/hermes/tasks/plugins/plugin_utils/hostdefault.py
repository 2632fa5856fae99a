"""The action plugin of every hermes.tasks module: ``host`` defaults to ``inventory_hostname``.

A module cannot see the play's inventory name on the managed host, so this controller-side
step fills it in before the module runs; the module then passes it as ``--host`` and
hermes-tasks picks that host's entry of the fleet inventory.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """Run the module of the same name with ``host`` defaulted."""

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if args.get("host") is None:
            args["host"] = task_vars.get("inventory_hostname")
        name = getattr(self._task, "resolved_action", None) or self._task.action
        result.update(self._execute_module(module_name=name, module_args=args,
                                           task_vars=task_vars))
        return result
