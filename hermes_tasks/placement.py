"""Placement: which profiles this host supervises (SPEC §12, §13.3).

Pure functions over names and the ``gateway_profiles`` patterns (shell-style, matched
case-sensitively against the whole name; ``default`` is placed like any other name).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from .errors import TaskError


def placed(name: str, patterns: Sequence[str]) -> bool:
    """True when ``name`` matches one of ``patterns`` (``[]`` places nothing)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def reason(host_id: str) -> str:
    """The one phrase every report uses for a profile this host does not supervise."""
    return f"not placed on {host_id}"


class NotPlaced(TaskError):
    """A ``gateway.*`` task named a profile this host does not supervise (exit 1)."""

    def __init__(self, profile: str, host_id: str):
        super().__init__(f"gateway-{profile}: {reason(host_id)} (gateway_profiles does not "
                         "match it; it runs on the host whose gateway_profiles does)")
        self.profile = profile


def require(profile: str, patterns: Sequence[str], host_id: str) -> None:
    """Raise :class:`NotPlaced` unless ``profile`` is placed on this host."""
    if not placed(profile, patterns):
        raise NotPlaced(profile, host_id)
