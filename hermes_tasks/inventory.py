"""Settings from an Ansible-style YAML inventory (SPEC §3).

``load()`` merges, lowest first: built-in defaults < ``all.vars`` < ``group_vars/all.yml``
< the host's own vars < ``host_vars/<host>.yml`` < environment < ``--var key=value``, then
validates every value. Any problem is an :class:`InventoryError` naming the file and key.
A file's parse may come from :mod:`inventorycache` (same bytes, same document), so a boot
or a status imports no YAML.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Mapping

from . import fsops, inventorycache, records, workdir
from .errors import InventoryError
from .inventorycache import ParsedCache

ENV_VAR = "HERMES_TASKS_INVENTORY"
HOST_ENV_VAR = "HERMES_TASKS_HOST"
# Environment variables that override one setting each (the container's own knobs).
ENV_OVERRIDES = {"HERMES_HOME": "hermes_home", "S6_PROFILE_GATEWAY_SCANDIR": "scandir"}
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # used with fullmatch: no "FOO\n"
# extra_env keys that decide how the run script itself runs or whom it runs as (SPEC §3),
# plus the script's own privilege fact (templates/gateway/run.j2, step 3) and the slot path
# it execs data/own from.
RESERVED_ENV = frozenset({"PATH", "HOME", "HERMES_HOME", "IFS", "ENV", "BASH_ENV", "CDPATH",
                          "SHELL", "HERMES_S6_SUPERVISED_CHILD", "HERMES_SUPERVISED_CHILD",
                          "run_as_root", "service_dir"})
# Control characters (tab allowed) and what str.splitlines() also breaks on: a value stays
# one line in the run script, a diff and a report, so none of them can be forged or torn.
_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# A host's name in placement and ownership records: one safe word, short.
HOST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_INVENTORY_BYTES = 1 << 20


@records.record(frozen=True)
class Settings:
    """Validated settings; field names are the inventory variable names."""

    hermes_home: str = "/opt/data"
    scandir: str = "/run/service"
    s6_bin_dir: str = "/command"
    service_user: str | None = "hermes"
    service_uid: int = 10000
    service_gid: int = 10000
    hermes_bin: str = "hermes"
    extra_env: Mapping[str, str] = records.field(default_factory=dict)
    # Per-profile isolation (SPEC §11): {name: {extra_env, api_server_port, webhook_port}}.
    profile_vars: Mapping[str, Mapping[str, object]] = records.field(default_factory=dict)
    profile_scoped_env: tuple[str, ...] = ("API_SERVER_", "WEBHOOK_")
    api_port_base: int = 8650
    # At least max_slots above api_port_base: the two ranges never interleave (SPEC §14.5).
    webhook_port_base: int = 9100
    lock_timeout: float = 60
    max_slots: int = 450
    # Default --timeout of gateway.* --wait: how long a gateway may take to become ready.
    readiness_timeout: float = 60
    registrar_timeout: float = 120
    # Crash loops (SPEC §14.6): this many exits within crash_window seconds hold it down.
    crash_limit: int = 5
    crash_window: float = 60
    # The most a run waits for s6-svscan to supervise new slots while it keeps progressing.
    supervise_timeout: float = 120
    # Seconds between the agent's looks for changes (SPEC §14.3); 0 = it never converges alone.
    watch_interval: float = 2
    boot_log_rotate_bytes: int = 262144
    gateway_log_archives: int = 10
    gateway_log_max_bytes: int = 1000000
    # Placement and ownership (SPEC §12, §13.1-13.4). ``host_id`` is resolved by load().
    gateway_profiles: tuple[str, ...] = ("*",)
    host_id: str = ""
    shared_volume: bool = False
    # A root-only directory that keeps rendered text across container restarts (the
    # scandir is a tmpfs wiped with them), or None: the cache lives in the scandir.
    render_cache_dir: str | None = None
    # Where the Prometheus text of gateway.status goes after every root reconcile and
    # agent pass (node-exporter's textfile collector), or None (SPEC §14).
    metrics_textfile: str | None = None
    # Isolated profiles (SPEC §16): each named profile's gateway and logger run as its own
    # uid (= gid), allocated from profile_uid_base and recorded in profile-uids.json.
    profile_isolation: bool = False
    profile_uid_base: int = 20000
    # Where the values came from, for messages and for the registrar's copy.
    source: str = records.field(default="<defaults>", compare=False)
    # What the caller named itself (--inventory, $HERMES_TASKS_INVENTORY, --var KEY): what
    # cannot reach root when a task goes through the registrar (SPEC §10).
    named: tuple[str, ...] = records.field(default=(), compare=False)

    def as_vars(self) -> dict[str, object]:
        """The settings as inventory variables (what a YAML inventory would hold)."""
        out = {name: getattr(self, name) for name in KNOWN}
        out["extra_env"] = dict(self.extra_env)
        out["profile_vars"] = {name: {k: (dict(v) if k == "extra_env" else v)
                                      for k, v in pv.items()}
                               for name, pv in self.profile_vars.items()}
        out["profile_scoped_env"] = list(self.profile_scoped_env)
        out["gateway_profiles"] = list(self.gateway_profiles)
        return out

    def profile_env(self, name: str) -> dict[str, str]:
        """``extra_env`` with the profile's own ``profile_vars.<name>.extra_env`` merged over it."""
        own = self.profile_vars.get(name, {}).get("extra_env") or {}
        return {**self.extra_env, **own}


