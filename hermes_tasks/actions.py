"""Task bodies that need no Invoke: flags → :class:`Intent` → :func:`engine.run` → report.

Each takes settings and flags, prints, and returns an exit code (SPEC §8): 0 converged or
changed, 2 some item of a multi-item run failed, 1 the single target of a task failed.
The Invoke tasks in ``commands/`` call these; so does the boot entry point.
"""

from __future__ import annotations

import json as jsonlib
import sys

from . import engine, report
from .errors import TaskError, UsageError
from .intent import CREATE, DELETE, RECONCILE, Intent
from .inventory import Settings


def json_errors(fn):
    """With ``json=True``, an expected failure is still one JSON object on stdout (SPEC §8).

    The one-line error goes to stderr as always; the exit code is the error's.
    """
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TaskError as exc:
            if not kwargs.get("json"):
                raise
            report.emit([], True, fn.__name__, error=str(exc))
            sys.stderr.write(f"hermes-tasks: error: {exc}\n")
            return exc.code

    return wrapper


@json_errors
def reconcile(cfg: Settings, check: bool, diff: bool, json: bool, wait: bool = False,
              timeout: float | None = None) -> int:
    """``reconcile``: converge every slot and what runs, report, and return 0 or 2."""
    intent = Intent(RECONCILE, wait=wait, timeout=_timeout(cfg, timeout))
    result = engine.run(cfg, intent, check=check, diff=diff)
    aside = result.registrar
    rows = result.rows
    report.emit(rows, json, "reconcile", check=check,
                extra={"registrar": aside.as_json()} if aside else None,
                aside=[aside] if aside and aside.result != "ok" else [])
    return report.exit_code(rows + ([aside] if aside else []), multi=True)


@json_errors
def gateway(cfg: Settings, action: str, profile: str | None, all_: bool, wait: bool,
            timeout: float | None, json: bool, check: bool, diff: bool = False) -> int:
    """``gateway.start/stop/restart``: one gateway (or ``--all``) through the engine."""
    from . import control

    if all_ and profile:
        raise UsageError("give either -p NAME or --all, not both")
    if all_:
        if action == "start":
            raise UsageError("gateway.start takes -p NAME, not --all")
        if not control.registered(cfg):
            raise TaskError(f"no gateway slots registered in {cfg.scandir}")
        intent = Intent(action, all=True, wait=wait, timeout=_timeout(cfg, timeout))
    else:
        name = control.target(cfg, profile or "default")
        intent = Intent(action, frozenset({name}), wait=wait, timeout=_timeout(cfg, timeout))
    return _finish(cfg, intent, f"gateway.{action}", check, diff, json, multi=all_)


@json_errors
def profile_create(cfg: Settings, name: str, start: bool, check: bool, diff: bool,
                   json: bool) -> int:
    """``profile.create``: a profile directory and its slot, through the engine."""
    from . import control

    control.check_name(name)
    import os

    if not os.path.isdir(cfg.scandir):  # no s6 here: the profile still, as hermes's hook does
        return _create_without_scandir(cfg, name, start, check, json)
    return _finish(cfg, Intent(CREATE, frozenset({name}), start=start), "profile.create",
                   check, diff, json)


def _create_without_scandir(cfg: Settings, name: str, start: bool, check: bool,
                            json: bool) -> int:
    """``profile.create`` where no scandir exists: make the profile, warn there is no slot."""
    from . import profiles
    from .execute import volume

    exists = profiles.profile_exists(cfg.hermes_home, name)
    if not exists and not check:
        volume.create_profile(cfg, name)
    verb = "would create" if check else "created"
    row = report.Row(None, name, None, "registered" if not start else "started",
                     "ok" if exists else "changed",
                     "profile already exists" if exists else f"{verb} profiles/{name}")
    report.warn(f"no gateway slot registered for {name}: scandir {cfg.scandir} does not exist "
                "or is not a directory (run `hermes-tasks reconcile` once s6 runs there)")
    if start:
        error = f"cannot start {name}: scandir {cfg.scandir} does not exist"
        if json:
            report.emit([row], True, "profile.create", check=check, error=error)
        else:
            sys.stderr.write(f"hermes-tasks: error: {error}\n")
        return 1
    report.emit([row], json, "profile.create", check=check)
    return 0


