"""Rendered template text kept between runs, so an unchanged re-run never imports Jinja.

Importing Jinja and compiling the templates is a quarter of an unchanged re-run at 1000
profiles (bench/PROFILE.md), and its output depends only on what is in the key: the
template's source, the context, and the code that renders (Jinja, our filters). The cache
is one JSON file in the scandir, ``.hermes-tasks.cache``: a dot-name s6-svscan ignores,
on the tmpfs that is wiped with the slots at every container start.

Its text becomes root's run scripts, so it is trusted only when it is a regular file
owned by the euid and writable by nobody else, opened without following symlinks (the
same rule as every slot file, SPEC §10). Anything else, unreadable or stale, is ignored:
the run renders in full and replaces it. Losing it is always harmless.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable

from . import fsops
from .fsops import package_init as _package_init
from .fsops import trusted_dir

NAME = ".hermes-tasks.cache"
# Bump when the Environment's options, the filters or the key's shape change.
FORMAT = 3
LIMIT = 1 << 20


def code_stamp() -> list:
    """What identifies the rendering code: our renderer, the installed Jinja and PyYAML."""
    from . import __version__

    # render.py by its path, not imported: render imports this module
    ours = os.path.join(os.path.dirname(os.path.abspath(__file__)), "render.py")
    stamp: list = [FORMAT, __version__]
    for path in (ours, _package_init("jinja2"), _package_init("yaml")):
        digest = fsops.digest_file(path, LIMIT)
        if digest is not None:
            stamp.append([path, digest])
    return stamp


class RenderCache:
    """Rendered text by (template source, context); an empty one never touches disk.

    :meth:`text` returns the cached text or calls ``produce`` and keeps its result;
    :meth:`save` writes what this run used, only if that differs from what was loaded.
    """

    def __init__(self, directory: str | None = None, stamp: list | None = None):
        self.directory = directory
        self.stamp = stamp
        self._loaded: dict[str, str] = {}
        self._used: dict[str, str] = {}

    @classmethod
    def load(cls, directory: str) -> RenderCache:
        """The cache kept in ``directory`` (empty when missing, untrusted, or for other code).

        ``directory``: see :func:`location`.
        """
        cache = cls(directory, code_stamp())
        trusted, doc = fsops.load_trusted(directory, NAME, LIMIT)
        if trusted is False:
            cache.directory = None  # never written either
        elif doc.get("stamp") == cache.stamp:
            cache._loaded = fsops.strings(doc.get("renders"))
        return cache

    def text(self, kind: str, source: str, context: dict, produce: Callable[[], str]) -> str:
        """The text ``produce()`` gives for this template source and context."""
        try:
            key = json.dumps([kind, source, context], sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):  # a context JSON cannot hold: never cached
            return produce()
        found = self._used.get(key)
        if found is None:
            found = self._loaded.get(key)
            if found is None:
                found = produce()
            self._used[key] = found
        return found

    def save(self) -> None:
        """Keep this run's renders for the next run (best effort: a failure costs speed)."""
        if self.directory is None or not self._used:
            return
        # Nothing new: every render came from the file (a primed one may hold more, such
        # as an isolated profile's formats, which a later run may still use).
        loaded = self._loaded
        if all(loaded.get(k) == v for k, v in self._used.items()):
            return
        data = json.dumps({"stamp": self.stamp, "renders": self._used},
                          sort_keys=True).encode()
        fsops.save_trusted(self.directory, NAME, data, LIMIT)


def location(settings) -> str:
    """Where the cache lives: ``render_cache_dir`` when that directory exists and is ours
    alone (:func:`trusted_dir`), else the scandir (wiped with the slots at every container
    start, so a boot renders afresh; also what an unprivileged caller uses).

    The image creates ``/var/cache/hermes-tasks`` (root's, 0700) and names it in its
    inventory: a restarted container keeps its renders and its boot never imports Jinja.
    A directory that is missing is never created here (a test or a host without one).
    """
    wanted = settings.render_cache_dir
    if wanted:
        with contextlib.suppress(OSError):
            with fsops.opened_dir(wanted) as dfd:
                if trusted_dir(dfd):
                    return wanted
    return settings.scandir
