"""How every gateway is doing, and why (SPEC §14.8): the model behind ``gateway.status``.

One record per profile on the volume (placed here or not), read, never planned: s6's
``supervise/status`` and ``death_tally``, the logger's status, the gateway's own
``gateway_state.json`` (state, pid, each platform's state and error), the owner record,
the ports the profile's files and the inventory give it, and the ports its process
actually listens on. Nothing is rendered and nothing changes; ``-p NAME`` reads that
profile only (and the others' port files only when a port conflict must be named).

Anything not running as desired gets one reason line (``why``) with a stable kind
(``why_kind``). Reasons come from :data:`REASONS`, an ordered dict of providers: each is
``fn(view, record) -> str | None`` and the first non-None answer wins. Another part of the
tool plugs a verdict in by adding a provider (:func:`provide`), or, without importing
anything, by leaving a reason in the slot's ``data/hold`` (:data:`HOLD`, first line,
at most 4 KiB; read by the ``held`` provider) — e.g. ``finish`` holding a crash loop down.
"""

from __future__ import annotations

import datetime
import os
import struct
import time
from collections.abc import Callable

from . import fsops, ownership, placement, profiles, readiness, records, state, supervision, svstatus
from . import ports as portsmod
from .inventory import Settings
from .names import REGISTRAR
from .profiles import DEFAULT, SLOT_PREFIX

HOLD = "data/hold"  # a slot's recorded reason for staying down (written by its finish)
HOLD_LIMIT = 4096
TALLY = "supervise/death_tally"
TALLY_RECORD = 14  # TAI64N (12 bytes), exit code, signal (s6 2.11; what s6-svdt prints)
TALLY_LIMIT = 4096 * TALLY_RECORD  # max-death-tally is at most 4096
LOG_LINES = 5  # quoted with a crash loop or an exit
CRASH_LIMIT, CRASH_WINDOW = 5, 60  # SPEC §14 defaults, when the inventory has none


@records.record
class View:
    """What one ``gateway.status`` run knows beyond a single record (read lazily)."""

    cfg: Settings
    names: list[str]  # every profile on the volume, default first, then by name
    now: float = records.field(default_factory=time.time)
    _blocked: dict[str, str] | None = None
    _netns: dict[int, dict[str, int]] = records.field(default_factory=dict)
    # whether each up gateway's own listening ports are read (``served_ports``: only the
    # JSON shows them); a platform that is on is always checked
    served_ports: bool = True
    _listening: dict[int, set[int] | None] = records.field(default_factory=dict)

    @property
    def host_check(self) -> str | None:
        """The host a ready gateway's owner record must name (shared volume only)."""
        return self.cfg.host_id if self.cfg.shared_volume else None

    def blocked(self) -> dict[str, str]:
        """Gateways another's port keeps down (the engine's rule, SPEC §11): name → why.

        Reads every profile's port files, so only when a record needs it.
        """
        if self._blocked is None:
            from .facts import ports as collide  # the engine's own rule

            found, _ = profiles.discover(self.cfg.hermes_home, lambda _m: None)
            known = _PortFacts(self.cfg, found)
            collide(known, lambda _m: None)
            self._blocked = known.blocked
        return self._blocked

    def listening(self, pid: int) -> set[int] | None:
        """TCP ports ``pid`` itself listens on; None when that cannot be told (read once
        per run: a record asks for its platforms and for ``served_ports``)."""
        if pid not in self._listening:
            from .facts import served

            unknown: set[int] = set()
            found = served.listening_many([pid], self._netns, unknown)
            self._listening[pid] = None if pid in unknown else found.get(pid, set())
        return self._listening[pid]


@records.record
class _PortFacts:
    """The part of :class:`facts.Facts` the port rule reads."""

    settings: Settings
    profiles: list
    unplaced: dict = records.field(default_factory=dict)
    blocked: dict = records.field(default_factory=dict)
    ports: dict = records.field(default_factory=dict)

    def __post_init__(self):
        for p in self.profiles:
            if not placement.placed(p.name, self.settings.gateway_profiles):
                self.unplaced[p.name] = placement.reason(self.settings.host_id)


# --------------------------------------------------------------------------- reading