KNOWN = tuple(f.name for f in records.fields(Settings) if f.name not in ("source", "named"))


def default_inventory_path() -> str:
    """The shipped container inventory: inside the installed package, or the repo's."""
    here = os.path.dirname(os.path.realpath(__file__))
    for candidate in (os.path.join(here, "inventory"), os.path.join(here, os.pardir, "inventory")):
        if os.path.isfile(os.path.join(candidate, "hosts.yml")):
            return os.path.normpath(candidate)
    raise InventoryError(f"shipped inventory not found next to {here}")


# The deployment's ids for the service user (SPEC §15, as hermes-agent's stage-2 hook):
# HERMES_UID/HERMES_GID, else their aliases PUID/PGID. The boot remaps the account to them
# (docker/cont-init.d/01-hermes-volume); every slot and the registrar use them.
ID_ENV = (("service_uid", ("HERMES_UID", "PUID")), ("service_gid", ("HERMES_GID", "PGID")))


def service_ids(environ: Mapping[str, str]) -> dict[str, int]:
    out = {}
    for key, names in ID_ENV:
        name = next((n for n in names if (environ.get(n) or "").strip()), None)
        if name is None:
            continue
        text = environ[name].strip()
        if not text.isdigit() or not text.isascii() or int(text) == 0 or int(text) > 2**31 - 2:
            raise InventoryError(f"{name}={text!r}: expected a numeric id other than 0 "
                                 "(e.g. 1000, or 99 on a NAS)")
        out[key] = int(text)
    return out


def profile_root(home: str) -> str:
    """The root home when ``HERMES_HOME`` is a named profile's, ``<root>/profiles/<name>``
    (how hermes runs a named gateway): tasks act on the root, as hermes's own s6 manager
    does (SPEC §15); any other path as given."""
    from .profiles import valid_name

    parent, name = os.path.split(home.rstrip("/"))
    root, profiles = os.path.split(parent)
    if profiles == "profiles" and valid_name(name) and root:
        return root
    return home


