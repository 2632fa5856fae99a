"""Task bodies that need no Invoke: flags → :class:`Intent` → :func:`engine.run` → report.

Each takes settings and flags, prints, and returns an exit code (SPEC §8): 0 converged or
changed, 2 some item of a multi-item run failed, 1 the single target of a task failed.
The Invoke tasks in ``commands/`` call these; so does the boot entry point.
"""

from __future__ import annotations

import os
import sys

from . import engine, fsops, report
from .errors import TaskError, UsageError
from .intent import CREATE, DELETE, RECONCILE, Intent
from .inventory import Settings
from .profiles import DEFAULT
from .volfile import shown


def reconcile(cfg: Settings, check: bool, diff: bool, json: bool, wait: bool = False,
              timeout: float | None = None, show_secrets: bool = False) -> int:
    """``reconcile``: converge every slot and what runs, report, and return 0 or 2."""
    intent = Intent(RECONCILE, wait=wait, timeout=_timeout(cfg, timeout))
    result = engine.run(cfg, intent, check=check, diff=diff, show_secrets=show_secrets)
    if not check and os.geteuid() == 0:
        from . import metrics

        metrics.publish(cfg, report.warn)  # metrics_textfile (SPEC §14): after every root reconcile
    aside = result.registrar
    rows = result.rows
    report.emit(rows, json, "reconcile", check=check,
                extra={"registrar": aside.as_json()} if aside else None,
                aside=[aside] if aside else [])
    return report.exit_code(rows + ([aside] if aside else []), multi=True)


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


def profile_create(cfg: Settings, name: str, start: bool, check: bool, diff: bool,
                   json: bool, show_secrets: bool = False) -> int:
    """``profile.create``: a profile directory and its slot, through the engine."""
    from . import control

    control.check_name(name)
    import os

    if not os.path.isdir(cfg.scandir):  # no s6 here: the profile still, as hermes's hook does
        return _create_without_scandir(cfg, name, start, check, json)
    return _finish(cfg, Intent(CREATE, frozenset({name}), start=start), "profile.create",
                   check, diff, json, show_secrets=show_secrets)


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
            report.emit([row], True, "profile.create", check=check, error=error,
                        extra={"code": 1})
        else:
            sys.stderr.write(f"hermes-tasks: error: {error}\n")
        return 1
    report.emit([row], json, "profile.create", check=check)
    return 0


def profile_delete(cfg: Settings, name: str, purge: bool, check: bool, diff: bool,
                   json: bool, show_secrets: bool = False) -> int:
    """``profile.delete``: stop and retire the slot, move the profile to .trash (or purge)."""
    from . import control, profiles

    control.check_name(name)
    if name == profiles.DEFAULT:
        raise UsageError("the default profile is the root hermes_home and cannot be deleted")
    if not profiles.profile_exists(cfg.hermes_home, name):
        raise UsageError(f"no profile '{name}' under {cfg.hermes_home}/profiles")
    from . import ownership

    elsewhere = ownership.held_elsewhere(cfg.hermes_home, name, cfg.host_id,
                                         cfg.shared_volume, report.warn)
    if elsewhere:
        raise TaskError(f"profile '{name}' is running on {elsewhere}: delete it there, or stop "
                        "it there first")
    return _finish(cfg, Intent(DELETE, frozenset({name}), purge=purge), "profile.delete",
                   check, diff, json, show_secrets=show_secrets)


def _finish(cfg: Settings, intent: Intent, title: str, check: bool, diff: bool, json: bool,
            multi: bool = False, show_secrets: bool = False) -> int:
    """Run, report; a failed single target is the task's one-line error (exit 1)."""
    rows = engine.run(cfg, intent, check=check, diff=diff, show_secrets=show_secrets).rows
    error = None if multi else engine.single_failure(rows)
    if error is not None:
        if json:
            report.emit(rows, True, title, check=check, error=error, extra={"code": 1})
        else:
            sys.stderr.write(f"hermes-tasks: error: {shown(error, None)}\n")
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


def logs(cfg: Settings, profile: str | None, lines, follow: bool, host: str) -> int:
    """``gateway.logs``: the last ``lines`` lines of a gateway's log, readable (SPEC §14.8)."""
    from . import control
    from . import logs as logview
    from .inventory import HOST_ID_RE

    name = control.target(cfg, profile or "default")
    try:
        count = int(lines)
    except (TypeError, ValueError):
        raise UsageError(f"--lines: expected a whole number, got {lines!r}") from None
    if count < 0:
        raise UsageError(f"--lines: expected a whole number, got {lines!r}")
    if not HOST_ID_RE.fullmatch(host):
        raise UsageError(f"--host: not a host name: {host!r}")
    if cfg.profile_isolation and not fsops.IS_ROOT and name != DEFAULT:
        # An isolated profile's log directory is its own uid's: root reads it (SPEC §16).
        from . import channel

        if follow:
            raise UsageError(f"--follow of isolated profile {name}'s log needs root (e.g. "
                             f"`docker exec -u 0 CONTAINER hermes-tasks gateway.logs -p {name} "
                             "-f`); without --follow root sends the last lines")
        if count > channel.MAX_LOG_LINES:
            raise UsageError(f"--lines: at most {channel.MAX_LOG_LINES} through the registrar")
        channel.refuse_named(cfg, channel.root_settings(cfg), "gateway.logs")
        got = channel.ask_logs(cfg, name, count, host, lambda msg: report.warn(msg))
        sys.stdout.write("".join(line + "\n" for line in got))
        return 0
    parts = logview.directory(name, host, cfg.shared_volume)
    where = "/".join((cfg.hermes_home, *parts, logview.CURRENT))
    if follow:
        try:
            logview.follow(cfg.hermes_home, parts, count, sys.stdout)
        except KeyboardInterrupt:
            return 0
        except OSError as exc:
            raise TaskError(f"cannot read {where}: {exc.strerror or exc}") from None
        return 0
    sys.stdout.write("".join(line + "\n" for line in
                             logview.last(cfg.hermes_home, parts, count)))
    return 0
