"""Driving gateways through s6: start, stop, restart, status (SPEC §7).

Each action goes through ``s6-svc`` on the slot (the service user may, through the shared
control FIFOs); the intent is recorded in ``gateway_state.json`` only once s6 accepted it.
"""

from __future__ import annotations

import dataclasses
import os

from . import profiles, registrar, state
from .errors import TaskError, UsageError
from .inventory import Settings
from .report import Row
from .s6 import S6, NotSupervised, S6Error

START, STOP, RESTART = "start", "stop", "restart"


@dataclasses.dataclass
class Gateway:
    """One profile's gateway as the control layer sees it."""

    profile: str
    slot: str
    path: str


def target(cfg: Settings, name: str) -> Gateway:
    """The gateway of an existing profile; a clear error for anything else."""
    if not profiles.valid_name(name):
        raise UsageError(f"invalid profile name '{profiles.escape(name)}': "
                         "names match [a-z0-9][a-z0-9_-]{0,63}")
    if not profiles.profile_exists(cfg.hermes_home, name):
        raise UsageError(f"no profile '{name}' under {cfg.hermes_home}/profiles: create it with "
                         f"`hermes-tasks profile.create {name}`")
    slot = profiles.SLOT_PREFIX + name
    return Gateway(name, slot, os.path.join(cfg.scandir, slot))


def registered(cfg: Settings) -> list[Gateway]:
    """Every ``gateway-*`` slot in the scandir: default first, then by name."""
    try:
        names = sorted(os.listdir(cfg.scandir), key=lambda n: (n != "gateway-default", n))
    except FileNotFoundError:
        raise TaskError(f"scandir {cfg.scandir} does not exist") from None
    return [Gateway(n[len(profiles.SLOT_PREFIX):], n, os.path.join(cfg.scandir, n))
            for n in names if n.startswith(profiles.SLOT_PREFIX)
            and os.path.isdir(os.path.join(cfg.scandir, n))]


def act(cfg: Settings, gw: Gateway, action: str, wait: bool, timeout: float) -> Row:
    """Carry out one action on one gateway and record the intent; never raises S6Error."""
    s6 = S6(cfg.s6_bin_dir)
    owner = (cfg.service_uid, cfg.service_gid)
    desired = "stopped" if action == STOP else "running"
    word = {START: "started", STOP: "stopped", RESTART: "restarted"}[action]
    row = Row(gw.slot, gw.profile, state.read_desired(cfg.hermes_home, gw.profile), word, "changed")
    try:
        if not os.path.isdir(gw.path):
            if action == STOP:
                _record(cfg, gw, desired, owner)
                row.message = "no slot registered; recorded stopped"
                return row
            _register(cfg, gw, s6, timeout)
        _check_supervised(s6, gw)
        wait_ms = int(timeout * 1000)
        if action == STOP:
            s6.svc(gw.path, *(("-wD",) if wait else ()), "-D", wait_ms=wait_ms if wait else None)
        elif action == RESTART and s6.is_up(gw.path):
            s6.restart(gw.path, wait_ms, up_flag="-U")
        else:
            s6.svc(gw.path, "-U")
        if wait and action != STOP:
            s6.svc(gw.path, "-wu", "-u", wait_ms=wait_ms)
        _record(cfg, gw, desired, owner)
    except (S6Error, OSError) as exc:
        row.result, row.message = "failed", _explain(exc, gw)
    return row


def _record(cfg: Settings, gw: Gateway, desired: str, owner) -> None:
    if profiles.profile_exists(cfg.hermes_home, gw.profile):
        state.record_desired(cfg.hermes_home, gw.profile, desired, owner)


def _register(cfg: Settings, gw: Gateway, s6: S6, timeout: float) -> None:
    """Publish the missing slot of an existing profile (down; the caller starts it)."""
    rows = registrar.converge(cfg, {gw.profile})
    failed = [r for r in rows if r.result == "failed"]
    if failed:
        raise S6Error(f"could not register {gw.slot}: {failed[0].message}")
    if not os.path.isdir(gw.path):
        raise S6Error(f"could not register {gw.slot}")
    if s6.scanner_running(cfg.scandir) is not False:
        s6.wait_supervised(gw.path, timeout)


def _check_supervised(s6: S6, gw: Gateway) -> None:
    if s6.supervised(gw.path) is False:
        raise NotSupervised(f"{gw.slot}: no s6-supervise is listening")


def _explain(exc: Exception, gw: Gateway) -> str:
    text = str(exc) if not isinstance(exc, OSError) else f"{exc.filename or gw.slot}: {exc.strerror}"
    if isinstance(exc, NotSupervised):
        return (f"{gw.slot} is not supervised (is s6-svscan running on the scandir? "
                "run `hermes-tasks reconcile` then retry)")
    return text


def status(cfg: Settings, gw: Gateway) -> dict:
    """One gateway's status as read with ``s6-svstat -o`` and its state file."""
    s6 = S6(cfg.s6_bin_dir)
    doc = {"profile": gw.profile, "slot": gw.slot, "registered": os.path.isdir(gw.path),
           "up": False, "wanted_up": False, "normally_up": False, "pid": None,
           "desired_state": state.read_desired(cfg.hermes_home, gw.profile)}
    if doc["registered"] and s6.supervised(gw.path) is not False:
        try:
            st = s6.svstat(gw.path)
        except NotSupervised:
            return doc
        doc.update(up=st["up"], wanted_up=st["wantedup"], normally_up=st["normallyup"],
                   pid=st["pid"] if st["up"] else None)
    return doc
