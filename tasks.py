"""Invoke entry point for a checkout: ``invoke --list`` shows the same tasks as hermes-tasks."""

from hermes_tasks.cli import ns  # noqa: F401  (Invoke loads the ``ns`` collection)
