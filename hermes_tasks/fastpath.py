"""Run the boot-path calls without importing Invoke, when that cannot change their meaning.

Importing Invoke costs ~100 ms and ~8 MiB (``importlib.metadata``, ``unittest.mock``, a
vendored YAML), which is most of a one-profile ``reconcile`` at boot (bench/RESULTS.md).
``hermes-tasks reconcile …`` and ``hermes-tasks gateway.status …`` are therefore parsed
here when every argument is one of the task's long flags, and no Invoke configuration
could be in play (``INVOKE_*`` variables or config files, which may set ``run.dry``).
Anything else — help, core flags, short flags, unknown words — goes to the
``invoke.Program`` unchanged. tests/test_fastpath.py runs the same argv both ways.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

DISABLE_VAR = "HERMES_TASKS_NO_FASTPATH"
# task -> (boolean flags, flags taking a value, flags that may repeat)
TASKS = {
    "reconcile": ({"check", "diff", "json", "show-secrets"}, {"inventory", "host"}, {"var"}),
    "gateway.status": ({"json"}, {"profile", "inventory", "host"}, {"var"}),
}
CONFIG_FILES = [f"{base}.{ext}" for base in ("/etc/invoke", "~/.invoke")
                for ext in ("yaml", "yml", "json", "py")]


def parse(argv: list[str], environ: Mapping[str, str]) -> tuple[str, dict] | None:
    """``(task, kwargs)`` when ``argv`` can safely skip Invoke, else None."""
    if not argv or argv[0] not in TASKS or environ.get(DISABLE_VAR):
        return None
    if any(k.startswith("INVOKE_") for k in environ) or any(
            os.path.exists(os.path.expanduser(p)) for p in CONFIG_FILES):
        return None
    flags, valued, repeated = TASKS[argv[0]]
    kwargs: dict = {"var": []}
    rest = iter(argv[1:])
    for arg in rest:
        if not arg.startswith("--"):
            return None
        name, eq, value = arg[2:].partition("=")
        if name in flags and not eq:
            kwargs[name] = True
            continue
        if name not in valued and name not in repeated:
            return None
        if not eq:
            value = next(rest, None)
            if value is None or value.startswith("-"):
                return None  # let Invoke word the error
        if name in repeated:
            kwargs[name].append(value)
        else:
            kwargs[name] = value
    return argv[0], {k.replace("-", "_"): v for k, v in kwargs.items()}


def runner(task: str, kwargs: dict) -> Callable[[], int]:
    """A zero-argument callable running the task body; returns its exit code."""
    from . import actions, inventory, redact

    def run() -> int:
        cfg = inventory.load(kwargs.get("inventory") or None, kwargs["var"],
                             host=kwargs.get("host") or None)
        if task == "reconcile":
            redact.reveal(kwargs.get("show_secrets", False))
            return actions.reconcile(cfg, kwargs.get("check", False), kwargs.get("diff", False),
                                     kwargs.get("json", False))
        return actions.status(cfg, kwargs.get("profile"), kwargs.get("json", False))

    return run
