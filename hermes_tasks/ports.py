"""Per-profile ports (SPEC §11, §13.5): facts, stable allocation, and the collision rule.

Every gateway is its own hermes process in one network namespace, so two of them whose
API server (or webhook) would bind the same port fight over it. This module

* reads what each profile asks for (:func:`read_profile`): its ``.env`` and ``config.yaml``,
  bounded and never following a symlink (root reads the volume as hostile input);
* models exactly how hermes-agent 0.19.0 decides whether the API server and the webhook
  are on and which port they bind (:func:`bound`: ``gateway/config.py``
  ``_apply_env_overrides`` and the two adapters' constructors);
* keeps named profiles' allocations stable in ``<hermes_home>/gateway-ports.json``
  (:func:`allocate`, pure; the plan reads the file, and the run records what it used with
  :meth:`Allocation.record`, under an ``flock`` on the file: the executor's change);
* decides which of two gateways that would bind the same port fails (:func:`collisions`).

What hermes 0.19.0 does (measured from its source):

* a profile's ``.env`` is loaded over the process environment (python-dotenv,
  ``override=True``), so the ``.env`` wins over anything the run script exports;
* the API server is on when ``API_SERVER_ENABLED`` is truthy (1/true/yes/on) **or**
  ``API_SERVER_KEY`` is non-empty in the environment, or ``platforms.api_server.enabled``
  in ``config.yaml``; it refuses to start without a key (env or ``extra.key``);
* its port: when enabled through the environment, a valid ``API_SERVER_PORT`` replaces
  ``extra.port``; else ``extra.port``; else ``API_SERVER_PORT``; else 8642.
  ``platforms.api_server.port`` (not under ``extra``) is ignored by hermes: for a named
  profile we export it as ``API_SERVER_PORT``, which makes it take effect;
* the webhook is on when ``WEBHOOK_ENABLED`` is truthy or ``platforms.webhook.enabled``;
  its port is ``WEBHOOK_PORT`` only when enabled through the environment, else
  ``extra.port``, else 8644 (so a webhook enabled only in ``config.yaml`` without a
  port binds 8644 whatever we export);
* ``config.yaml`` platforms come from ``gateway.platforms`` with ``platforms`` merged
  over them (``extra`` merged key by key).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from collections.abc import Iterable, Mapping

from . import fsops, records, supervision, volfile
from .lock import try_lock
from .profiles import DEFAULT, escape, profile_parts, valid_name

API, WEBHOOK = "api_server", "webhook"
PLATFORMS = (API, WEBHOOK)
SETTING = {API: "api_server_port", WEBHOOK: "webhook_port"}  # profile_vars / file keys
_SETTINGS = tuple(SETTING.values())
ENV_PORT = {API: "API_SERVER_PORT", WEBHOOK: "WEBHOOK_PORT"}
HERMES_DEFAULT = {API: 8642, WEBHOOK: 8644}
# Ports hermes binds by default (API server, webhook, BlueBubbles): never allocated.
HERMES_OWN = frozenset({8642, 8644, 8645})
# The variables that decide the two platforms; nothing else of an environment is kept.
ENV_KEYS = ("API_SERVER_ENABLED", "API_SERVER_KEY", "API_SERVER_PORT",
            "WEBHOOK_ENABLED", "WEBHOOK_PORT")
TRUTHY = frozenset({"1", "true", "yes", "on"})
FILE = "gateway-ports.json"
FILE_LIMIT = 1 << 20
ENV_LIMIT = 256 << 10
CONFIG_LIMIT = 1 << 20
# Seconds: the service user can hold the file's lock (SPEC §14.9); root tries briefly, then
# goes on with the allocations it can read. Taken once per run, so it never stacks.
LOCK_WAIT = 0.5
MIN_PORT, MAX_PORT = 1024, 65535


@records.record(frozen=True)
class PlatformConfig:
    """One platform's block of ``config.yaml`` (only what decides enabled and port)."""

    enabled: bool = False
    extra_port: object = None  # raw value of ``extra.port`` (hermes coerces it)
    port: object = None  # raw ``port`` outside ``extra``: ignored by hermes itself
    has_key: bool = False  # ``extra.key`` (the API server's key)


@records.record(frozen=True)
class ProfileFacts:
    """What one profile's own files say about its ports.

    ``env`` holds the :data:`ENV_KEYS` its ``.env`` sets (``API_SERVER_KEY`` reduced to
    "set"/"" so no secret is kept); ``config`` maps platform → :class:`PlatformConfig`.
    """

    name: str
    env: Mapping[str, str] = records.field(default_factory=dict)
    config: Mapping[str, PlatformConfig] = records.field(default_factory=dict)


