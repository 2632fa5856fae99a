"""Invoke entry point for a checkout: ``invoke --list`` shows the same tasks as hermes-tasks."""

from hermes_tasks.program import ns  # noqa: F401  (Invoke loads the ``ns`` collection)