def deaths(slot: str) -> list[dict] | None:
    """s6's death tally of a slot, oldest first: ``{at, code, signal}`` each (as s6-svdt
    prints them); [] when none, None when it cannot be read."""
    # By path: supervise/ is root's and may be search-only for the service user (0710).
    try:
        fd = os.open(os.path.join(slot, TALLY), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC)
        try:
            raw = fsops.read_fd(fd, TALLY_LIMIT, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return []
    except OSError:
        return None
    out = []
    for i in range(0, len(raw) - len(raw) % TALLY_RECORD, TALLY_RECORD):
        secs, nanos, code, sig = struct.unpack_from(">QLBB", raw, i)
        out.append({"at": svstatus._unix(secs, nanos), "code": None if sig else code,
                    "signal": _signame(sig) if sig else None})
    return out


def _signame(num: int) -> str:
    import signal

    try:
        return signal.Signals(num).name
    except ValueError:
        return f"SIG{num}"


def _hold(slot: str) -> str | None:
    """Another kind of hold's reason: the first line of ``data/hold`` when it is not
    finish's crash-loop record (that one is :func:`_crash_loop`'s)."""
    from . import crashloop

    if crashloop.read_hold(slot) is not None:
        return None
    try:
        with fsops.opened_dir(slot, ("data",)) as dfd:
            raw = fsops.read_bounded(dfd, "hold", HOLD_LIMIT)
    except OSError:
        return None
    line = raw.decode("utf-8", "replace").strip().split("\n", 1)[0].strip()
    return state.printable(line) if line else None


def _iso(unix: float | None) -> str | None:
    if unix is None:
        return None
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _served(view: View, pid: int | None, bound: dict[str, int]) -> dict[str, bool | None]:
    """For each platform that is on: whether process ``pid`` listens on its port (None:
    cannot tell — not up, or its sockets are not ours to see)."""
    mine = view.listening(pid) if pid is not None and bound else None
    return {plat: (None if mine is None else port in mine) for plat, port in bound.items()}


def record(view: View, name: str, gs: state.GatewayState, gw: portsmod.Gateway | None) -> dict:
    """Everything ``gateway.status`` says of one profile (the JSON record, stable keys)."""
    cfg = view.cfg
    slot = SLOT_PREFIX + name
    path = os.path.join(cfg.scandir, slot)
    placed = placement.placed(name, cfg.gateway_profiles)
    desired = gs.desired_state
    doc = {"profile": name, "slot": slot, "registered": os.path.isdir(path),
           "up": False, "wanted_up": False, "normally_up": False, "pid": None,
           "desired_state": profiles.escape(desired) if desired is not None else None,
           "supervised": False, "ready": False, "exit_code": None, "reason": None,
           "owner": ownership.read_owner(cfg.hermes_home, name), "standby": False,
           # new in SPEC §14.8
           "placed": placed, "desired": "running" if gs.autostart else "stopped",
           "observed": "not registered", "host": None, "since": None, "uptime": None,
           "restarts": None, "last_exit": None, "logger": None,
           "platforms": {p: dict(v) for p, v in sorted(gs.platforms.items())},
           "ports": {}, "served_ports": None, "api_server_bind_failed": False,
           "why": None, "why_kind": None, "log_tail": [], "healthy": True}
    st = svstatus.Status(supervised=False)
    if doc["registered"]:
        try:
            st = svstatus.read(path)
        except (PermissionError, ValueError):
            st = svstatus.Status(supervised=None)
        except FileNotFoundError:
            pass
    doc["supervised"] = st.supervised
    if doc["registered"] and st.supervised is not False:
        doc.update(up=st.up, wanted_up=st.wanted_up, normally_up=st.normally_up,
                   pid=st.pid if st.up else None,
                   exit_code=None if st.up or not st.normally_up else st.exit_code)
        doc["ready"] = readiness.is_ready(st, cfg.hermes_home, name, view.host_check, gs)
        if not st.up and st.exit_code is not None and doc["exit_code"] is not None:
            from .facts.runtime import KEPT_DOWN  # the facts package: only for an exit

            doc["reason"] = (gs.reason or None) if st.exit_code in KEPT_DOWN else None
        owner = doc["owner"]
        # a record on the volume is a claim: another host exists only on a shared volume
        doc["standby"] = bool(cfg.shared_volume and st.up and owner
                              and owner["host_id"] != cfg.host_id)
        doc["since"] = _iso(st.since)
        if st.up and st.since is not None:
            doc["uptime"] = round(max(0.0, view.now - st.since), 3)
        tally = deaths(path)
        doc["restarts"] = len(tally) if tally is not None else None
        doc["_deaths"] = tally or []
        last = (tally or [None])[-1]
        if not st.up and (st.exit_code is not None or st.signal) and st.normally_up:
            doc["last_exit"] = {"code": st.exit_code, "signal": st.signal,
                                "at": _iso(st.since), "reason": gs.reason}
        elif last is not None:
            doc["last_exit"] = {"code": last["code"], "signal": last["signal"],
                                "at": _iso(last["at"]),
                                "reason": None if st.up else gs.reason}
        doc["logger"] = _logger(path)
    doc["observed"] = _observed(doc, st)
    doc["host"] = _host(doc, cfg)
    if gw is not None:
        served = _served(view, doc["pid"], dict(gw.bound)) if doc["up"] else {}
        if doc["up"] and doc["pid"] and not doc["standby"] and view.served_ports:
            # SPEC §14.5: what it serves
            mine = view.listening(doc["pid"])
            doc["served_ports"] = sorted(mine) if mine is not None else None
        api = doc["platforms"].get("api_server") or {}
        doc["api_server_bind_failed"] = bool(
            served.get("api_server") is False and api.get("state") in ("fatal", "error", "failed"))
        doc["ports"] = {plat: {"port": gw.ports.get(plat), "enabled": plat in gw.bound,
                               "served": served.get(plat)} for plat in portsmod.PLATFORMS}
    for plat in portsmod.PLATFORMS:  # the flat keys of the first gateway.status JSON
        doc[f"{plat}_port"] = gw.ports.get(plat) if gw else None
        doc[f"{plat}_enabled"] = bool(gw and plat in gw.bound)
    _explain(view, doc, st)
    doc.pop("_deaths", None)
    return doc


def _logger(path: str) -> dict | None:
    try:
        st = svstatus.read(os.path.join(path, "log"))
    except (OSError, ValueError):
        return None
    return {"supervised": st.supervised, "up": st.up, "wanted_up": st.wanted_up,
            "exit_code": None if st.up else st.exit_code, "signal": st.signal}


def _observed(doc: dict, st: svstatus.Status) -> str:
    if not doc["registered"]:
        return "not registered"
    if st.supervised is False:
        return "not supervised"
    if doc["standby"]:
        return "standby"
    if st.up:
        return "ready" if doc["ready"] else "starting"
    if st.finishing:
        return "finishing"
    return "restarting" if st.wanted_up else "down"


def _host(doc: dict, cfg: Settings) -> str | None:
    """The host that runs the gateway: this one when it is up here as the owner, else the
    host of a live owner record."""
    owner = doc["owner"]
    if doc["up"] and not doc["standby"]:
        return cfg.host_id
    if cfg.shared_volume and owner and owner["host_id"] != cfg.host_id:
        return owner["host_id"]
    return None


# --------------------------------------------------------------------------- reasons

Provider = Callable[[View, dict], "str | None"]


def _not_placed(view: View, doc: dict) -> str | None:
    if doc["placed"]:
        return None
    where = f"; it runs on {doc['host']}" if doc["host"] else ""
    return f"not placed here: {placement.reason(view.cfg.host_id)}{where}"


def _standby(view: View, doc: dict) -> str | None:
    if doc["standby"]:
        return f"standby: running on {doc['owner']['host_id']}"  # the rows' wording
    return None


def _held(view: View, doc: dict) -> str | None:
    if doc["registered"] and not doc["up"]:
        return _hold(os.path.join(view.cfg.scandir, doc["slot"]))
    return None


def _operator(view: View, doc: dict) -> str | None:
    if doc["desired"] == "stopped" and not doc["up"]:
        recorded = doc["desired_state"]
        return ("stopped by the operator" + (f" (desired_state: {recorded})" if recorded
                                             else " (it was not running when last recorded)"))
    return None


def _port_conflict(view: View, doc: dict) -> str | None:
    if doc["up"] or doc["desired"] != "running":
        return None
    why = view.blocked().get(doc["profile"])
    return f"port conflict: {why.removeprefix('not started: ')}" if why else None


def _over_capacity(view: View, doc: dict) -> str | None:
    if doc["registered"] or doc["desired"] != "running":
        return None
    limit = view.cfg.max_slots
    if doc["profile"] in view.names and view.names.index(doc["profile"]) >= limit:
        return f"over capacity: max_slots ({limit}) gateway slots reached"
    return None


def _crash_loop(view: View, doc: dict) -> str | None:
    if doc["ready"] or not doc["registered"]:
        return None
    from . import crashloop

    if not doc["up"] and not doc["wanted_up"]:  # finish holds it down: its own record
        record = crashloop.read_hold(os.path.join(view.cfg.scandir, doc["slot"]))
        if record is not None:
            return record.text()
    tally = doc.get("_deaths") or []
    if not tally or tally[-1]["at"] is None:
        return None
    limit = getattr(view.cfg, "crash_limit", CRASH_LIMIT)
    window = getattr(view.cfg, "crash_window", CRASH_WINDOW)
    last = tally[-1]
    recent = [d for d in tally if d["at"] is not None and d["at"] >= last["at"] - window]
    if len(recent) < limit:
        return None
    if doc["wanted_up"] and view.now - last["at"] > window:
        return None  # an old loop that s6 has since come out of
    how = last["signal"] or last["code"]
    return f"crash loop: {len(recent)} exits in {window:g} s, last exit {how}"


def _exited(view: View, doc: dict) -> str | None:
    if doc["registered"] and not doc["up"] and not doc["wanted_up"] and doc["exit_code"] is not None:
        return supervision.failure(doc["exit_code"], None, doc["reason"])
    return None


def _logger_down(view: View, doc: dict) -> str | None:
    lg = doc["logger"]
    if not doc["registered"] or lg is None or lg["up"]:
        return None
    if lg["supervised"] is False:
        return "logger cannot start: not supervised"
    from .facts.runtime import logger_problem  # the rows' wording (one text for both)

    problem = logger_problem(os.path.join(view.cfg.scandir, doc["slot"]))
    if problem:
        return problem
    return f"logger not running: s6-log {supervision.ended(lg['exit_code'], lg['signal'])}"


# Platform states a gateway records for an adapter that gave up (hermes 0.19.0 writes
# "fatal", e.g. api_server_port_in_use); "retrying"/"connecting" are not failures yet.
PLATFORM_FAILED = frozenset({"fatal", "failed", "error", "startup_failed"})


def _failed_platforms(doc: dict) -> list[str]:
    return [plat for plat, p in doc["platforms"].items()
            if (p.get("state") or "") in PLATFORM_FAILED]


def _platform(view: View, doc: dict) -> str | None:
    failed = _failed_platforms(doc) if doc["up"] else []
    if not failed:
        return None
    p = doc["platforms"][failed[0]]
    code = f" ({p['error_code']})" if p.get("error_code") else ""
    return f"platform {failed[0]} {p['state']}{code}" + (f": {p['error']}" if p.get("error")
                                                         else "")


def _unregistered(view: View, doc: dict) -> str | None:
    if not doc["registered"]:
        return "no slot registered here: run reconcile"
    if doc["supervised"] is False:
        return "not supervised: no s6-supervise listens on it (is s6-svscan running?)"
    return None


def _starting(view: View, doc: dict) -> str | None:
    if doc["up"] and not doc["ready"]:
        return f"starting: up {doc['uptime'] or 0:g} s, not ready yet"
    if not doc["up"] and doc["wanted_up"]:
        last = doc["last_exit"] or {}
        how = supervision.ended(last.get("code"), last.get("signal")) or "down"
        return f"restarting: it last {how}"
    if not doc["up"]:
        return "down: not started (run gateway.start or reconcile)"
    return None


def _up_unwanted(view: View, doc: dict) -> str | None:
    if doc["up"] and doc["desired"] == "stopped":
        return "up although its desired state is stopped"
    return None


# Precedence: the first provider with an answer gives the one reason line. Keys are the
# stable ``why_kind`` values.
REASONS: dict[str, Provider] = {
    "not_placed": _not_placed,
    "standby": _standby,
    "crash_loop": _crash_loop,
    "held": _held,
    "stopped": _operator,
    "port_conflict": _port_conflict,
    "over_capacity": _over_capacity,
    "exited": _exited,
    "logger": _logger_down,
    "platform": _platform,
    "unregistered": _unregistered,
    "up_unwanted": _up_unwanted,
    "starting": _starting,
}


def provide(kind: str, fn: Provider, before: str | None = None) -> None:
    """Add (or replace) a reason provider, ahead of ``before`` when given."""
    REASONS.pop(kind, None)
    items = list(REASONS.items())
    at = next((i for i, (k, _) in enumerate(items) if k == before), len(items))
    items.insert(at, (kind, fn))
    REASONS.clear()
    REASONS.update(items)


def _as_desired(doc: dict) -> bool:
    """Running as desired here: ready when it should run here, down when it should not."""
    if not doc["placed"] or doc["standby"]:
        return True
    if doc["desired"] == "running":
        return doc["ready"] and doc["logger"] is not None and bool(doc["logger"]["up"]) \
            and not _failed_platforms(doc)
    return not doc["up"]


def _explain(view: View, doc: dict, st: svstatus.Status) -> None:
    doc["healthy"] = _as_desired(doc)
    if doc["ready"] and doc["healthy"]:
        return
    for kind, fn in REASONS.items():
        try:
            why = fn(view, doc)
        except Exception as exc:  # a provider's bug must not hide every other gateway
            why = f"cannot tell ({kind}: {exc})"
        if why:
            doc["why"], doc["why_kind"] = why, kind
            break
    if doc["why_kind"] in ("crash_loop", "exited", "held"):
        from . import logs

        parts = logs.directory(doc["profile"], view.cfg.host_id, view.cfg.shared_volume)
        doc["log_tail"] = logs.tail(view.cfg.hermes_home, parts, LOG_LINES)


# --------------------------------------------------------------------------- the whole view


def collect(cfg: Settings, profile: str | None = None, warn=lambda _m: None,
            served_ports: bool = True) -> list[dict]:
    """One record per profile on the volume (or just ``profile``), default first.

    Slots in the scandir whose profile is gone are listed too (``registered`` and no
    profile directory), so nothing running is hidden. ``served_ports``: False leaves
    each record's ``served_ports`` None, for a caller that does not show it (it costs
    a look at each up gateway's descriptors in ``/proc``).
    """
    if not os.path.isdir(cfg.scandir):
        from . import facts  # its one "scandir missing" error; the package costs ~5 ms

        facts.require_scandir(cfg)
    if cfg.profile_isolation and not fsops.IS_ROOT:
        from .errors import TaskError

        # Each isolated profile's files are its own uid's: read as anyone else, every
        # state would look stopped (SPEC §16).
        raise TaskError("with profile_isolation the profiles' files are their own uids': "
                        "run gateway.status as root (docker exec's default user)")
    files: dict = {}
    states: dict[str, state.GatewayState] = {}
    if profile is None:
        def each(name, dfd):  # one open of each profile directory for all it holds
            files[name] = portsmod.read_profile_at(dfd, cfg.hermes_home, name, warn)
            states[name] = state.read_at(dfd)

        found, _ = profiles.discover(cfg.hermes_home, warn, each)
        names = [p.name for p in found]
        extra = sorted(n[len(SLOT_PREFIX):] for n in _slot_names(cfg.scandir)
                       if n[len(SLOT_PREFIX):] not in names)
        targets = names + extra
        port_names = names[1:]
    else:
        names = _profile_names(cfg.hermes_home)
        targets = [profile]
        port_names = [profile] if profile != DEFAULT else []
    gws = portsmod.for_settings(cfg, port_names, warn, write=False, facts=files or None)
    view = View(cfg, names, served_ports=served_ports)
    docs = [record(view, name, states.get(name) or state.read(cfg.hermes_home, name),
                   gws.get(name)) for name in targets]
    if cfg.profile_isolation:
        _uids(cfg, docs, warn)
    return docs


def _uids(cfg: Settings, docs: list[dict], warn) -> None:
    """SPEC §16: the uid each gateway runs as (the default keeps the service user's)."""
    from . import uids

    found = uids.read_record(cfg.hermes_home, warn, cfg.profile_uid_base).profiles
    for doc in docs:
        doc["uid"] = cfg.service_uid if doc["profile"] == DEFAULT else found.get(doc["profile"])


def _slot_names(scandir: str) -> list[str]:
    try:
        return [n for n in os.listdir(scandir) if n.startswith(SLOT_PREFIX)
                and profiles.valid_name(n[len(SLOT_PREFIX):])]
    except OSError:
        return []


def _profile_names(home: str) -> list[str]:
    """Profile names in the capacity order (default first, then by name): a listing only."""
    try:
        with fsops.opened_dir(home, ("profiles",)) as dfd:
            named = sorted(n for n in os.listdir(dfd) if profiles.valid_name(n)
                           and n != DEFAULT)
    except OSError:
        named = []
    return [DEFAULT, *named]


def problems(cfg: Settings, docs: list[dict]) -> list[str]:
    """One line per reason ``--health`` fails: the supervision tree, then every gateway
    that should run here and is not ready (or runs though it should not)."""
    from .s6 import S6

    out = []
    scanner = S6.scanner_running(cfg.scandir)
    if scanner is False:
        out.append(f"{cfg.scandir}: no s6-svscan listens on it")
    registrar = os.path.join(cfg.scandir, REGISTRAR)
    if scanner is not False and os.path.isdir(registrar):
        # the root agent that serves the service user's requests (SPEC §14.1); it restarts
        # briefly for requests, so only a missing supervisor is a problem
        try:
            st = svstatus.read(registrar)
        except (OSError, ValueError):
            st = None
        if st is not None and st.supervised is False:
            out.append(f"{REGISTRAR}: not supervised")
    for doc in docs:
        if not doc["healthy"]:
            out.append(f"{doc['slot']}: {doc['why'] or doc['observed']}")
    return out


# --------------------------------------------------------------------------- for people


def human(docs: list[dict]) -> str:
    """One line per gateway; below it, one indented line per platform error, the reason
    and the quoted log lines when it is not running as desired."""
    out = []
    for d in docs:
        if not d["registered"]:
            line = "not registered"
        elif d["supervised"] is False:
            line = "not supervised"
        else:
            line = (f"up (pid {d['pid']})" if d["up"] else "down") + \
                (f", {d['uptime']:.0f} s" if d["uptime"] is not None else "") + \
                (", ready" if d["ready"] else "") + \
                (f", standby, owned by {d['owner']['host_id']}" if d["standby"] else "") + \
                (", wanted up" if d["wanted_up"] else ", wanted down") + \
                (", normally up" if d["normally_up"] else ", normally down")
            if not d["up"] and d["exit_code"] is not None:
                line += ", " + supervision.failure(d["exit_code"], None, d["reason"])
        if d["host"]:
            line += f", on {d['host']}"
        if "uid" in d:
            line += f", uid {d['uid'] if d['uid'] is not None else '-'}"
        if d["restarts"]:
            line += f", {d['restarts']} exits recorded"
        line += f"; desired_state={d['desired_state']}; ports: {_ports_text(d)}"
        if d["why"] and not (d["ready"] and d["healthy"]):
            line += f"; why: {d['why']}"
        out.append(f"{d['slot']}: {line}")
        for plat, p in d["platforms"].items():
            if p.get("error") or p.get("error_code"):
                code = f" ({p['error_code']})" if p.get("error_code") else ""
                out.append(f"  platform {plat}: {p.get('state') or '?'}{code}: "
                           f"{p.get('error') or ''}".rstrip(": "))
        out.extend(f"  log: {text}" for text in d["log_tail"])
    return "".join(line + "\n" for line in out)


def _ports_text(d: dict) -> str:
    parts = []
    for plat in portsmod.PLATFORMS:
        text = f"{plat} {d.get(plat + '_port') or '-'} " \
               f"({'on' if d.get(plat + '_enabled') else 'off'})"
        served = (d["ports"].get(plat) or {}).get("served")
        if served is not None:
            text += " served" if served else " NOT served"
        parts.append(text)
    return ", ".join(parts)

