"""Which gateway a ``gateway.*`` task means, and how each one is doing (SPEC §7).

Changing what runs is the engine's (:mod:`engine`), reading how each one is doing is
:mod:`status`'s; this module names targets.
"""

from __future__ import annotations

import os

from . import profiles
from .errors import UsageError
from .inventory import Settings


def check_name(name: str) -> None:
    """A UsageError for a name that can never be a profile."""
    if not profiles.valid_name(name):
        raise UsageError(f"invalid profile name '{profiles.escape(name)}': "
                         "names match [a-z0-9][a-z0-9_-]{0,63}")


def target(cfg: Settings, name: str) -> str:
    """The name of an existing profile; a UsageError naming the fix for anything else."""
    check_name(name)
    if not profiles.profile_exists(cfg.hermes_home, name) and not _isolated(cfg, name):
        raise UsageError(f"no profile '{name}' under {cfg.hermes_home}/profiles: create it with "
                         f"`hermes-tasks profile.create {name}`")
    return name


def _isolated(cfg: Settings, name: str) -> bool:
    """A profile directory the caller may not look into because isolation gave it to the
    profile's uid (SPEC §16): root, through the registrar, decides whether it is one."""
    import stat

    if not cfg.profile_isolation or os.geteuid() == 0:
        return False
    try:
        st = os.lstat(os.path.join(cfg.hermes_home, "profiles", name))
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid != os.geteuid()


def registered(cfg: Settings) -> list[str]:
    """The profile of every gateway slot in the scandir (:func:`slots.gateway_profiles`)
    placed here: default first, then by name."""
    # here, not at the top: gateway.status -p needs target() only, not the slot facts
    from . import facts, placement, slots

    facts.require_scandir(cfg)
    found = slots.gateway_profiles(slots.managed_names(cfg.scandir)[0])
    return sorted((n for n in found if placement.placed(n, cfg.gateway_profiles)),
                  key=lambda n: (n != profiles.DEFAULT, n))
