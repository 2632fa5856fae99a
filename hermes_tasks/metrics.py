"""``gateway.status --format prometheus``: the status records as OpenMetrics text (SPEC §14.8).

One ``hermes_tasks_`` prefix; labels ``profile``, ``host`` (the host reporting) and, for
per-platform series, ``platform``. The same text can be written atomically to a file for
node-exporter's textfile collector (:func:`write_textfile`, the ``metrics_textfile``
setting). Made from :func:`status.collect`'s records only: no second read of anything.
"""

from __future__ import annotations

import os

from . import fsops

PREFIX = "hermes_tasks_"
# name, type, help; gauges take 0/1 or a number, the counter is read from s6's death tally
FAMILIES = (
    ("up", "gauge", "1 when s6 has the gateway up on this host (a standby counts)"),
    ("ready", "gauge", "1 when the gateway is ready (the same test as gateway.start --wait)"),
    ("desired_running", "gauge", "1 when the profile's desired state is running"),
    ("placed", "gauge", "1 when gateway_profiles places the profile on this host"),
    ("healthy", "gauge", "1 when the gateway runs as desired here (what --health checks)"),
    ("restarts", "counter", "exits s6 recorded in the slot's death tally"),
    ("last_exit_code", "gauge", "exit code of the last exit (absent: none recorded or "
                                "killed by a signal)"),
    ("uptime_seconds", "gauge", "seconds since s6 started the gateway"),
    ("port", "info", "a platform's port: effective (port, enabled) and actually served"),
    ("platform_up", "gauge", "1 when the gateway records the platform as connected/running"),
)
UP_STATES = frozenset({"connected", "running", "ok", "ready"})


def _label(value: object) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kw) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in kw.items()) + "}"


def text(docs: list[dict], host: str) -> str:
    """The OpenMetrics exposition of ``docs`` (status records), ending in ``# EOF``."""
    samples: dict[str, list[str]] = {name: [] for name, _, _ in FAMILIES}
    for d in docs:
        base = {"profile": d["profile"], "host": host}
        lab = _labels(**base)
        samples["up"].append(f"{PREFIX}up{lab} {int(bool(d['up']))}")
        samples["ready"].append(f"{PREFIX}ready{lab} {int(bool(d['ready']))}")
        samples["desired_running"].append(
            f"{PREFIX}desired_running{lab} {int(d['desired'] == 'running')}")
        samples["placed"].append(f"{PREFIX}placed{lab} {int(bool(d['placed']))}")
        samples["healthy"].append(f"{PREFIX}healthy{lab} {int(bool(d['healthy']))}")
        if d["restarts"] is not None:
            samples["restarts"].append(f"{PREFIX}restarts_total{lab} {d['restarts']}")
        last = d["last_exit"] or {}
        if last.get("code") is not None:
            samples["last_exit_code"].append(f"{PREFIX}last_exit_code{lab} {last['code']}")
        if d["uptime"] is not None:
            samples["uptime_seconds"].append(f"{PREFIX}uptime_seconds{lab} {d['uptime']:g}")
        for plat, p in sorted(d["ports"].items()):
            served = {True: "true", False: "false", None: "unknown"}[p["served"]]
            lab_p = _labels(**base, platform=plat, port=p["port"] if p["port"] else "",
                            enabled=str(p["enabled"]).lower(), served=served)
            samples["port"].append(f"{PREFIX}port_info{lab_p} 1")
        for plat, p in sorted(d["platforms"].items()):
            up = int((p.get("state") or "") in UP_STATES)
            samples["platform_up"].append(
                f"{PREFIX}platform_up{_labels(**base, platform=plat)} {up}")
    out = []
    for name, kind, help_ in FAMILIES:
        out += [f"# TYPE {PREFIX}{name} {kind}", f"# HELP {PREFIX}{name} {help_}"]
        out += samples[name]
    out.append("# EOF")
    return "\n".join(out) + "\n"


def write_textfile(path: str, body: str) -> None:
    """Replace ``path`` with ``body`` in one rename (node-exporter never sees half a file).

    ``path`` is root's setting, but it could name a directory below the volume: its
    directory is reached without following a symlink and refused when another user can
    write it (:func:`fsops.open_private_path`); the file is replaced, never written through
    a link. Mode 0644: metrics are public.
    """
    directory, name = os.path.split(os.path.abspath(path))
    dfd = fsops.open_private_path(directory)
    try:
        fsops.write_atomic(dfd, name, body.encode(), 0o644, durable=False)
    finally:
        os.close(dfd)


def publish(cfg, warn) -> None:
    """Write the Prometheus text to ``metrics_textfile`` when set; a problem is a warning,
    never the caller's failure. Root's reconcile and every pass of the agent call it."""
    path = getattr(cfg, "metrics_textfile", None)
    if not path:
        return
    from . import status as model
    from .errors import TaskError

    try:
        write_textfile(path, text(model.collect(cfg), cfg.host_id))
    except (OSError, TaskError) as exc:
        warn(f"metrics_textfile {path}: {getattr(exc, 'strerror', None) or exc}")