@records.record(frozen=True)
class Gateway:
    """A gateway's ports: ``exports`` (what its run script sets, named profiles only),
    ``ports`` (what each platform binds when on; when off, the port it would take if the
    profile's ``.env`` turned it on) and ``bound`` (the platforms that are on, → port)."""

    name: str
    exports: Mapping[str, int]
    ports: Mapping[str, int | None]
    bound: Mapping[str, int]
    # Its stable allocation (platform -> port): reserved for it while the profile exists.
    allocated: Mapping[str, int] = records.field(default_factory=dict)


# --------------------------------------------------------------------------- facts


def read_profile(home: str, name: str, warn) -> ProfileFacts:
    """Read a profile's ``.env`` and ``config.yaml``; problems are warnings, never fatal."""
    parts = profile_parts(name)
    try:
        with fsops.opened_dir(home, parts) as dfd:
            return read_profile_at(dfd, home, name, warn)
    except OSError:
        return ProfileFacts(name)


def read_profile_at(dfd: int, home: str, name: str, warn,
                    stats: dict | None = None) -> ProfileFacts:
    """:func:`read_profile` through the profile's directory, already open as ``dfd``
    (``stats``, a dict, receives the ``fstat`` of each file read, by name)."""
    parts = profile_parts(name)
    env: dict[str, str] = {}
    config: dict[str, PlatformConfig] = {}
    raw_env = _read(dfd, ".env", ENV_LIMIT, home, parts, warn, stats)
    raw_cfg = _read(dfd, "config.yaml", CONFIG_LIMIT, home, parts, warn, stats)
    if raw_env:
        env = parse_dotenv(raw_env)
    if raw_cfg and b"platforms" in raw_cfg:  # both platforms live under a `platforms:` key
        config = parse_config(raw_cfg, lambda why: warn(
            f"{escape(os.path.join(home, *parts, 'config.yaml'))}: {why}; its ports are "
            "not read"))
    return ProfileFacts(name, env, config)


def _read(dfd: int, fname: str, limit: int, home: str, parts, warn,
          stats: dict | None = None) -> bytes:
    raw, why = volfile.read(dfd, fname, limit, stats)
    if why:
        warn(f"could not read {escape(os.path.join(home, *parts, fname))}: {why}; "
             "its ports are not read")
    return raw or b""


def parse_dotenv(raw: bytes) -> dict[str, str]:
    """The :data:`ENV_KEYS` a ``.env`` sets, parsed like python-dotenv (last one wins)."""
    out: dict[str, str] = {}
    text = raw.decode("utf-8-sig", "replace")
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or key not in ENV_KEYS:
            continue
        value = value.strip()
        if value[:1] in ("'", '"') and value.find(value[0], 1) > 0:
            value = value[1:value.find(value[0], 1)]
        else:
            cut = min((i for i in (value.find(" #"), value.find("\t#")) if i >= 0),
                      default=-1)
            value = (value[:cut] if cut >= 0 else value).strip()
        if key == "API_SERVER_KEY":
            value = "set" if value else ""
        out[key] = value
    return out


_TOP_KEY = re.compile(rb"""(["']?)(platforms|gateway)\1[ \t]*:(?:[ \t\r\n]|$)""")
_NEXT_TOP = re.compile(rb"\n(?=[^ \t#\-\r\n])")  # the next line that can start a top-level key
_KEYS = tuple(q + k + q for k in (b"platforms", b"gateway") for q in (b"", b'"', b"'"))
_NOT_SIMPLE = re.compile(rb"\n(?:---|\.\.\.|%|\{|\[)")  # documents, directives, flow style


def top_blocks(raw: bytes) -> bytes | None:
    """The top-level ``platforms:`` and ``gateway:`` blocks of a block-style YAML mapping.

    hermes's config.yaml is ~700 lines; parsing all of it costs ~11 ms, a thousand profiles
    11 s. Only these two keys matter here, and in block style a top-level key starts at
    column 0, so their blocks can be cut out (in file order) and parsed alone, found with
    a few substring searches. None when the text is not that simple (several documents,
    directives, flow style at the top): parse it whole.
    """
    text = b"\n" + raw.removeprefix(b"\xef\xbb\xbf")
    if _NOT_SIMPLE.search(text):
        return None
    found = []
    for key in _KEYS:
        pos = text.find(b"\n" + key)
        while pos >= 0:
            if _TOP_KEY.match(text, pos + 1):
                end = _NEXT_TOP.search(text, pos + 1)
                block = text[pos + 1:end.start() if end else len(text)]
                if b"platforms" in block:  # a gateway: block without platforms is moot
                    found.append((pos, block))
            pos = text.find(b"\n" + key, pos + 1)
    return b"\n".join(block for _, block in sorted(found))


