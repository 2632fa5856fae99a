"""The agent: each host's long-running root loop in the registrar slot (SPEC §14.3).

Every ``watch_interval`` seconds it takes a stat-level look at everything a reconcile
converges — the profiles directory, each profile's state, settings and request files,
the scandir and each gateway slot's ``supervise/status`` and hold record — and only when
something moved does it converge: one reconcile (root's settings, the one executor), then
the restart requests of gateways this host runs. So an intent recorded on the shared
volume by any host (``desired_state``, a restart request) takes effect on the owning host
within seconds, and a gateway brought down behind the tool's back, or a crash-loop hold
whose cause was fixed, converges without anyone running a command.

Idle, a look is a few ``stat`` calls per profile and no file is read (``bench/agent.py``).
The volume is hostile input: nothing here follows a symlink or reads what it stats; a
request is only its existence, consumed by removing it.
"""

from __future__ import annotations

import os

from . import fsops, ownership, profiles, state
from .inventory import Settings

RESTART_REQUEST = ownership.RESTART_REQUEST
_PROFILE_FILES = ("gateway_state.json", ".env", "config.yaml", RESTART_REQUEST)


def _stat(path: str) -> tuple | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


STATE = "gateway_state.json"


def fingerprint(settings: Settings) -> dict:
    """What a reconcile would look at: (inode, mtime, size) of each file, keyed by
    (profile or slot, file). Equal fingerprints mean nothing it converges changed. No file
    is opened.

    A slot's ``supervise/status`` is replaced at every change s6 sees, ``finish`` holding
    a gateway down included (so ``data/hold`` needs no look of its own).
    """
    home, scandir = settings.hermes_home, settings.scandir
    out: dict = {("", "home"): _stat(home), ("", "profiles"): _stat(f"{home}/profiles"),
                 ("", "scandir"): _stat(scandir)}
    for f in _PROFILE_FILES:
        out[(profiles.DEFAULT, f)] = _stat(f"{home}/{f}")
    try:
        named = os.listdir(f"{home}/profiles")
    except OSError:
        named = []
    for name in named:
        if profiles.valid_name(name):
            base = f"{home}/profiles/{name}/"
            for f in _PROFILE_FILES:
                out[(name, f)] = _stat(base + f)
    try:
        slots = [n for n in os.listdir(scandir) if n.startswith(profiles.SLOT_PREFIX)]
    except OSError:
        slots = []
    for slot in slots:
        out[(slot, "status")] = _stat(f"{scandir}/{slot}/supervise/status")
    return out


class Watch:
    """What the agent saw last: the fingerprint, and each profile's ``desired_state``.

    A running gateway rewrites its ``gateway_state.json`` often (its platforms, its active
    agents); of that file only ``desired_state`` is an intent, so a change of the file
    alone that leaves it as it was needs no reconcile.
    """

    def __init__(self) -> None:
        self.seen: dict | None = None
        self.desired: dict[str, str | None] = {}

    def moved(self, settings: Settings, now: dict) -> bool:
        if self.seen is None:
            return True
        changed = {k for k in now.keys() | self.seen.keys() if now.get(k) != self.seen.get(k)}
        if not changed:
            return False
        if any(f != STATE for _, f in changed):
            return True
        for name, _ in changed:  # only state files: did an intent change?
            if name not in self.desired:
                return True
            if state.read_desired(settings.hermes_home, name) != self.desired[name]:
                return True
        self.seen = now
        return False

    def remember(self, settings: Settings, now: dict) -> None:
        self.seen = now
        self.desired = {name: state.read_desired(settings.hermes_home, name)
                        for name, f in now if f == STATE and now[(name, f)] is not None}


def requests(settings: Settings) -> list[str]:
    """Profiles with a restart request on record (default first, then by name)."""
    home = settings.hermes_home
    found = []
    if _stat(os.path.join(home, RESTART_REQUEST)):
        found.append(profiles.DEFAULT)
    try:
        named = sorted(os.listdir(os.path.join(home, "profiles")))
    except OSError:
        named = []
    found += [n for n in named if profiles.valid_name(n)
              and _stat(os.path.join(home, "profiles", n, RESTART_REQUEST))]
    return found


def consume(settings: Settings, name: str) -> bool:
    """Remove ``name``'s restart request (never following a link); False if it was gone."""
    try:
        with fsops.opened_dir(settings.hermes_home, profiles.profile_parts(name)) as dfd:
            os.unlink(RESTART_REQUEST, dir_fd=dfd)
    except OSError:
        return False
    return True


def runs_here(settings: Settings, name: str) -> bool:
    """Whether this host runs ``name``'s gateway: its owner record names this host and no
    other host holds the ownership lock (one host: whenever its slot is up)."""
    if not settings.shared_volume:
        return True
    if ownership.held_elsewhere(settings.hermes_home, name, settings.host_id, True):
        return False
    record = ownership.read_owner(settings.hermes_home, name)
    return bool(record and record["host_id"] == settings.host_id)


def converge(settings: Settings, log=print) -> None:
    """One reconcile, then the restart requests of gateways this host runs."""
    from . import engine
    from .errors import TaskError
    from .intent import RECONCILE, RESTART, Intent

    def run(intent: Intent) -> None:
        try:
            result = engine.run(settings, intent, manage_registrar=False, warn=lambda m: None)
        except TaskError as exc:
            log(f"agent: {intent.task}: {exc}")
            return
        for row in result.rows:
            if row.result in ("changed", "failed"):
                log(f"agent: {row.profile}: {row.result}: {row.message}")

    run(Intent(RECONCILE))
    for name in requests(settings):
        if runs_here(settings, name) and consume(settings, name):
            run(Intent(RESTART, frozenset({name})))


def tick(settings: Settings, watch: Watch, log=print) -> bool:
    """One look: converge if anything it converges moved since the last. True if it did.

    SIGTERM (a container stop, or a request restarting the registrar) ends a pass at once:
    the executor is safe to interrupt (a restart it owed is finished by the next run), and
    a stopping container must not wait for a reconcile.
    """
    from . import metrics

    now = fingerprint(settings)
    if not watch.moved(settings, now):
        metrics.publish(settings, log)  # metrics_textfile: fresh on every pass (SPEC §14)
        return False
    converge(settings, log)
    watch.remember(settings, fingerprint(settings))
    metrics.publish(settings, log)
    return True


def ticker(settings_now, log=print):
    """The registrar's periodic callback and its interval, or (None, None) when
    ``watch_interval`` is 0 or there are no settings: ``settings_now()`` gives root's
    current settings (re-read when their file changes)."""
    settings, _ = settings_now()
    if settings is None or settings.watch_interval <= 0:
        return None, None
    # The first look converges: what changed between the registrar's own run (or its
    # skipped one) and this loop is not in any fingerprint.
    seen = Watch()

    def tick_now() -> None:
        current, _ = settings_now()
        if current is None or current.watch_interval <= 0:
            return
        try:
            tick(current, seen, lambda m: log(m))
        except Exception as exc:  # noqa: BLE001 - a bug must not end the agent: next look
            import traceback

            traceback.print_exc()
            log(f"agent: unexpected {type(exc).__name__}: {exc}")

    return tick_now, float(settings.watch_interval)