def load(
    path: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    environ: Mapping[str, str] | None = None,
    host: str | None = None,
    origin: str | None = None,
    cache: ParsedCache | None = None,
) -> Settings:
    """Resolve and validate settings.

    ``path`` (the ``--inventory`` flag) wins over ``$HERMES_TASKS_INVENTORY``, which wins
    over the shipped inventory. ``overrides`` are ``key=value`` strings whose value is
    parsed as a YAML scalar (``null``, numbers, ``{A: b}`` for ``extra_env``). ``host``
    (``--host``, else ``$HERMES_TASKS_HOST``) names this machine's entry of a multi-host
    inventory (SPEC §13.4). Variables named ``ansible_*`` are Ansible's and are ignored.
    ``origin``: the directory a relative path is relative to (:func:`workdir.leave`'s).
    ``cache``: where parsed files are looked up and kept (:mod:`inventorycache`; by default
    ``$HERMES_TASKS_CACHE_DIR`` or the image's root-only directory, when it is the caller's
    alone).
    """
    environ = os.environ if environ is None else environ
    # Relative to where the command was typed, even after a root process left it for /.
    chosen = workdir.resolve(path or environ.get(ENV_VAR) or default_inventory_path(), origin)
    cache = ParsedCache(inventorycache.directory(environ)) if cache is None else cache
    layers, entry, several = _read_inventory(os.fspath(chosen),
                                             host or environ.get(HOST_ENV_VAR) or None, cache)
    cache.save()
    env_layer = {key: environ[var] for var, key in ENV_OVERRIDES.items() if environ.get(var)}
    if "hermes_home" in env_layer:
        env_layer["hermes_home"] = profile_root(env_layer["hermes_home"])
    env_layer.update(service_ids(environ))
    layers.append(("environment", env_layer))
    layers.append(("--var", _parse_overrides(overrides)))

    merged: dict[str, tuple[object, str]] = {}
    for origin, values in layers:
        for key, value in values.items():
            if str(key).startswith("ansible_"):
                continue  # connection settings for Ansible, not ours (SPEC §13.4)
            if key not in KNOWN:
                raise InventoryError(_unknown_key(origin, key))
            merged[key] = (value, origin)
    if "host_id" not in merged:
        merged["host_id"] = (entry, f"{chosen} (host entry)") if several else (
            os.uname().nodename, "the hostname (set host_id in the inventory)")
    values = {key: _validate(key, value, origin) for key, (value, origin) in merged.items()}
    _check_port_ranges(values, merged)
    _check_isolation(values, merged)
    named = (("--inventory",) if path else (f"${ENV_VAR}",) if environ.get(ENV_VAR) else ()) + \
        tuple(f"--var {key}" for key in layers[-1][1])
    return Settings(**values, source=str(chosen), named=named)


def _check_port_ranges(values: dict, merged: dict) -> None:
    """The API and webhook allocation ranges never interleave for up to max_slots profiles."""
    get = lambda k: values.get(k, getattr(Settings, k))  # noqa: E731
    api, webhook, slots = get("api_port_base"), get("webhook_port_base"), get("max_slots")
    if abs(webhook - api) < slots:
        keys = ("webhook_port_base", "api_port_base", "max_slots")
        key = next((k for k in keys if merged.get(k, (None, ""))[1] == "--var"),
                   next((k for k in keys if k in merged), "webhook_port_base"))
        raise _fail(merged.get(key, (None, "<defaults>"))[1], key,
                    f"leaves api_port_base ({api}) and webhook_port_base ({webhook}) fewer "
                    f"than max_slots ({slots}) apart: their ranges would interleave (set "
                    f"webhook_port_base to {api + slots} or more)")


def _check_isolation(values: dict, merged: dict) -> None:
    """Isolation needs a service user to fall back to and room for max_slots uids."""
    get = lambda k: values.get(k, getattr(Settings, k))  # noqa: E731
    if not get("profile_isolation"):
        return
    from .uids import DEFAULT_LIMIT  # here: importing uids costs every other run ~2 ms

    origin = merged.get("profile_isolation", (None, "<defaults>"))[1]
    if get("service_user") is None:
        raise _fail(origin, "profile_isolation", "needs root and a service_user: with "
                    "service_user null every gateway runs as the one user of the container")
    base, slots = get("profile_uid_base"), get("max_slots")
    if base + slots > DEFAULT_LIMIT:
        raise _fail(origin, "profile_isolation", f"needs profile_uid_base ({base}) + "
                    f"max_slots ({slots}) to stay at most {DEFAULT_LIMIT}")


def _unknown_key(origin: str, key: str) -> str:
    import difflib  # only for this message

    hint = difflib.get_close_matches(str(key), KNOWN, n=1)
    tail = f"; did you mean '{hint[0]}'?" if hint else f"; known keys: {', '.join(KNOWN)}"
    return f"{origin}: unknown variable '{key}'{tail}"


