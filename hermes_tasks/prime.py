"""``python -m hermes_tasks.prime``: the image's build keeps every render a boot makes that
depends only on the settings, so a new container's first boot imports no Jinja.

A boot's renders are the shared formats of the default and the named profiles (their name,
ports, uid and this host's id are placeholders, :mod:`.render`) and the registrar's slot:
all of them functions of the settings and the code, none of the volume. They are rendered
under the image's settings (its inventory and environment, as the boot loads them) into the
render cache in ``render_cache_dir``, which must exist and be the caller's alone
(:func:`.rendercache.location`'s rule); it is never created here. Nothing is reconciled.
A boot whose settings or code differ from the build's simply misses and renders in full.
"""

from __future__ import annotations

import os
import sys

from .rendercache import NAME, RenderCache, code_stamp, location


def prime(settings) -> str | None:
    """Render the settings' shared slots into the render cache of ``render_cache_dir``;
    return the cache file's path, or None when there is no trusted directory to keep it."""
    directory = settings.render_cache_dir
    if not directory or location(settings) != directory:  # missing or not ours alone
        return None
    from .render import Renderer

    cache = RenderCache(directory, code_stamp())  # exactly what is rendered now
    Renderer(settings, cache).shared()
    cache.save()
    path = os.path.join(directory, NAME)
    return path if os.path.isfile(path) else None


def main() -> None:
    from . import inventory

    if sys.argv[1:]:
        sys.exit("usage: python -m hermes_tasks.prime (the image's settings; no arguments)")
    try:
        settings = inventory.load()
    except inventory.InventoryError as exc:
        sys.exit(f"hermes-tasks: error: {exc}")
    path = prime(settings)
    if path is None:
        sys.exit(f"hermes-tasks: error: render_cache_dir {settings.render_cache_dir!r} is "
                 "missing or not this user's alone: nothing primed")
    print(f"primed {path}")


if __name__ == "__main__":
    main()