@json_errors
def profile_delete(cfg: Settings, name: str, purge: bool, check: bool, diff: bool,
                   json: bool) -> int:
    """``profile.delete``: stop and retire the slot, move the profile to .trash (or purge)."""
    from . import control, profiles

    control.check_name(name)
    if name == profiles.DEFAULT:
        raise UsageError("the default profile is the root hermes_home and cannot be deleted")
    if not profiles.profile_exists(cfg.hermes_home, name):
        raise UsageError(f"no profile '{name}' under {cfg.hermes_home}/profiles")
    from . import ownership

    elsewhere = ownership.held_elsewhere(cfg.hermes_home, name, cfg.host_id)
    if elsewhere:
        raise TaskError(f"profile '{name}' is running on {elsewhere}: delete it there, or stop "
                        "it there first")
    return _finish(cfg, Intent(DELETE, frozenset({name}), purge=purge), "profile.delete",
                   check, diff, json)


def _finish(cfg: Settings, intent: Intent, title: str, check: bool, diff: bool, json: bool,
            multi: bool = False) -> int:
    """Run, report; a failed single target is the task's one-line error (exit 1)."""
    rows = engine.run(cfg, intent, check=check, diff=diff).rows
    error = None if multi else engine.single_failure(rows)
    if error is not None:
        if json:
            report.emit(rows, True, title, check=check, error=error)
        else:
            sys.stderr.write(f"hermes-tasks: error: {error}\n")
        return 1
    report.emit(rows, json, title, check=check)
    return report.exit_code(rows, multi=True)


def _timeout(cfg: Settings, value) -> float:
    """``--timeout``: seconds, decimals allowed; default ``readiness_timeout``."""
    if value is None or value == "":
        return float(cfg.readiness_timeout)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"--timeout: expected a number of seconds, got {value!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise UsageError(f"--timeout: expected a non-negative number of seconds, got {value!r}")
    return seconds


def status(cfg: Settings, profile: str | None, json: bool) -> int:
    """``gateway.status``: one gateway (or every registered one), read from supervise/status."""
    from . import control, placement

    if profile:
        placement.require(profile, cfg.gateway_profiles, cfg.host_id)
    names = [control.target(cfg, profile)] if profile else control.registered(cfg)
    docs = [control.status(cfg, name) for name in names]
    _add_ports(cfg, docs)
    if json:
        print(jsonlib.dumps({"gateways": docs}))
        return 0
    for d in docs:
        if not d["registered"]:
            line = "not registered"
        elif d["supervised"] is False:
            line = "not supervised"
        else:
            line = (f"up (pid {d['pid']})" if d["up"] else "down") + \
                (", ready" if d["ready"] else "") + \
                (f", standby, owned by {d['owner']['host_id']}" if d["standby"] else "") + \
                (", wanted up" if d["wanted_up"] else ", wanted down") + \
                (", normally up" if d["normally_up"] else ", normally down")
            if not d["up"] and d["exit_code"] is not None:
                line += f", exited {d['exit_code']}" + (f": {d['reason']}" if d["reason"] else "")
        print(f"{d['slot']}: {line}; desired_state={d['desired_state']}; "
              f"ports: {_ports_text(d)}")
    if not docs:
        print(f"no gateway slots registered in {cfg.scandir}")
    return 0


def _add_ports(cfg: Settings, docs: list[dict]) -> None:
    """Each gateway's API server and webhook ports (SPEC §11), read like reconcile does.

    ``api_server_port``/``webhook_port`` are the ports each would bind (null when
    unknown); ``*_enabled`` whether hermes would turn that platform on.
    """
    from . import ports, profiles, report

    found, _ = profiles.discover(cfg.hermes_home, lambda _msg: None)
    names = [p.name for p in found[1:]]
    gws = ports.for_settings(cfg, names, lambda msg: report.warn(msg), write=False)
    for d in docs:
        gw = gws.get(d["profile"])
        for plat in ports.PLATFORMS:
            d[f"{plat}_port"] = gw.ports.get(plat) if gw else None
            d[f"{plat}_enabled"] = bool(gw and plat in gw.bound)


def _ports_text(d: dict) -> str:
    return ", ".join(f"{plat} {d.get(plat + '_port') or '-'} "
                     f"({'on' if d.get(plat + '_enabled') else 'off'})"
                     for plat in ("api_server", "webhook"))
