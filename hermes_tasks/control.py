"""Driving gateways through s6: start, stop, restart, status (SPEC §7).

Each action goes through ``s6-svc`` on the slot (the service user may, through the shared
control FIFOs); the intent is recorded in ``gateway_state.json`` only once s6 accepted it.
"""

from __future__ import annotations

import dataclasses
import os

from . import lock, ownership, placement, profiles, state
from .errors import TaskError, UsageError
from .inventory import Settings
from .report import Row
from .s6 import S6, NoSuchSlot, NotSupervised, PermissionDenied, S6Error, Timeout

START, STOP, RESTART = "start", "stop", "restart"
WORDS = {START: "started", STOP: "stopped", RESTART: "restarted"}


@dataclasses.dataclass
class Gateway:
    """One profile's gateway as the control layer sees it."""

    profile: str
    slot: str
    path: str


def target(cfg: Settings, name: str) -> Gateway:
    """The gateway of an existing profile; a UsageError naming the fix for anything else."""
    if not profiles.valid_name(name):
        raise UsageError(f"invalid profile name '{profiles.escape(name)}': "
                         "names match [a-z0-9][a-z0-9_-]{0,63}")
    if not profiles.profile_exists(cfg.hermes_home, name):
        raise UsageError(f"no profile '{name}' under {cfg.hermes_home}/profiles: create it with "
                         f"`hermes-tasks profile.create {name}`")
    placement.require(name, cfg.gateway_profiles, cfg.host_id)
    slot = profiles.SLOT_PREFIX + name
    return Gateway(name, slot, os.path.join(cfg.scandir, slot))


def registered(cfg: Settings) -> list[Gateway]:
    """Every ``gateway-*`` slot in the scandir of a profile placed here: default first,
    then by name."""
    try:
        names = sorted(os.listdir(cfg.scandir), key=lambda n: (n != "gateway-default", n))
    except FileNotFoundError:
        raise TaskError(f"scandir {cfg.scandir} does not exist") from None
    return [Gateway(n[len(profiles.SLOT_PREFIX):], n, os.path.join(cfg.scandir, n))
            for n in names if n.startswith(profiles.SLOT_PREFIX)
            and os.path.isdir(os.path.join(cfg.scandir, n))
            and placement.placed(n[len(profiles.SLOT_PREFIX):], cfg.gateway_profiles)]


def act(cfg: Settings, gw: Gateway, action: str, wait: bool, timeout: float) -> Row:
    """Carry out one action on one gateway and record the intent; failures become the row's.

    start/restart register a missing slot first (through the registrar when not root);
    stop of an unregistered profile only records ``stopped``. Restart brings the gateway
    down, waits, and up again, so a daemon that exits 0 on SIGTERM comes back too. The s6
    command and the record happen under the scandir lock, so concurrent tasks and
    reconciles see them in one order. The result is ``ok`` when the gateway already was
    where start/stop wanted it.
    """
    s6 = S6(cfg.s6_bin_dir)
    desired = "stopped" if action == STOP else "running"
    prior = state.read_desired(cfg.hermes_home, gw.profile)
    row = Row(gw.slot, gw.profile, prior, WORDS[action], "changed")
    wait_ms = max(1, int(timeout * 1000))
    try:
        if not os.path.isdir(gw.path) and action != STOP:
            _register(cfg, gw, timeout)  # takes the lock itself: not under ours
            row.message = "registered its slot"
        with lock.held(cfg.scandir, cfg.lock_timeout, f"gateway.{action} -p {gw.profile}"):
            if not os.path.isdir(gw.path):  # stop of a profile that has no slot
                _record(cfg, gw, desired)
                row.message = "no slot registered; recorded stopped"
                return row
            before = _command(s6, gw, action, wait_ms)
            _record(cfg, gw, desired)
        already = before["up"] and before["wantedup"] and before["normallyup"]
        if action == STOP:
            already = not (before["up"] or before["wantedup"] or before["normallyup"])
        if action != RESTART and already and prior == desired and not row.message:
            row.result = "ok"
        elsewhere = None if action == STOP else ownership.held_elsewhere(
            cfg.hermes_home, gw.profile, cfg.host_id)
        if elsewhere:  # SPEC §13.1: up here as a standby, never ready while the owner lives
            row.result, row.message = "ok", f"standby: running on {elsewhere}"
        elif wait:
            s6.svwait(gw.path, "-D" if action == STOP else "-u", wait_ms)
    except (TaskError, OSError) as exc:
        row.result, row.message = "failed", explain(exc, cfg, gw, action, timeout)
    return row


