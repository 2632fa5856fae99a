"""A profile's name: which names are valid, how any name is printed, where its directory
and its slot are. A leaf: :mod:`state` and :mod:`profiles` both build on it."""

from __future__ import annotations

import os
import re

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_PLAIN = re.compile(r"[!-\[\]-~]*")  # printable ASCII but space and backslash
DEFAULT = "default"
SLOT_PREFIX = "gateway-"
REGISTRAR = "hermes-tasks-registrar"  # the root agent's slot (not a profile's)


def valid_name(name: str) -> bool:
    return NAME_RE.fullmatch(name) is not None


def profile_parts(name: str) -> tuple[str, ...]:
    """Path parts of a profile directory below ``hermes_home``."""
    return () if name == DEFAULT else ("profiles", name)


def escape(text: str) -> str:
    """Printable form of any name: bytes outside ``!``..``~`` and ``\\`` become ``\\xNN``.

    Spaces are escaped too, so a name can neither break a line nor forge a ``key=value``
    field in the boot log.
    """
    if _PLAIN.fullmatch(text):  # the common case, without encoding byte by byte
        return text
    raw = os.fsencode(text)
    return "".join(chr(b) if 0x21 <= b <= 0x7E and b != 0x5C else f"\\x{b:02x}" for b in raw)
