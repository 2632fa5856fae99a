"""Which gateway a ``gateway.*`` task means, and how each one is doing (SPEC §7).

Changing what runs is the engine's (:mod:`engine`); this module names targets and reads
status: supervise/status directly (:mod:`facts.runtime`), never s6-svstat's human line.
"""

from __future__ import annotations

import os

from . import facts, ownership, placement, profiles, state
from .errors import UsageError
from .facts import runtime
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
    """The profile of every ``gateway-*`` slot in the scandir of a profile placed here:
    default first, then by name."""
    facts.require_scandir(cfg)
    names = sorted(os.listdir(cfg.scandir), key=lambda n: (n != "gateway-default", n))
    return [n[len(profiles.SLOT_PREFIX):] for n in names if n.startswith(profiles.SLOT_PREFIX)
            and os.path.isdir(os.path.join(cfg.scandir, n))
            and placement.placed(n[len(profiles.SLOT_PREFIX):], cfg.gateway_profiles)]


def status(cfg: Settings, name: str) -> dict:
    """One gateway's status from ``supervise/status``, its state files and its owner record.

    An unsupervised slot reads as down (``supervised`` false), never "wanted down".
    ``owner``: ``{host_id, pid, since}`` or None; ``standby``: up here, waiting for the
    host that owns it (SPEC §13.1).
    """
    slot = profiles.SLOT_PREFIX + name
    path = os.path.join(cfg.scandir, slot)
    doc = {"profile": name, "slot": slot, "registered": os.path.isdir(path),
           "up": False, "wanted_up": False, "normally_up": False, "pid": None,
           "desired_state": state.read_desired(cfg.hermes_home, name),
           "supervised": False, "ready": False, "exit_code": None, "reason": None,
           "owner": ownership.read_owner(cfg.hermes_home, name), "standby": False}
    if not doc["registered"]:
        return doc
    rt = runtime.read(path, cfg.hermes_home, name)
    st = rt.status
    doc["supervised"] = st.supervised
    if st.supervised is False:
        return doc
    doc.update(up=st.up, wanted_up=st.wanted_up, normally_up=st.normally_up,
               pid=st.pid if st.up else None, ready=st.ready,
               # a slot with a down marker that never ran reads "exit 0": not an exit
               exit_code=None if st.up or not st.normally_up else st.exit_code,
               reason=(rt.hold_text() if rt.held else (rt.reason or rt.logger)) or None)  # §14.6
    # Up here while another host's record holds the profile: data/own waits on its lock.
    owner = doc["owner"]
    doc["standby"] = bool(cfg.shared_volume and st.up and owner
                          and owner["host_id"] != cfg.host_id)
    return doc