def _read_inventory(path: str, want: str | None,
                    cache: ParsedCache) -> tuple[list[tuple[str, dict]], str, bool]:
    """The inventory's variable layers, lowest precedence first; the chosen host entry's
    name; and whether the inventory lists several hosts."""
    if os.path.isdir(path):
        hosts_file = next((os.path.join(path, n) for n in ("hosts.yml", "hosts.yaml")
                           if os.path.isfile(os.path.join(path, n))), None)
        if hosts_file is None:
            raise InventoryError(f"{path}: inventory directory has no hosts.yml")
        base = path
    else:
        hosts_file, base = path, os.path.dirname(path)
    doc = _read_yaml(hosts_file, cache)
    if not isinstance(doc, dict) or not isinstance(doc.get("all"), dict):
        raise InventoryError(f"{hosts_file}: expected a mapping with a top-level 'all' group")
    group = doc["all"]
    all_vars = _mapping(group.get("vars"), hosts_file, "all.vars")
    hosts = _collect_hosts(group, hosts_file)
    host, host_vars, groups = _pick_host(hosts, want, hosts_file)
    # Ansible's order: all < child groups (outermost first) < the host itself.
    group_layers = []
    for label, name, gvars in groups:
        group_layers.append((f"{hosts_file} ({label}.vars)", gvars))
        group_layers.extend(_vars_file(os.path.join(base, "group_vars", name), cache))
    return [
        (f"{hosts_file} (all.vars)", all_vars),
        *_vars_file(os.path.join(base, "group_vars", "all"), cache),
        *group_layers,
        (f"{hosts_file} (hosts.{host})", host_vars),
        *_vars_file(os.path.join(base, "host_vars", host), cache),
    ], host, len(hosts) > 1


def _collect_hosts(group: dict, where: str) -> dict[str, tuple[object, list]]:
    """Every host of the tree: name -> (its vars, the child groups holding it, outermost
    first, as (label, name, vars)). A host listed twice keeps its first entry's vars."""
    hosts: dict[str, tuple[object, list]] = {}

    def collect(g: dict, label: str, chain: list) -> None:
        for name, hv in _mapping(g.get("hosts"), where, f"{label}.hosts").items():
            entry = hosts.setdefault(str(name), (hv or {}, []))
            entry[1].extend(c for c in chain if c not in entry[1])
        for child, cg in _mapping(g.get("children"), where, f"{label}.children").items():
            clabel = f"{label}.children.{child}"
            cg = _mapping(cg, where, clabel)
            gvars = _mapping(cg.get("vars"), where, f"{clabel}.vars")
            collect(cg, clabel, [*chain, (clabel, str(child), gvars)])

    collect(group, "all", [])
    return hosts


def _pick_host(hosts: dict[str, tuple[object, list]], want: str | None,
               where: str) -> tuple[str, dict, list]:
    """This machine's entry (SPEC §13.4): ``want`` (``--host``/``$HERMES_TASKS_HOST``),
    else ``localhost``, else the only one; anything else is a usage error naming them."""
    names = ", ".join(sorted(hosts)) or "(none)"
    if want is not None:
        if want not in hosts:
            raise InventoryError(f"{where}: no host '{want}' in the inventory; its hosts: {names}")
        name = want
    elif not hosts:
        return "localhost", {}, []
    elif "localhost" in hosts:
        name = "localhost"
    elif len(hosts) == 1:
        name = next(iter(hosts))
    else:
        raise InventoryError(f"{where}: the inventory lists several hosts; choose one with "
                             f"--host NAME or ${HOST_ENV_VAR}: {names}")
    hv, groups = hosts[name]
    return name, _mapping(hv, where, f"hosts.{name}"), groups


def _vars_file(stem: str, cache: ParsedCache) -> list[tuple[str, dict]]:
    """The optional ``<stem>.yml`` (or ``.yaml``) as a layer, if it exists."""
    for ext in (".yml", ".yaml"):
        path = stem + ext
        if os.path.isfile(path):
            return [(path, _mapping(_read_yaml(path, cache), path, "top level"))]
    return []


def _read_yaml(path: str, cache: ParsedCache) -> object:
    try:
        # O_NONBLOCK: a FIFO named as the inventory must not hang the boot.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read inventory: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InventoryError(f"{path}: cannot read inventory: not a regular file")
        raw = fsops.read_fd(fd, MAX_INVENTORY_BYTES, st.st_size)
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read inventory: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_INVENTORY_BYTES:
        raise InventoryError(f"{path}: inventory larger than {MAX_INVENTORY_BYTES} bytes")
    # Found and read as always; only the parse of these exact bytes may come from the cache.
    return cache.parse(raw, lambda data: _parse_yaml(path, data))