def parse_config(raw: bytes, warn) -> dict[str, PlatformConfig]:
    """The two platforms' blocks of a ``config.yaml`` (``{}`` when unusable, with a warning)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    errors = (yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError)
    doc = None
    part = top_blocks(raw)
    if part is not None and (b"platforms" not in part
                             or (b"api_server" not in part and b"webhook" not in part)):
        return {}  # hermes's own default config.yaml: nothing to parse
    if part is not None:
        try:
            doc = yaml.load(part, Loader=loader) or {}  # noqa: S506 - a safe loader
        except errors:
            doc = None  # e.g. an alias to an anchor outside the blocks: parse it whole
    if doc is None:
        try:
            doc = yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader
        except errors:
            warn("not valid YAML")
            return {}
    if not isinstance(doc, dict):
        return {}
    merged: dict[str, dict] = {}
    gateway = doc.get("gateway")
    for source in (gateway.get("platforms") if isinstance(gateway, dict) else None,
                   doc.get("platforms")):
        if not isinstance(source, dict):
            continue
        for plat in PLATFORMS:
            block = source.get(plat)
            if not isinstance(block, dict):
                continue
            old = merged.get(plat, {})
            extra = {**_dict(old.get("extra")), **_dict(block.get("extra"))}
            merged[plat] = {**old, **block, "extra": extra}
    return {plat: PlatformConfig(enabled=_coerce_bool(b.get("enabled")),
                                 extra_port=b["extra"].get("port"), port=b.get("port"),
                                 has_key=bool(b["extra"].get("key")))
            for plat, b in merged.items()}


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _coerce_bool(value) -> bool:
    """hermes's ``_coerce_bool(value, False)`` for ``enabled``."""
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() in TRUTHY
    try:
        return bool(value)
    except Exception:  # noqa: BLE001 - an odd YAML object: hermes would not enable on it
        return False


def container_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The deciding variables of the container environment (``API_SERVER_KEY`` as set/"")."""
    out = {k: environ[k] for k in ENV_KEYS if k in environ}
    if "API_SERVER_KEY" in out:
        out["API_SERVER_KEY"] = "set" if out["API_SERVER_KEY"] else ""
    return out


# --------------------------------------------------------------------------- hermes's rules


def _int(value) -> int | None:
    """Python's ``int(value)`` as hermes applies it, or None when it would raise."""
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def valid_port(value) -> int | None:
    """``value`` as a port we accept as a setting (an integer 1024–65535), else None."""
    if isinstance(value, bool):
        return None
    port = _int(value) if isinstance(value, (int, str)) else None
    return port if port is not None and MIN_PORT <= port <= MAX_PORT else None


def bound(env: Mapping[str, str], config: Mapping[str, PlatformConfig]) -> dict[str, tuple[bool, int | None]]:
    """What hermes 0.19.0 would do: platform → (on and able to bind, port).

    ``env`` is the gateway's final environment (after its ``.env``), reduced to
    :data:`ENV_KEYS`.
    """
    api_cfg = config.get(API, PlatformConfig())
    api_env_on = (env.get("API_SERVER_ENABLED", "").strip().lower() in TRUTHY
                  or bool(env.get("API_SERVER_KEY")))
    env_port = env.get("API_SERVER_PORT")
    if api_env_on and env_port and _int(env_port) is not None:
        api_port = _int(env_port)
    elif api_cfg.extra_port is not None:
        api_port = _int(api_cfg.extra_port)
        api_port = HERMES_DEFAULT[API] if api_port is None else api_port
    else:
        api_port = _int(env_port if env_port is not None else HERMES_DEFAULT[API])
        api_port = HERMES_DEFAULT[API] if api_port is None else api_port
    api_on = (api_env_on or api_cfg.enabled) and (bool(env.get("API_SERVER_KEY"))
                                                  or api_cfg.has_key)
    wh_cfg = config.get(WEBHOOK, PlatformConfig())
    wh_env_on = env.get("WEBHOOK_ENABLED", "").strip().lower() in TRUTHY
    wh_env_port = env.get("WEBHOOK_PORT")
    if wh_env_on and wh_env_port and _int(wh_env_port) is not None:
        wh_port = _int(wh_env_port)
    else:
        wh_port = _int(wh_cfg.extra_port if wh_cfg.extra_port is not None
                       else HERMES_DEFAULT[WEBHOOK])
    wh_on = (wh_env_on or wh_cfg.enabled) and wh_port is not None
    return {API: (api_on, api_port), WEBHOOK: (wh_on, wh_port)}


