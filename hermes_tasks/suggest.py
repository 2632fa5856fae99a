"""Invoke's bare "No idea what 'X' is!" turned into one line that says what to do instead.

A mistyped task or flag gets ``hermes-tasks: no task 'gateway.stauts' — did you mean
'gateway.status'? (hermes-tasks --list)``: the closest known name (difflib) and where the
names are listed.
"""

from __future__ import annotations

import difflib
import re

_UNKNOWN = re.compile(r"^No idea what '(.*)' is!$", re.S)


def _closest(word: str, names) -> str:
    found = difflib.get_close_matches(word, sorted(set(names)), n=1, cutoff=0.6)
    return f" — did you mean {found[0]!r}?" if found else ""


def message(text: str, context, task_names, core_flags) -> str:
    """The one-line message for a parse error (``context``: the task being parsed, if any)."""
    m = _UNKNOWN.match(str(text))
    if not m:
        return f"hermes-tasks: error: {text}"
    word = m.group(1)
    task = getattr(context, "name", None)
    if word.startswith("-"):
        if task:
            flags = [f for f in getattr(context, "flags", {}) if f.startswith("-")]
            return (f"hermes-tasks: {task} has no flag {word!r}{_closest(word, [*flags, *core_flags])}"
                    f" (hermes-tasks --help {task})")
        return f"hermes-tasks: no option {word!r}{_closest(word, core_flags)} (hermes-tasks --help)"
    return f"hermes-tasks: no task {word!r}{_closest(word, task_names)} (hermes-tasks --list)"
