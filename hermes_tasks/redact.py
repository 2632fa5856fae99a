"""Masking of secret-looking ``extra_env`` values in what the tool prints (SPEC §8).

A variable looks secret when its name contains KEY, TOKEN, SECRET, PASSWORD, PASS or
CREDENTIAL (any case). Its value is shown as ``********`` in ``--diff``, reports and
``slot.render`` unless ``--show-secrets`` was given (``show``). Masking works on the
rendered text, line by line: an ``export NAME=value`` line of a run script, a
``NAME: value`` line of the registrar's inventory copy. Values cannot span lines (the
loader refuses control characters in them), so a line holds a whole value.
"""

from __future__ import annotations

import re

MASK = "********"
WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASS", "CREDENTIAL")
_LINE = re.compile(r"^(?P<head>[ \t]*(?:export[ \t]+)?(?P<q>['\"]?)(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                   r"(?P=q)(?P<sep>=|:[ \t]+))(?P<value>.*?)(?P<eol>\r?\n?)$")


def looks_secret(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in WORDS)


def text(content: str, before: str | None = None, show: bool = False) -> str:
    """``content`` with every secret-looking value masked (unless ``show``: --show-secrets).

    With ``before`` (the old text of the same file), a value that differs from the old one
    is masked as ``******** (changed)``, so a diff still shows that it changed.
    """
    if show:
        return content
    old = _values(before) if before is not None else {}
    out = []
    for line in content.splitlines(keepends=True):
        m = _LINE.match(line)
        if m and m["value"] and looks_secret(m["name"]):
            mark = MASK if old.get(m["name"], m["value"]) == m["value"] else f"{MASK} (changed)"
            line = f"{m['head']}{mark}{m['eol']}"
        out.append(line)
    return "".join(out)


def _values(content: str) -> dict[str, str]:
    found = {}
    for line in content.splitlines(keepends=True):
        m = _LINE.match(line)
        if m and looks_secret(m["name"]):
            found[m["name"]] = m["value"]
    return found
