"""Placement: which profiles this host supervises (SPEC §12, §13.3).

Pure functions over names and the ``gateway_profiles`` patterns (shell-style, matched
case-sensitively against the whole name; ``default`` is placed like any other name).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence


def placed(name: str, patterns: Sequence[str]) -> bool:
    """True when ``name`` matches one of ``patterns`` (``[]`` places nothing)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def reason(host_id: str) -> str:
    """The one phrase every report uses for a profile this host does not supervise."""
    return f"not placed on {host_id}"