def explicit(facts: ProfileFacts, profile_vars: Mapping[str, object]) -> dict[str, int]:
    """A named profile's explicit ports: ``.env`` > ``profile_vars`` > ``config.yaml``."""
    if not facts.env and not facts.config and not any(s in profile_vars for s in _SETTINGS):
        return {}  # the usual profile sets none (a thousand of them: skip the search)
    out: dict[str, int] = {}
    for plat in PLATFORMS:
        cfg = facts.config.get(plat, PlatformConfig())
        for candidate in (facts.env.get(ENV_PORT[plat]), profile_vars.get(SETTING[plat]),
                          cfg.extra_port, cfg.port):
            port = valid_port(candidate)
            if port is not None:
                out[plat] = port
                break
    return out


# --------------------------------------------------------------------------- allocation


def validate_file(doc: object, warn) -> dict[str, dict[str, int]]:
    """The usable allocations of a parsed ``gateway-ports.json``; each bad entry dropped."""
    entries = doc.get("profiles") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        if doc not in (None, {}):
            warn(f"{FILE} has no 'profiles' mapping; allocation starts afresh (ports may move)")
        return {}
    out: dict[str, dict[str, int]] = {}
    seen: dict[int, str] = {}
    for name in sorted(entries, key=str):
        entry = entries[name]
        if not isinstance(name, str) or not valid_name(name) or name == DEFAULT \
                or not isinstance(entry, dict):
            warn(f"{FILE}: dropped the invalid entry {escape(str(name))!s}")
            continue
        for plat in PLATFORMS:
            if SETTING[plat] not in entry:
                continue
            value = entry[SETTING[plat]]
            port = value if isinstance(value, int) and not isinstance(value, bool) else None
            if port is None or not MIN_PORT <= port <= MAX_PORT:
                warn(f"{FILE}: dropped {name}'s {SETTING[plat]} {escape(repr(value))[:40]}: "
                     f"not an integer from {MIN_PORT} to {MAX_PORT}")
            elif port in seen:
                warn(f"{FILE}: dropped {name}'s {SETTING[plat]} {port}: also {seen[port]}'s")
            else:
                seen[port] = f"{name}'s {SETTING[plat]}"
                out.setdefault(name, {})[plat] = port
    return out


def allocate(current: Mapping[str, Mapping[str, int]], names: Iterable[str],
             claimed: Mapping[int, str], bases: Mapping[str, int],
             warn) -> dict[str, dict[str, int]]:
    """The allocation table after this run (pure).

    ``current`` is the validated file, ``names`` every named profile on the volume,
    ``claimed`` port → profile for every explicit setting (and the default gateway's
    ports). Entries of profiles no longer there are dropped; an allocation never moves
    while its profile exists, even when another profile claims its port explicitly (that
    one is refused, :func:`collisions`). Every profile gets an API and a webhook
    allocation: the lowest free port at or above its base and below the other range's
    base (the ranges never interleave, SPEC §14.5).
    """
    names = sorted(set(names))
    table = {n: dict(current[n]) for n in names if n in current}
    taken = set(HERMES_OWN) | set(claimed) | {p for e in table.values() for p in e.values()}
    cursor = dict(bases)  # taken only grows: every port below a cursor is taken already
    ceiling = {p: min((b for b in bases.values() if b > bases[p]), default=MAX_PORT + 1)
               for p in bases}
    for name in names:
        entry = table.setdefault(name, {})
        for plat in PLATFORMS:
            if plat in entry:
                continue
            port = cursor[plat]
            while port in taken and port < ceiling[plat]:
                port += 1
            cursor[plat] = port
            if port >= ceiling[plat]:
                warn(f"no free port left for {name}'s {SETTING[plat]} above {bases[plat]}")
                continue
            entry[plat] = port
            taken.add(port)
    return table


