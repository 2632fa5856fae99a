"""Recording operator intent (``desired_state``) in a profile's ``gateway_state.json``."""

from __future__ import annotations

import json
import os
import time

from . import fsops
from .profiles import STATE_FILE, STATE_LIMIT, escape, profile_parts


def record_desired(home: str, name: str, desired: str | None, owner: tuple[int, int]) -> None:
    """Set ``desired_state`` (and ``updated_at``), keeping every other key; None removes it.

    Written atomically next to the file, never through a symlink. A file that is not a
    JSON object is kept beside it as ``gateway_state.json.corrupt`` rather than lost.
    fsync matters here: this is the operator's intent that must survive a power cut.
    """
    with fsops.opened_dir(home, profile_parts(name)) as dfd:
        doc: dict = {}
        try:
            raw = fsops.read_bounded(dfd, STATE_FILE, STATE_LIMIT)
        except FileNotFoundError:
            raw = None
        except OSError:
            raw = b"\0"  # unreadable, oversized or a symlink: set it aside below
        if raw is not None:
            try:
                parsed = json.loads(raw.decode("utf-8-sig"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, dict):
                doc = parsed
            else:
                os.rename(STATE_FILE, STATE_FILE + ".corrupt", src_dir_fd=dfd, dst_dir_fd=dfd)
        if desired is None:
            doc.pop("desired_state", None)
        else:
            doc["desired_state"] = desired
        doc["updated_at"] = int(time.time())
        data = (json.dumps(doc, indent=2) + "\n").encode()
        fsops.write_atomic(dfd, STATE_FILE, data, 0o644, owner=owner)


def read_desired(home: str, name: str) -> str | None:
    """The recorded ``desired_state`` of a profile, or None (never raises)."""
    try:
        with fsops.opened_dir(home, profile_parts(name)) as dfd:
            doc = json.loads(fsops.read_bounded(dfd, STATE_FILE, STATE_LIMIT).decode("utf-8-sig"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    value = doc.get("desired_state") if isinstance(doc, dict) else None
    return escape(value) if isinstance(value, str) else None
