"""A profile's ``gateway_state.json``: the one parser, and the ``desired_state`` writer.

The gateway owns the file and rewrites it (read-modify-write, compact JSON) on every state
change; we add one key of our own, ``desired_state``, the operator's intent. Everything that
reads the file goes through :func:`parse`: desired state (SPEC §4), runtime state, pid and
start time (readiness, §5), exit reason and each platform's state and error (status, §7).
"""

from __future__ import annotations

import json
import os
import time

from . import fsops, records
from .names import escape, profile_parts

STATE_FILE = "gateway_state.json"
STATE_LIMIT = 1 << 20
STATE_VALUE_LIMIT = 64  # the longest real state is "startup_failed"
REASON_LIMIT = 200
# Transient runtime values that mean "it was running" when no operator intent is recorded.
RUNNING_ALIASES = frozenset({"running", "draining", "degraded"})


@records.record(frozen=True)
class GatewayState:
    """What one ``gateway_state.json`` says; every field None when it says nothing.

    ``prior_state`` is the value that decides (``desired_state``, else ``gateway_state``),
    verbatim; ``autostart`` is whether it means running. ``problem`` is a warning text when
    the file is unusable (every other field is then empty). Texts from the gateway
    (``exit_reason``, platform errors) are printable and at most 200 characters.
    """

    prior_state: str | None = None
    autostart: bool = False
    desired_state: str | None = None
    gateway_state: str | None = None
    pid: int | None = None
    start_time: int | None = None
    exit_reason: str | None = None
    platforms: dict[str, dict[str, str | None]] = records.field(default_factory=dict)
    problem: str | None = None
    unreadable: bool = False  # the problem is reading the file, not what it holds

    def is_running_pid(self, pid: int | None, start_time: int | None = None) -> bool:
        """True when the gateway says ``running`` as process ``pid`` (readiness, SPEC §5).

        ``start_time`` (``/proc/<pid>/stat`` field 22) guards against a recycled pid when the
        file records one.
        """
        if pid is None or self.gateway_state != "running" or self.pid != pid:
            return False
        return self.start_time is None or start_time is None or self.start_time == start_time

    @property
    def reason(self) -> str | None:
        """Why it stopped: ``exit_reason``, else the first platform error."""
        if self.exit_reason:
            return self.exit_reason
        for name, plat in sorted(self.platforms.items()):
            if plat.get("error"):
                return f"{name}: {plat['error']}"
        return None


NONE = GatewayState()