def to_doc(table: Mapping[str, Mapping[str, int]]) -> dict:
    return {"profiles": {n: {SETTING[p]: port for p, port in sorted(e.items())}
                         for n, e in sorted(table.items())}}


def _identical(a, b) -> bool:
    """Equal with equal types all the way down (``8650.0 == 8650``, but is not written so)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def to_json(table: Mapping[str, Mapping[str, int]]) -> bytes:
    return (json.dumps(to_doc(table), indent=1, sort_keys=True) + "\n").encode()


# --------------------------------------------------------------------------- the file


class PortsFile:
    """``<hermes_home>/gateway-ports.json``, read (and, with ``lock``, locked) safely.

    Opened with ``O_NOFOLLOW``/``O_NONBLOCK`` through the volume's directory fd; a
    symlink, FIFO, oversized or non-JSON file is corrupt: with ``lock`` it is set aside
    as ``.corrupt`` and allocation starts afresh. With ``lock`` the file is created (owned
    by ``owner``) when missing and held under ``flock`` until :meth:`close`, re-checked
    after locking so a rename by another host's writer is never missed.
    """

    def __init__(self, home: str, owner: tuple[int, int] | None, warn, lock: bool,
                 quiet: frozenset[str] = frozenset(), known: tuple = ()):
        self.home, self.owner, self.warn = home, owner, warn
        # what another read of the same run already said: "unusable" (a plain read before
        # the run sets the file aside), "entries" (the locked re-read of the run)
        self.quiet = quiet
        self.dfd: int | None = None
        self.fd: int | None = None
        self.locked = False
        self.table: dict[str, dict[str, int]] = {}
        self.raw = b""
        self.doc = None  # the file as parsed, when it was JSON
        self.ignored = False  # unusable and could not be set aside: not touched this run
        try:
            self.dfd = fsops.open_dir(home)
        except OSError:
            return
        if lock:
            self._lock()
        else:
            self.raw = self._read_plain()
        if known and self.raw == known[0]:
            # the very bytes an earlier read of this run parsed (:meth:`Allocation.record`)
            self.doc, self.table = known[1], {n: dict(e) for n, e in known[2].items()}
            return
        self.table = self._parse(self.raw, set_aside=lock)

    def _read_plain(self) -> bytes:
        raw, why = volfile.read(self.dfd, FILE, FILE_LIMIT)
        return b"\0corrupt: " + why.encode() if why else raw or b""

    def _lock(self) -> None:
        deadline = time.monotonic() + LOCK_WAIT
        for _ in range(8):  # each retry follows a rename or set-aside: never spins forever
            if self.ignored:
                return
            try:
                fd = os.open(FILE, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                             dir_fd=self.dfd)
            except FileNotFoundError:
                try:
                    fd = os.open(FILE, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o644, dir_fd=self.dfd)
                except FileExistsError:
                    continue
                except OSError as exc:  # a read-only or full volume: allocate, unrecorded
                    self.warn(f"could not create {self.home}/{FILE}: {volfile.why(exc)}; "
                              "ports allocated now are not recorded this run")
                    return
                if self.owner and fsops.IS_ROOT:
                    os.fchown(fd, *self.owner)
            except OSError as exc:  # a symlink (ELOOP), a directory, a socket: corrupt
                self._set_aside(volfile.why(exc))
                continue
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                self._set_aside(f"is {volfile.kind(st.st_mode)}")
                continue
            if not supervision.wait_until(lambda fd=fd: try_lock(fd),
                                          deadline - time.monotonic(), 0.05):
                # Someone (the service user can) holds it: go on with what it says.
                self.warn(f"{self.home}/{FILE} is locked by another process; went on "
                          f"after {LOCK_WAIT:g} s with the allocations it holds; "
                          "ports allocated now are not recorded this run")
                self.raw = self._read_plain()
                os.close(fd)
                return
            try:
                now = os.stat(FILE, dir_fd=self.dfd, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            if now is None or (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
                os.close(fd)  # replaced while we waited: lock the new one
                continue
            self.fd, self.locked = fd, True
            self.raw = os.pread(fd, FILE_LIMIT + 1, 0) if st.st_size <= FILE_LIMIT else \
                b"\0corrupt: too large"
            if len(self.raw) > FILE_LIMIT:
                self.raw = b"\0corrupt: too large"
            return
        self.warn(f"could not lock {self.home}/{FILE}; ports allocated now are not recorded")

    def _set_aside(self, why: str) -> None:
        """One atomic rename to ``.corrupt``; when that fails (whatever sits there), the
        file is ignored this run. Never a removal of what the service user made."""
        try:
            os.rename(FILE, FILE + ".corrupt", src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.ignored = True
            self.warn(f"{self.home}/{FILE} is unusable ({why}) and could not be set aside as "
                      f"{FILE}.corrupt ({volfile.why(exc)}); ignored: ports are allocated "
                      "afresh in memory and not recorded this run (they may move)")
            return
        self.warn(f"{self.home}/{FILE} is unusable ({why}); set aside as {FILE}.corrupt, "
                  "allocation starts afresh (ports may move)")

    def _parse(self, raw: bytes, set_aside: bool) -> dict[str, dict[str, int]]:
        if not raw.strip():
            return {}
        why = None
        doc = None
        if raw.startswith(b"\0corrupt: "):
            why = raw[len(b"\0corrupt: "):].decode()
        else:
            doc, why = volfile.load_json(raw)
        if why is not None:
            if set_aside and self.locked:
                self._set_aside(why)
                self._relock()
            elif "unusable" not in self.quiet:
                self.warn(f"{self.home}/{FILE} is unusable ({why}); ports are allocated "
                          "afresh (they may move)")
            return {}
        self.doc = doc
        return validate_file(doc, _quiet if "entries" in self.quiet else self.warn)

    def _relock(self) -> None:
        """After setting a corrupt file aside: lock a fresh one."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd, self.locked = None, False
        self._lock()

    def save(self, table: Mapping[str, Mapping[str, int]]) -> bool:
        """Write ``table`` atomically if it changed; only while holding the lock."""
        if not self.locked or _identical(self.doc, to_doc(table)):  # (no dump needed)
            return False
        data = to_json(table)
        if data == self.raw:
            return False
        fsops.write_atomic(self.dfd, FILE, data, 0o644, owner=self.owner)
        return True

    def close(self) -> None:
        for fd in (self.fd, self.dfd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.fd = self.dfd = None
        self.locked = False


# --------------------------------------------------------------------------- the whole picture


def _quiet(_message: str) -> None:
    pass


@records.record(frozen=True)
class Allocation:
    """The allocation a plan used, for the run to record in ``gateway-ports.json``
    (the executor's :class:`..changes.AllocatePorts`).

    ``table`` is what the plan allocated from the file as it read it (name → platform →
    port, as tuples); ``names``, ``claimed`` and ``bases`` are its inputs. The record
    allocates again from the file as found under its lock: an entry another host's writer
    made meanwhile for one of ``names`` is kept, never overwritten (with a warning when it
    differs from what this run rendered), and this run's own entries stay as planned where
    no such entry took their port; as in every allocation, profiles not in ``names`` go.
    """

    home: str
    owner: tuple[int, int] | None
    names: tuple[str, ...]
    claimed: tuple[tuple[int, str], ...]
    bases: tuple[tuple[str, int], ...]
    table: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]
    # The file as the plan read it: (bytes, document, usable entries, whether ``table``
    # is exactly what it holds). The record, finding the same bytes under its lock,
    # neither parses them again nor, when nothing changed, compares the whole table.
    read: tuple = records.field(default=(), compare=False, repr=False)

    @classmethod
    def of(cls, home, owner, names, claimed, bases, table, read: tuple = ()) -> Allocation:
        return cls(home, owner, tuple(sorted(set(names))), tuple(claimed.items()),
                   tuple(bases.items()),
                   tuple((n, tuple(sorted(e.items()))) for n, e in sorted(table.items())),
                   read)

    def record(self, warn) -> bool:
        """Lock the file (0.5 s at most), set an unusable one aside by one rename (never
        following a link), and save the allocation if it changed. True when written."""
        pf = PortsFile(self.home, self.owner, warn, lock=True, quiet=frozenset({"entries"}),
                       known=self.read[:3])
        try:
            if not pf.locked:
                return False
            if self.read and self.read[3] and pf.raw == self.read[0]:
                return False  # the file holds exactly what the plan allocated
            planned = {n: dict(e) for n, e in self.table}
            current = dict(pf.table)
            used = {port for e in current.values() for port in e.values()}
            for name in self.names:
                if name not in current and name in planned:
                    kept = {p: port for p, port in planned[name].items() if port not in used}
                    current[name] = kept
                    used.update(kept.values())
            table = allocate(current, self.names, dict(self.claimed), dict(self.bases),
                             _quiet)
            moved = [n for n in self.names if n in planned and table.get(n) != planned[n]]
            if moved:
                warn(f"{self.home}/{FILE} changed while this run planned; the ports of "
                     f"{', '.join(moved)} recorded there differ from the ones rendered now "
                     "(the next run renders them)")
            try:
                return pf.save(table)
            except OSError as exc:
                warn(f"could not record {self.home}/{FILE}: {exc.strerror or exc}")
                return False
        finally:
            pf.close()


