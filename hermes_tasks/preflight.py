"""Preflight: before a run changes anything, the tools its slots will run must exist (SPEC §6).

A wrong ``s6_bin_dir`` used to rewrite every ``run`` before anything noticed; now the run
stops first, with exit 1, and no slot is rewritten.
"""

from __future__ import annotations

import os

from .errors import TaskError
from .inventory import Settings

TOOLS = ("with-contenv", "s6-svc", "s6-svstat", "s6-svok", "s6-svscanctl", "s6-setuidgid",
         "s6-log", "s6-notifyoncheck", "s6-svdt")  # s6-svdt: finish's crash-loop count


def problems(settings: Settings) -> list[str]:
    """What is missing, one phrase each (empty when all is there)."""
    missing = [t for t in TOOLS if not os.access(os.path.join(settings.s6_bin_dir, t), os.X_OK)]
    out = []
    if missing:
        out.append(f"s6_bin_dir {settings.s6_bin_dir} lacks {', '.join(missing)}")
    if not _resolves(settings.hermes_bin):
        out.append(f"hermes_bin {settings.hermes_bin!r} is not an executable file or a "
                   "command on PATH")
    return out


def check(settings: Settings) -> None:
    """Raise a one-line TaskError (exit 1) naming everything missing."""
    found = problems(settings)
    if found:
        raise TaskError("preflight: " + "; ".join(found) + " (fix the inventory or the image; "
                        "nothing was changed)")


def _resolves(program: str) -> bool:
    if "/" in program:
        return os.path.isfile(program) and os.access(program, os.X_OK)
    import shutil  # only for a bare command name: the image names a path

    return shutil.which(program) is not None