def printable(text: str, limit: int = REASON_LIMIT) -> str:
    """``text`` with non-printable characters escaped (``\\n``, ``\\x1b``), cut at ``limit``."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value) -> str | None:
    return printable(value) if isinstance(value, str) and value else None


def _state_value(value) -> str | None:
    return value if isinstance(value, str) and len(value) <= STATE_VALUE_LIMIT else None


def parse(raw: bytes) -> GatewayState:
    """Everything the bytes of ``gateway_state.json`` say (never raises).

    A UTF-8 BOM is accepted; non-JSON or a non-object is a ``problem``. ``desired_state``
    decides when present; otherwise ``gateway_state``, where ``draining``/``degraded``
    count as running (SPEC §4).
    """
    if len(raw) > STATE_LIMIT:
        return GatewayState(problem=f"is larger than {STATE_LIMIT} bytes")
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return GatewayState(problem="is not valid JSON")
    if not isinstance(doc, dict):
        return GatewayState(problem="is not a JSON object")
    platforms = {}
    if isinstance(doc.get("platforms"), dict):
        for name, plat in doc["platforms"].items():
            if isinstance(plat, dict):
                platforms[printable(name, STATE_VALUE_LIMIT)] = {
                    "state": _text(plat.get("state")), "error": _text(plat.get("error_message")),
                    "error_code": _text(plat.get("error_code"))}
    facts = {"desired_state": _state_value(doc.get("desired_state")),
             "gateway_state": _state_value(doc.get("gateway_state")),
             "pid": _int(doc.get("pid")), "start_time": _int(doc.get("start_time")),
             "exit_reason": _text(doc.get("exit_reason")), "platforms": platforms}
    if doc.get("desired_state") is not None:
        value, aliases = doc["desired_state"], {"running"}
    elif doc.get("gateway_state") is not None:
        value, aliases = doc["gateway_state"], RUNNING_ALIASES
    else:
        return GatewayState(**facts)
    if not isinstance(value, str):
        return GatewayState(**facts, problem="holds a state that is not a string")
    if len(value) > STATE_VALUE_LIMIT:
        # Not a state any gateway writes; printing it verbatim would let one file flood
        # every report and boot-log line.
        return GatewayState(**facts, problem=f"holds a state value of {len(value)} characters")
    return GatewayState(value, value in aliases, **facts)


def read_at(dfd: int, stats: dict | None = None) -> GatewayState:
    """The state file in the open profile directory ``dfd``; missing = :data:`NONE`.

    Bounded, never through a symlink; an unreadable file is a ``problem``. ``stats``, a
    dict, receives the ``fstat`` of the file read (:func:`.volfile.read`).
    """
    from .volfile import read as read_volume_file

    raw, why = read_volume_file(dfd, STATE_FILE, STATE_LIMIT, stats)
    if why:
        return GatewayState(problem=why, unreadable=True)
    return NONE if raw is None else parse(raw)


def read(home: str, name: str) -> GatewayState:
    """The state file of profile ``name`` (never raises; a missing directory = :data:`NONE`)."""
    try:
        with fsops.opened_dir(home, profile_parts(name)) as dfd:
            return read_at(dfd)
    except FileNotFoundError:
        return NONE
    except OSError as exc:
        return GatewayState(problem=str(exc.strerror or exc), unreadable=True)


def read_desired(home: str, name: str) -> str | None:
    """The recorded ``desired_state`` of a profile, escaped for printing, or None."""
    value = read(home, name).desired_state
    return escape(value) if value is not None else None


NOW, MISSING, ABSENT = object(), object(), object()


def record_desired(home: str, name: str, desired: str | None, owner: tuple[int, int],
                   stamp: object = NOW) -> object:
    """Set ``desired_state`` (and ``updated_at``), keeping every other key; None removes it.

    Returns the ``updated_at`` it replaced (:data:`MISSING` when there was none,
    :data:`ABSENT` when there was no file): passing that back as ``stamp`` with the old
    value undoes the write (``MISSING`` removes the key, ``ABSENT`` a file left empty).

    Written atomically next to the file, never through a symlink, in the gateway's own
    compact format, owned by ``owner`` when root writes it. A file that is not a JSON
    object is kept beside it as ``gateway_state.json.corrupt`` rather than lost. fsync
    matters here: this is the operator's intent that must survive a power cut.
    """
    with fsops.opened_dir(home, profile_parts(name)) as dfd:
        doc: dict = {}
        try:
            raw = fsops.read_bounded(dfd, STATE_FILE, STATE_LIMIT)
        except FileNotFoundError:
            raw = None
            if stamp is ABSENT and desired is None:
                return ABSENT
        except OSError:
            raw = b"\0"  # unreadable, oversized or a symlink: set it aside below
        if raw is not None:
            try:
                parsed = json.loads(raw.decode("utf-8-sig"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, dict):
                doc = parsed
            else:
                os.rename(STATE_FILE, STATE_FILE + ".corrupt", src_dir_fd=dfd, dst_dir_fd=dfd)
        if desired is None:
            doc.pop("desired_state", None)
        else:
            doc["desired_state"] = desired
        replaced = doc.pop("updated_at", MISSING if raw is not None else ABSENT)
        if stamp is ABSENT and not doc:
            fsops.unlink_if_present(dfd, STATE_FILE)
            return replaced
        if stamp is NOW:
            doc["updated_at"] = int(time.time())
        elif stamp not in (MISSING, ABSENT):
            doc["updated_at"] = stamp
        data = (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        fsops.write_atomic(dfd, STATE_FILE, data, 0o644, owner=owner)
        return replaced