def for_settings(settings, names: list[str], warn, *, write: bool,
                 environ: Mapping[str, str] | None = None,
                 facts: Mapping[str, ProfileFacts] | None = None) -> dict[str, Gateway]:
    """:func:`layout` with an inventory's settings and this process's environment (``write``:
    and record the allocation now)."""
    gateways, allocation = plan_for_settings(settings, names, warn, recording=write,
                                             environ=environ, facts=facts)
    if allocation is not None:
        allocation.record(warn)
    return gateways


def plan_for_settings(settings, names: list[str], warn, *, recording: bool,
                      environ: Mapping[str, str] | None = None,
                      facts: Mapping[str, ProfileFacts] | None = None,
                      ) -> tuple[dict[str, Gateway], Allocation | None]:
    """Every gateway's ports with an inventory's settings, and (``recording``: for a run)
    the allocation the run must record; the file is only read here.

    The container environment is this process's: reconcile runs under ``with-contenv``
    (cont-init, the registrar), ``gateway.status`` through ``docker exec``. ``facts``
    holds profiles' files already read (the rest are read here).
    """
    return _layout(settings.hermes_home, names, settings.profile_vars,
                  os.environ if environ is None else environ, settings.profile_scoped_env,
                  {n: settings.profile_env(n) for n in [DEFAULT, *names]},
                  {API: settings.api_port_base, WEBHOOK: settings.webhook_port_base},
                   warn, recording=recording, record=False,
                   owner=(settings.service_uid, settings.service_gid), facts=facts)


