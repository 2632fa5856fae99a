"""``hermes-tasks gateway.status …`` without importing Invoke (issue 24).

Importing Invoke costs ~100 ms (``importlib.metadata``, ``unittest.mock``, ``asyncio``, a
vendored YAML), most of a status call, which a container health check makes every 30 s.
So an argv made only of gateway.status's own flags is run here directly; anything else —
help, core flags, another task, a flag or value it does not know, a value that looks like a
flag, Invoke configuration that could be in play — goes to the ``invoke.Program``
unchanged, which words every usage error. tests/test_fastpath.py runs argvs both ways.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

TASK = "gateway.status"
DISABLE_VAR = "HERMES_TASKS_NO_FASTPATH"
# flag -> keyword, as the Invoke task declares them (commands/gateway.py: status)
SWITCHES = {"--json": "json", "-j": "json", "--health": "health"}
VALUED = {"--profile": "profile", "-p": "profile", "--format": "format", "-f": "format",
          "--inventory": "inventory", "-i": "inventory", "--host": "host"}
REPEATED = {"--var": "var", "-v": "var"}
CONFIG_FILES = [f"{base}.{ext}" for base in ("/etc/invoke", "~/.invoke")
                for ext in ("yaml", "yml", "json", "py")]


def parse(argv: list[str], environ: Mapping[str, str]) -> dict | None:
    """gateway.status's keyword arguments when ``argv`` may skip Invoke, else None."""
    if not argv or argv[0] != TASK or environ.get(DISABLE_VAR):
        return None
    if any(k.startswith("INVOKE_") for k in environ) or any(
            os.path.exists(os.path.expanduser(p)) for p in CONFIG_FILES):
        return None
    kwargs: dict = {"profile": None, "json": False, "health": False, "format": None,
                    "inventory": None, "var": [], "host": None}
    rest = iter(argv[1:])
    for arg in rest:
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in SWITCHES and not eq:
            kwargs[SWITCHES[name]] = True
            continue
        key = VALUED.get(name) or REPEATED.get(name)
        if key is None:
            return None
        if not eq:
            value = next(rest, None)
            if value is None or value.startswith("-"):
                return None  # Invoke words the error
        if name in REPEATED:
            kwargs[key].append(value)
        else:
            kwargs[key] = value
    return kwargs


def run(kwargs: dict, origin: str | None = None) -> int:
    """The task, as the Invoke task runs it, with the Program's error handling; ``origin``:
    where the command was typed (:func:`workdir.leave`), for a relative ``--inventory``."""
    from . import errors

    code = 0

    def body() -> None:
        nonlocal code
        from . import gatewaystatus, inventory

        cfg = inventory.load(kwargs["inventory"] or None, kwargs["var"],
                             host=kwargs["host"] or None, origin=origin)
        code = gatewaystatus.command(cfg, kwargs["profile"], kwargs["json"],
                                     health=kwargs["health"], format=kwargs["format"])

    return errors.guarded(body, json=kwargs["json"]) or code
