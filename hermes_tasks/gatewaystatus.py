"""``gateway.status``, the task: the status model (:mod:`.status`) printed as text, JSON or
metrics, and ``--health``'s verdict. Reached without Invoke (:mod:`.fastpath`), so it
imports only what it prints.
"""

from __future__ import annotations

from .inventory import Settings


def command(cfg: Settings, profile: str | None, json: bool, health: bool = False,
            format: str | None = None) -> int:
    """``gateway.status``: every profile on the volume (or one), explained (SPEC §14.8).

    0 normally; with ``health``, 1 unless every gateway that should run here is ready and
    the supervision tree is sound (one line per problem on stderr).
    """
    import json as jsonlib
    import sys

    from . import fsops
    from .errors import UsageError
    from .status import collect, human, problems

    fmt = (format or ("json" if json else "text")).lower()
    if fmt not in ("text", "json", "prometheus", "openmetrics"):
        raise UsageError(f"--format: expected text, json or prometheus, got {format!r}")
    quiet = health and format is None and not json
    if cfg.profile_isolation and not fsops.IS_ROOT:
        # Isolated profiles' files are their own uids': root reads them (SPEC §16).
        from . import channel

        channel.refuse_named(cfg, channel.root_settings(cfg), "gateway.status")
        docs = channel.ask_status(cfg, profile, _warn)
    else:
        target = None
        if profile:
            from . import control

            target = control.target(cfg, profile)
        # served_ports is the one field only the JSON prints
        docs = collect(cfg, target, _warn, served_ports=fmt == "json")
    if quiet:
        pass  # the health check's output is its problem lines (Docker keeps the last 4 KiB)
    elif fmt == "json":
        print(jsonlib.dumps({"gateways": docs}))
    elif fmt in ("prometheus", "openmetrics"):
        from . import metrics

        sys.stdout.write(metrics.text(docs, cfg.host_id))
    else:
        sys.stdout.write(human(docs) if docs else f"no profiles under {cfg.hermes_home}\n")
    if not health:
        return 0
    found = problems(cfg, docs)
    for line in found:
        sys.stderr.write(f"hermes-tasks: unhealthy: {line}\n")
    return 1 if found else 0


def _warn(message: str) -> None:
    # report (and the change records it imports) is ~10 ms of imports a status call that
    # warns of nothing never needs
    from . import report

    report.warn(message)