def layout(home: str, names: list[str], profile_vars: Mapping[str, Mapping[str, object]],
           env: Mapping[str, str], scoped: tuple[str, ...], extra_env: dict[str, dict[str, str]],
           bases: Mapping[str, int], warn, *, write: bool,
           owner: tuple[int, int] | None = None,
           facts: Mapping[str, ProfileFacts] | None = None) -> dict[str, Gateway]:
    """Every gateway's ports: ``default`` and each name in ``names`` (all on the volume).

    ``env`` is the container environment, ``scoped`` the ``profile_scoped_env``
    prefixes, ``extra_env`` each profile's merged ``extra_env``. With ``write``, the
    allocation is then recorded (:meth:`Allocation.record`); without, the file is only read.
    """
    return _layout(home, names, profile_vars, env, scoped, extra_env, bases, warn,
                   recording=write, record=write, owner=owner, facts=facts)[0]


def _layout(home: str, names: list[str], profile_vars: Mapping[str, Mapping[str, object]],
            env: Mapping[str, str], scoped: tuple[str, ...],
            extra_env: dict[str, dict[str, str]], bases: Mapping[str, int], warn, *,
            recording: bool, record: bool, owner: tuple[int, int] | None = None,
            facts: Mapping[str, ProfileFacts] | None = None,
            ) -> tuple[dict[str, Gateway], Allocation | None]:
    """:func:`layout`, and the allocation to record when ``recording`` (``record``: now)."""
    facts = dict(facts or {})
    for name in [DEFAULT, *names]:
        if name not in facts:
            facts[name] = read_profile(home, name, warn)
    base_env = container_env(env)
    named_base = {k: v for k, v in base_env.items() if not k.startswith(tuple(scoped))}
    default_env = {**base_env, **container_env(extra_env.get(DEFAULT, {})),
                   **facts[DEFAULT].env}
    default = bound(default_env, facts[DEFAULT].config)
    claimed: dict[int, str] = {}
    for plat in PLATFORMS:
        claimed.setdefault(default[plat][1], DEFAULT)
    wanted = {n: explicit(facts[n], profile_vars.get(n, {})) for n in names}
    for name in names:
        for port in wanted[name].values():
            claimed.setdefault(port, name)
    if recording and not names:  # nothing to allocate: do not create the file for nothing
        recording = os.path.lexists(os.path.join(home, FILE))
    # A run sets an unusable file aside when it records (and says so then), so its plan
    # does not also call it unusable.
    pf = PortsFile(home, owner, warn, lock=False,
                   quiet=frozenset({"unusable"}) if recording else frozenset())
    try:
        table = allocate(pf.table, names, claimed, bases, warn)
    finally:
        pf.close()
    allocation = None
    if recording:
        read = ()
        if pf.doc is not None and not pf.raw.startswith(b"\0corrupt: "):
            read = (pf.raw, pf.doc, pf.table, _identical(pf.doc, to_doc(table)))
        allocation = Allocation.of(home, owner, names, claimed, bases, table, read)
    if record and allocation is not None:
        allocation.record(warn)
    out = {DEFAULT: Gateway(DEFAULT, {}, {p: default[p][1] for p in PLATFORMS},
                            {p: default[p][1] for p in PLATFORMS if default[p][0]})}
    for name in names:
        exports = {p: wanted[name].get(p, table.get(name, {}).get(p)) for p in PLATFORMS}
        exports = {p: v for p, v in exports.items() if v is not None}
        final = {**named_base, **container_env(extra_env.get(name, {})),
                 **{ENV_PORT[p]: str(v) for p, v in exports.items()}, **facts[name].env}
        state = bound(final, facts[name].config)
        # an off platform shows the port it would take if its .env turned it on
        out[name] = Gateway(name, exports,
                            {p: state[p][1] if state[p][0] else exports.get(p, state[p][1])
                             for p in PLATFORMS},
                            {p: state[p][1] for p in PLATFORMS if state[p][0]},
                            dict(table.get(name, {})))
    return out, allocation