def _parse_yaml(path: str, raw: bytes) -> object:
    import yaml  # ~10 ms and ~1 MiB: only when the cache does not know these bytes

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "invalid YAML"
        raise InventoryError(f"{path}:{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise InventoryError(f"{path}: not valid YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these for e.g. an impossible date (2001-13-01).
        raise InventoryError(f"{path}: not valid YAML: {exc}") from None


def _mapping(value: object, where: str, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InventoryError(f"{where}: '{key}' must be a mapping, got {type(value).__name__}")
    return value


def _parse_overrides(items) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items or ():
        import yaml  # --var values are YAML scalars; a boot or a plain status names none

        key, sep, raw = str(item).partition("=")
        if not sep or not key:
            raise InventoryError(f"--var: expected key=value, got '{item}'")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError):
            value = raw
        # A string setting keeps the text exactly as typed (``--var hermes_bin=123``).
        if key in _STRINGS and not isinstance(value, (dict, list)) and value is not None:
            value = raw
        out[key] = value
    return out


_STRINGS = {"hermes_home", "scandir", "s6_bin_dir", "hermes_bin", "host_id"}


def _fail(origin: str, key: str, message: str) -> InventoryError:
    return InventoryError(f"{origin}: '{key}' {message}")


def _validate(key: str, value: object, origin: str) -> object:
    if key in ("hermes_home", "scandir", "s6_bin_dir", "hermes_bin"):
        if not isinstance(value, str) or not value:
            raise _fail(origin, key, "must be a non-empty string")
        if "\0" in value:
            raise _fail(origin, key, "must not contain a NUL byte")
        if key != "hermes_bin" and not value.startswith("/"):
            raise _fail(origin, key, f"must be an absolute path, got '{value}'")
        if key == "hermes_bin" and value.startswith("-"):
            # `exec -x …` is an option to some shells' exec, a missing command to others.
            raise _fail(origin, key, f"must not start with '-', got '{value}'")
        if key == "s6_bin_dir":
            # It appears in shebangs, which cannot be quoted.
            if re.search(r"\s", value) or len(value) > 100:
                raise _fail(origin, key, "must have no whitespace and at most 100 characters")
            value = value.rstrip("/") or "/"
        return value
    if key == "service_user":
        if value is None:
            return None
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}", value):
            raise _fail(origin, key, "must be a user name or null")
        return value
    if key in ("service_uid", "service_gid", "boot_log_rotate_bytes", "gateway_log_archives",
               "gateway_log_max_bytes", "max_slots", "crash_limit"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(origin, key, f"must be a non-negative integer, got {value!r}")
        if key in ("boot_log_rotate_bytes", "gateway_log_max_bytes", "max_slots",
                   "crash_limit") and value < 1:
            raise _fail(origin, key, "must be positive")
        # uid/gid (u)int32 with -1 reserved by chown; s6-log rejects larger n/s directives.
        limit = {"service_uid": 2**32 - 2, "service_gid": 2**32 - 2,
                 "gateway_log_archives": 2**32 - 1, "gateway_log_max_bytes": 2**32 - 1,
                 "crash_limit": 100}.get(key)  # s6 remembers 100 deaths (max-death-tally)
        if limit is not None and value > limit:
            raise _fail(origin, key, f"must be at most {limit}, got {value}")
        return value
    if key in ("lock_timeout", "readiness_timeout", "registrar_timeout", "crash_window",
               "supervise_timeout", "watch_interval"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(origin, key, f"must be a non-negative number of seconds, got {value!r}")
        try:
            finite = math.isfinite(float(value))
        except OverflowError:
            finite = False
        if not finite or value < 0:
            # NaN or infinity would make every lock wait unbounded.
            raise _fail(origin, key, f"must be a non-negative number of seconds, got {value!r}")
        if key == "crash_window" and not 1 <= value <= 86400:
            raise _fail(origin, key, f"must be from 1 to 86400 seconds, got {value!r}")
        return value
    if key == "extra_env":
        return _env_mapping(value, origin, key)
    if key in ("api_port_base", "webhook_port_base"):
        return _port(value, origin, key)
    if key == "profile_scoped_env":
        if value is None:
            return ()
        if not isinstance(value, list) or not all(
                isinstance(v, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v) for v in value):
            raise _fail(origin, key, "must be a list of variable-name prefixes like API_SERVER_")
        for prefix in value:
            hit = sorted(n for n in RESERVED_ENV if n.startswith(prefix))
            if hit:
                raise _fail(origin, key, f"prefix {prefix!r} would remove {hit[0]}, which the "
                            "run script needs")
        return tuple(value)
    if key == "profile_vars":
        return _profile_vars(value, origin)
    if key == "gateway_profiles":
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise _fail(origin, key, f"must be a list of name patterns (e.g. ['*'] or []), "
                                     f"got {value!r}")
        if any("\0" in p or "/" in p for p in value):
            raise _fail(origin, key, "patterns must not contain '/' or a NUL byte")
        return tuple(value)
    if key == "host_id":
        if not isinstance(value, str) or not HOST_ID_RE.fullmatch(value):
            raise _fail(origin, key, f"must be a short name matching "
                                     f"[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}, got {value!r}")
        return value
    if key in ("render_cache_dir", "metrics_textfile"):
        if value is None:
            return None
        if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
            raise _fail(origin, key, f"must be an absolute path or null, got {value!r}")
        return value
    if key == "profile_uid_base":
        from .uids import DEFAULT_LIMIT  # uids imports profiles and fsops, never us

        if isinstance(value, bool) or not isinstance(value, int) or \
                not 1000 <= value <= DEFAULT_LIMIT:
            raise _fail(origin, key, f"must be an integer from 1000 to {DEFAULT_LIMIT}, "
                                     f"got {value!r}")
        return value
    if key in ("shared_volume", "profile_isolation"):
        if not isinstance(value, bool):
            raise _fail(origin, key, f"must be true or false, got {value!r}")
        return value
    raise _fail(origin, key, "is not a known variable")  # unreachable: checked by caller


PROFILE_VAR_KEYS = ("extra_env", "api_server_port", "webhook_port")


def _env_mapping(value: object, origin: str, key: str) -> dict[str, str]:
    """A validated ``extra_env``-shaped mapping (also a profile's own ``extra_env``)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(origin, key, f"must be a mapping of NAME: value, got {type(value).__name__}")
    env = {}
    for name, val in value.items():
        if not isinstance(name, str) or not ENV_KEY_RE.fullmatch(name):
            raise _fail(origin, key, f"has an invalid variable name {name!r}: names "
                                     "match [A-Za-z_][A-Za-z0-9_]*")
        if name in RESERVED_ENV or name.startswith("LD_"):
            raise _fail(origin, key, f"may not set {name}: it decides how the run script "
                                     "runs or whom it runs as (to move the gateway's PATH, "
                                     "use an absolute hermes_bin)")
        if isinstance(val, bool):
            val = "true" if val else "false"
        elif isinstance(val, (int, float, str)):
            val = str(val)
        else:
            raise _fail(origin, f"{key}.{name}", "must be a string, number or boolean")
        bad = _VALUE_BAD.search(val)
        if bad:
            raise _fail(origin, f"{key}.{name}", "must not contain control characters "
                                                 f"(found U+{ord(bad.group()):04X})")
        try:
            val.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(origin, f"{key}.{name}", "must be valid UTF-8 text") from None
        env[name] = val
    return env


def _port(value: object, origin: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= 65535:
        raise _fail(origin, key, f"must be a port number from 1024 to 65535, got {value!r}")
    return value


def _profile_vars(value: object, origin: str) -> dict[str, dict[str, object]]:
    from .profiles import valid_name  # profiles imports nothing of ours but fsops

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(origin, "profile_vars", "must be a mapping of profile name: settings, "
                    f"got {type(value).__name__}")
    out: dict[str, dict[str, object]] = {}
    for name, pv in value.items():
        where = f"profile_vars.{name}"
        if not isinstance(name, str) or not valid_name(name):
            raise _fail(origin, "profile_vars", f"has an invalid profile name {name!r}")
        if pv is None:
            pv = {}
        if not isinstance(pv, dict):
            raise _fail(origin, where, f"must be a mapping, got {type(pv).__name__}")
        entry: dict[str, object] = {}
        for k, v in pv.items():
            if k not in PROFILE_VAR_KEYS:
                raise _fail(origin, f"{where}.{k}",
                            f"is not a profile setting (known: {', '.join(PROFILE_VAR_KEYS)})")
            if name == "default" and k != "extra_env":
                raise _fail(origin, f"{where}.{k}", "cannot be set: the default gateway's ports "
                            "come from the container's API_SERVER_PORT or its config.yaml")
            entry[k] = _env_mapping(v, origin, f"{where}.{k}") if k == "extra_env" else \
                _port(v, origin, f"{where}.{k}")
        out[name] = entry
    return out
