"""The working directory of a root entry point: ``/``, with typed paths kept as typed.

A root process must not run from a directory the service user can write (SPEC §10): the
image's ``WORKDIR`` is the volume, and anything resolved relative to it (a command name
``sh`` falls back to, a relative path) would be the service user's choice. :func:`leave`
moves a root process to ``/`` and remembers where it started, so paths the user typed
relative to it (``--inventory ./x``, ``--dest DIR``) still mean what they meant
(:func:`resolve`).
"""

from __future__ import annotations

import os

_origin: str | None = None


def leave() -> None:
    """As root, remember the working directory and change to ``/``; otherwise nothing."""
    global _origin
    if os.geteuid() != 0:
        return
    try:
        _origin = os.getcwd()
    except OSError:  # the directory was removed: relative paths resolve from /
        _origin = "/"
    os.chdir("/")


def resolve(path: str | os.PathLike) -> str:
    """``path`` made absolute against the directory the process started in."""
    path = os.fspath(path)
    if os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(_origin or os.getcwd(), path))