def collisions(order: list[tuple[str, bool]], gateways: Mapping[str, Gateway],
               serving: Mapping[str, Iterable[int]] | None = None) -> dict[str, str]:
    """Gateways that must not start: name → one line naming both profiles, the port and
    how to resolve it (SPEC §14.5).

    ``order`` is (name, would run) with default first, then by name; ``serving`` maps a
    gateway to the ports it actually listens on now (:mod:`.facts.served`). A gateway
    that serves a port keeps it: those go first, so an edit that makes another gateway
    want the port fails that other one. Else of two gateways that would run and bind the
    same port, the later one fails. A named gateway whose port is another profile's
    allocation fails too: allocations never move while their profile exists. A failed
    gateway binds nothing, so a third one is compared with the first.
    """
    serving = {n: set(p) for n, p in (serving or {}).items()}
    holds = [(n, r) for n, r in order
             if r and n in gateways and serving.get(n, set()) & set(gateways[n].bound.values())]
    order = holds + [(n, r) for n, r in order if (n, r) not in holds]
    reserved = {port: (g.name, plat) for g in gateways.values()
                for plat, port in g.allocated.items()}
    holders: dict[int, tuple[str, str]] = {}
    failed: dict[str, str] = {}
    for name, runs in order:
        gw = gateways.get(name)
        if not runs or gw is None:
            continue
        taken = next(((plat, port) for plat, port in sorted(gw.bound.items())
                      if name != DEFAULT and port in reserved
                      and reserved[port][0] != name), None)
        if taken is not None:
            plat, port = taken
            other, other_plat = reserved[port]
            failed[name] = (f"not started: its {plat} would bind port {port}, which is "
                            f"{other}'s {SETTING[other_plat]} allocation (allocations "
                            f"never move while {other} exists); set another "
                            f"{ENV_PORT[plat]} for {name}")
            continue
        clash = next(((plat, port) for plat, port in sorted(gw.bound.items())
                      if port in holders), None)
        if clash is None:
            inner = {}
            for plat, port in gw.bound.items():
                if port in inner:  # its own API server and webhook on one port
                    clash = (plat, port)
                inner[port] = plat
            if clash is not None:
                failed[name] = (f"not started: its {inner[clash[1]]} and {clash[0]} would "
                                f"both bind port {clash[1]}")
                continue
            for plat, port in gw.bound.items():
                holders[port] = (name, plat)
            continue
        plat, port = clash
        other, other_plat = holders[port]
        if port in serving.get(other, ()):
            failed[name] = (f"not started: its {plat} would bind port {port}, which "
                            f"{other}'s {other_plat} serves now (gateway-{other} keeps it); "
                            f"set another {ENV_PORT[plat]} for {name}, or free the port "
                            f"on {other}, then reconcile")
        else:
            failed[name] = (f"not started: its {plat} would bind port {port}, which "
                            f"{other}'s {other_plat} uses (gateway-{other} comes first); "
                            f"set another {ENV_PORT[plat]} for {name}")
    return failed