def _command(s6: S6, gw: Gateway, action: str, wait_ms: int) -> dict:
    """Send the action to s6; return the status from before it."""
    if s6.supervised(gw.path) is False:
        raise NotSupervised(f"{gw.path}: no s6-supervise is listening")
    before = s6.svstat(gw.path)
    if action == STOP:
        s6.svc(gw.path, "-D")
    elif action == RESTART and before["up"]:
        s6.restart(gw.path, wait_ms, up_flag="-U")
    else:
        s6.svc(gw.path, "-U")
    return before


def _record(cfg: Settings, gw: Gateway, desired: str) -> None:
    if profiles.profile_exists(cfg.hermes_home, gw.profile):
        state.record_desired(cfg.hermes_home, gw.profile, desired,
                             (cfg.service_uid, cfg.service_gid))


def _register(cfg: Settings, gw: Gateway, timeout: float) -> None:
    """Publish the missing slot of an existing profile, as its recorded state says."""
    from . import registrar  # the whole reconcile machinery; status/stop never need it

    rows = registrar.converge(cfg, {gw.profile}, what=f"registering {gw.slot}")
    failed = [r for r in rows if r.result == "failed"]
    if failed:
        raise S6Error(f"could not register {gw.slot}: {failed[0].message}")
    if not os.path.isdir(gw.path):
        raise S6Error(f"could not register {gw.slot}")
    await_supervisor(cfg, gw, timeout)


def await_supervisor(cfg: Settings, gw: Gateway, timeout: float) -> None:
    """After publishing a slot: give s6-svscan time to start its supervisor.

    The rescan is asynchronous, and ``s6-svc -w…`` fails until ``supervise/status``
    exists (reference/s6.md §4.2). Without a scanner there is nothing to wait for.
    """
    s6 = S6(cfg.s6_bin_dir)
    if s6.scanner_running(cfg.scandir) is not False:
        s6.wait_supervised(gw.path, timeout)


def explain(exc: Exception, cfg: Settings, gw: Gateway, action: str = "", timeout: float = 0) -> str:
    """One line: which gateway, what went wrong, and what to do about it."""
    if isinstance(exc, NoSuchSlot):
        return (f"{gw.slot} is not registered in {cfg.scandir}: run `hermes-tasks reconcile` "
                "as root, then retry")
    if isinstance(exc, NotSupervised):
        return (f"{gw.slot} is not supervised: no s6-supervise listens on it (is s6-svscan "
                f"running on {cfg.scandir}? run `hermes-tasks reconcile` as root, then retry)")
    if isinstance(exc, PermissionDenied):
        return (f"{gw.slot}: permission denied by s6 ({exc}): run this as root or as the "
                "service user; `hermes-tasks reconcile` as root repairs the shared control FIFOs")
    if isinstance(exc, Timeout):
        goal = "down" if action == STOP else "up"
        log = os.path.join(cfg.hermes_home, "logs", "gateways", gw.profile,
                           *([cfg.host_id] if cfg.shared_volume else []), "current")
        return (f"{gw.slot}: timed out after {timeout:g} s waiting for s6 to report it {goal} "
                f"(it was told to {action or 'change'}); see {log}")
    if isinstance(exc, OSError) and not isinstance(exc, TaskError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{gw.slot}: {where}{exc.strerror or exc}"
    return f"{gw.slot}: {exc}" if gw.slot not in str(exc) else str(exc)


def status(cfg: Settings, gw: Gateway) -> dict:
    """One gateway's status as read with ``s6-svstat -o``, its state file and its owner
    record (``owner``: ``{host_id, pid, since}`` or None; ``standby``: up here, waiting
    for the host that owns it).

    An unsupervised slot reads as down; a permission problem is an error naming the fix.
    """
    s6 = S6(cfg.s6_bin_dir)
    doc = {"profile": gw.profile, "slot": gw.slot, "registered": os.path.isdir(gw.path),
           "up": False, "wanted_up": False, "normally_up": False, "pid": None,
           "desired_state": state.read_desired(cfg.hermes_home, gw.profile),
           "owner": ownership.read_owner(cfg.hermes_home, gw.profile), "standby": False}
    if not doc["registered"] or s6.supervised(gw.path) is False:
        return doc
    try:
        st = s6.svstat(gw.path)
    except (NotSupervised, NoSuchSlot):
        return doc
    except S6Error as exc:
        raise TaskError(explain(exc, cfg, gw)) from None
    doc.update(up=st["up"], wanted_up=st["wantedup"], normally_up=st["normallyup"],
               pid=st["pid"] if st["up"] else None)
    # Up here while another host's record holds the profile: data/own waits on its lock.
    owner = doc["owner"]
    doc["standby"] = bool(st["up"] and owner and owner["host_id"] != cfg.host_id)
    return doc
