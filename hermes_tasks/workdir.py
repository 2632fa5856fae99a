"""The working directory of a root entry point: ``/``, with typed paths kept as typed.

A root process must not run from a directory the service user can write (SPEC §10): the
image's ``WORKDIR`` is the volume, and anything resolved relative to it (a command name
``sh`` falls back to, a relative path) would be the service user's choice. :func:`leave`
moves a root process to ``/`` and returns where it started; the entry point passes that
on (the Invoke config's ``hermes_origin``, :func:`origin`), so paths the user typed
relative to it (``--inventory ./x``, ``--dest DIR``) still mean what they meant
(:func:`resolve`). Nothing is kept in this module.
"""

from __future__ import annotations

import os


def leave() -> str | None:
    """As root, change to ``/`` and return the directory the process started in; otherwise
    nothing (None: the working directory still is that directory)."""
    if os.geteuid() != 0:
        return None
    try:
        origin = os.getcwd()
    except OSError:  # the directory was removed: relative paths resolve from /
        origin = "/"
    os.chdir("/")
    return origin


def resolve(path: str | os.PathLike, origin: str | None) -> str:
    """``path`` made absolute against ``origin``, the directory the process started in
    (:func:`leave`'s answer; None: the working directory)."""
    path = os.fspath(path)
    if os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(origin or os.getcwd(), path))


def origin(c) -> str | None:
    """The start directory the command line recorded in an Invoke context's config."""
    return getattr(c.config, "hermes_origin", None)
