"""Render slots from the Jinja2 templates: the desired content of every slot file.

One ``Environment`` (StrictUndefined, trailing newline kept, ``shquote`` filter). Rendering
depends only on the settings and the profile, never on who runs it: the scripts decide
about privilege drops themselves at run time with ``id -u``.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Iterator, Mapping

from . import records
from .inventory import Settings
from .names import REGISTRAR
from .profiles import DEFAULT, SLOT_PREFIX, valid_name
from .rendercache import RenderCache
from .slotcache import blake2b

# Two names no profile can collide with in practice (see Renderer._named_scripts).
_SENTINEL = ("zq9sentinel9qz", "xk7placeholder7kx")
# The same for the (api_server, webhook) ports a named run script exports.
_PORT_SENTINEL = (("zq9apiport9qz", "zq9webhookport9qz"), ("xk7apiport7kx", "xk7webhookport7kx"))
# The same for the uid an isolated profile's tree belongs to (SPEC §16).
_UID_SENTINEL = (1987654321, 1876543219)
# The same for this host's id (check, own, log/run): the container's hostname unless the
# inventory names one, so a render made when the image was built must not hold it.
_HOST_SENTINEL = ("zq9host9qz", "xk7host7kx")
EXEC = 0o755
DATA = 0o644
# Files that hold extra_env values (possibly secrets, SPEC §8): not readable by others.
# Root gives them to the service group (apply.file_owner), which may read them anyway.
PRIVATE_EXEC = 0o750
PRIVATE_DATA = 0o640
ISOLATED_EXEC = 0o700
# The per-profile scripts, in the order _render_scripts returns them.
GATEWAY_SCRIPTS = ("run", "log/run", "check", "own")
NOTIFICATION_FD = b"3\n"


@records.record(frozen=True)
class File:
    content: bytes
    mode: int


_TYPE = File(b"longrun\n", DATA)
_NOTIFICATION = File(NOTIFICATION_FD, DATA)


class Files(Mapping):
    """A slot's files (slot-relative path -> :class:`File`), each made when asked for and
    never kept: 1000 slots' scripts are ~10 MiB, and an unchanged slot needs none of them
    (the slot cache vouches for it by its key), a new one only while it is written.

    ``parts`` maps each path to a constant :class:`File` or to ``(mode, source)``: the
    content is ``source.encode()`` (a text), or with ``named`` (a named profile's name, ports
    and uid, or "", and the host's id) the ``bytes %`` format ``source`` filled with them
    (:meth:`Renderer._named_scripts`, :meth:`Renderer._default_scripts`).
    A named profile's ``parts`` are its renderer's, shared by every such slot.
    """

    __slots__ = ("_parts", "_named")

    def __init__(self, parts: dict[str, File | tuple[int, bytes | str]],
                 named: tuple[str, str, str, str, str] | None = None):
        self._parts = parts
        self._named = named

    def __getitem__(self, rel: str) -> File:
        part = self._parts[rel]
        return part if isinstance(part, File) else self._make(part, self._fill())

    def items(self) -> list[tuple[str, File]]:  # type: ignore[override]
        """Every ``(path, File)``, in order, the placeholders' values encoded once."""
        fill = self._fill()
        return [(rel, part if isinstance(part, File) else self._make(part, fill))
                for rel, part in self._parts.items()]

    def _fill(self) -> dict[bytes, bytes] | None:
        if self._named is None:
            return None
        name, api, webhook, uid, host = self._named
        return {b"n": name.encode(), b"a": api.encode(), b"w": webhook.encode(),
                b"u": uid.encode(), b"h": host.encode()}

    @staticmethod
    def _make(part: tuple[int, bytes | str], fill: dict[bytes, bytes] | None) -> File:
        mode, source = part
        return File(source.encode() if fill is None else source % fill, mode)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def __contains__(self, rel) -> bool:
        return rel in self._parts

    def modes(self) -> list[tuple[str, int]]:
        return [(rel, part.mode if isinstance(part, File) else part[0])
                for rel, part in self._parts.items()]


class AsRendered(Mapping):
    """What a slot holds when its files are exactly ``files``: path -> ``(content, mode)``
    as :class:`..slots.SlotFacts` keeps it, made only when asked for (the plan, seeing
    this, compares nothing: :func:`as_rendered`)."""

    __slots__ = ("files",)

    def __init__(self, files: Mapping[str, File]):
        self.files = files

    def __getitem__(self, rel: str) -> tuple[bytes, int]:
        f = self.files[rel]
        return f.content, f.mode

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __contains__(self, rel) -> bool:
        return rel in self.files


def as_rendered(found: Mapping, files: Mapping[str, File]) -> bool:
    """True when ``found`` (a slot's files as read) is known to be exactly ``files``
    without comparing any content."""
    return isinstance(found, AsRendered) and found.files is files


@records.record(frozen=True)
class SlotSpec:
    """Everything a slot must hold. ``files`` maps slot-relative paths to content (a
    :class:`Files` makes it only when asked for)."""

    name: str
    files: Mapping[str, File]
    down: bool
    logged: bool = True
    # Written only when the slot is first published, never compared afterwards.
    initial: dict[str, File] = records.field(default_factory=dict)
    # A short text that determines every file's content (and so stands for it in the
    # slot cache's signature), or None: hash the content itself.
    key: str | None = None
    # May the service group use ``supervise/control`` (a gateway) or is it root's alone
    # (the registrar: the service user must never signal, pause or kill it, SPEC §14.1)?
    shared: bool = True

    def modes(self) -> list[tuple[str, int]]:
        """``(path, mode)`` of each file, in order, without making any content."""
        if isinstance(self.files, Files):
            return self.files.modes()
        return [(rel, f.mode) for rel, f in self.files.items()]

    def found(self) -> AsRendered:
        """The slot's files as found when they are exactly these (see :class:`AsRendered`)."""
        return AsRendered(self.files)


# A template that loads another sees variables its own text does not name.
_LOADS = re.compile(r"{%-?\s*(include|import|extends|from)\b")
_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
# Reserved words are safe to run quoted but confuse readers (and ShellCheck) when bare.
_RESERVED = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "case", "esac",
                       "while", "until", "for", "in"})


def shquote(value) -> str:
    """Quote any value as one POSIX shell word.

    Double quotes with ``\\ $ ` "`` escaped rather than single quotes: same safety, and
    ShellCheck does not flag a literal ``$(...)`` the way it flags one in single quotes
    (SC2016), so every rendered script stays free of findings whatever the value holds.
    """
    text = str(value)
    if _SAFE.fullmatch(text) and text not in _RESERVED:
        return text
    return '"' + re.sub(r'([\\$`"])', r"\\\1", text) + '"'


@functools.lru_cache(maxsize=1)
def templates_dir() -> str:
    """Templates inside the installed package, or the repo's top-level ``templates/``."""
    here = os.path.dirname(os.path.realpath(__file__))
    for candidate in (os.path.join(here, "templates"), os.path.join(here, os.pardir, "templates")):
        if os.path.isfile(os.path.join(candidate, "gateway", "run.j2")):
            return os.path.normpath(candidate)
    raise FileNotFoundError(f"templates not found next to {here}")


@functools.cache
def source(name: str) -> str:
    """The text of template ``name`` (what a cached render is keyed on)."""
    with open(os.path.join(templates_dir(), name), encoding="utf-8") as fh:
        return fh.read()


@functools.lru_cache(maxsize=1)
def environment():
    import jinja2  # imported lazily: gateway.* tasks never render

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        autoescape=False,
    )
    env.filters["shquote"] = shquote
    return env


class Renderer:
    """Renders slot specs for one set of settings; shared parts are rendered once."""

    def __init__(self, settings: Settings, cache: RenderCache | None = None,
                 python: str | None = None):
        self.settings = settings
        self.python = python or sys.executable  # runs root's helpers (registrar, logdir)
        self.context = settings.as_vars()
        # Jinja is imported and a template compiled only when the cache lacks a render.
        self.cache = cache or RenderCache()
        self._finish = File(self._render("gateway/finish.j2", self.context).encode(), EXEC)
        # Named profiles' parts and key, without and with an owned tree (_named_scripts).
        self._named: dict[bool, tuple[dict, str] | tuple[()]] = {}
        self._default: tuple[dict, str] | tuple[()] | None = None
        # A host id that is one bare shell word is substituted like a name (_named_scripts);
        # any other is rendered into every script, as it was before.
        host = settings.host_id
        self._host = host if host and shquote(host) == host else None

    def _hosts(self) -> tuple[str, str]:
        """The two host ids the formats' proof renders with: sentinels, or the real one twice
        (not substitutable: the formats then hold it and no ``%(h)s``)."""
        return _HOST_SENTINEL if self._host else (self.settings.host_id,) * 2

    def _fill_host(self) -> str:
        return self._host or ""

    def _render(self, name: str, ctx: dict) -> str:
        text = source(name)
        # Keyed only on the variables the template's text names: it includes nothing, so
        # no other can change the render (a host id only own/check/log/run use must not
        # make the registrar's run miss a render primed when the image was built).
        key = ctx if "{%" in text and _LOADS.search(text) else \
            {k: v for k, v in ctx.items() if k in text}
        return self.cache.text(name, text, key,
                               lambda: environment().get_template(name).render(ctx))

    def gateway(self, name: str, autostart: bool,
                ports: dict[str, int] | None = None, uid: int | None = None) -> SlotSpec:
        """The slot of profile ``name`` (``default`` runs the gateway without ``-p``).

        ``ports`` maps ``api_server``/``webhook`` to the port a named profile's run
        script exports (SPEC §11); the default gateway exports none. ``uid`` (SPEC §16):
        with ``profile_isolation`` the uid the profile's gateway and logger run as; without,
        the uid isolation once gave its tree, which the scripts give back to the service user.
        """
        ports = {} if name == DEFAULT else dict(ports or {})
        drop, tree = self._isolation(name, uid)
        named = None
        # A name shquote would quote (a shell reserved word) renders in full: the shared
        # formats hold the name bare wherever the template quotes it.
        if (name != DEFAULT and valid_name(name) and shquote(name) == name and len(ports) == 2
                and "extra_env" not in self.settings.profile_vars.get(name, {})):
            named = self._named_scripts(tree is not None)
        if named:
            parts, key = named
            api, webhook = str(ports["api_server"]), str(ports["webhook"])
            host = self._fill_host()
            key = f"{key}:{name}:{api}:{webhook}"
            owner = "" if tree is None else str(uid)
            return SlotSpec(SLOT_PREFIX + name, Files(parts, (name, api, webhook, owner, host)),
                            down=not autostart, key=f"{key}:{owner}" if owner else key)
        if name == DEFAULT:
            found = self._default_scripts()
            if found:
                return SlotSpec(SLOT_PREFIX + name,
                                Files(found[0], ("", "", "", "", self._fill_host())),
                                down=not autostart)
        scripts = self._render_scripts(name, ports.get("api_server"), ports.get("webhook"),
                                       drop, tree)
        return SlotSpec(SLOT_PREFIX + name, Files(self._parts(scripts, drop is not None)),
                        down=not autostart)

    def _parts(self, scripts: tuple, isolated: bool = False) -> dict:
        """A gateway slot's :class:`Files` parts, from its four scripts (``GATEWAY_SCRIPTS``,
        texts or ``bytes %`` formats)."""
        run, log_run, check, own = scripts
        return {
            "type": _TYPE,
            # An isolated profile's run is root's alone: the service group holds no secret
            # of a profile it cannot otherwise read (SPEC §16).
            "run": (ISOLATED_EXEC if isolated else PRIVATE_EXEC, run),
            "finish": self._finish,
            "log/run": (EXEC, log_run),
            # Readiness (SPEC §5): s6-notifyoncheck in run polls data/check.
            "notification-fd": _NOTIFICATION,
            "data/check": (EXEC, check),
            # Ownership (SPEC §12): run execs the gateway through it, as the service user.
            "data/own": (EXEC, own),
        }

    def _isolation(self, name: str, uid: int | None) -> tuple[int | None, str | None]:
        """(the uid to drop to or None, the tree's owner ``UID:GID:MODE:PREV`` or None).
        ``PREV`` is the previous owner, whose entries alone are converted: the service user
        switching isolation on; giving the tree back, the profile's old uid, whose
        processes are stopped first."""
        cfg = self.settings
        if uid is None or name == DEFAULT or not valid_name(name) or cfg.service_user is None:
            return None, None
        return self._owner(uid)

    def _owner(self, uid: int) -> tuple[int | None, str]:
        """:meth:`_isolation` of a named profile given ``uid``."""
        cfg = self.settings
        if cfg.profile_isolation:
            return uid, f"{uid}:{uid}:700:{cfg.service_uid}"
        return None, f"{cfg.service_uid}:{cfg.service_gid}:755:{uid}"

    def _render_scripts(self, name: str, api_port, webhook_port, drop: int | None = None,
                        tree: str | None = None, host: str | None = None) -> tuple[str, ...]:
        default = name == DEFAULT
        ctx = {**self.context, "name": name, "slot": SLOT_PREFIX + name,
               "profile_uid": drop, "tree_owner": tree,
               "is_default": default,
               "env": self.settings.profile_env(name if valid_name(name) else ""),
               "scoped_env": [] if default else list(self.settings.profile_scoped_env),
               "api_server_port": api_port, "webhook_port": webhook_port,
               "python": self.python}  # log/run's root repair (hermes_tasks.logdir)
        if host is not None:
            ctx["host_id"] = host
        return tuple(self._render(f"gateway/{t}.j2", ctx) for t in GATEWAY_SCRIPTS)

    def _named_scripts(self, owned: bool = False) -> tuple[dict, str] | tuple[()]:
        """Named profiles' scripts rendered once, as ``bytes %`` formats of name, ports and
        (``owned``: a profile whose tree has an owner, SPEC §16) uid: their :class:`Files`
        parts and the key that, with those values, determines every file of such a slot.

        A valid name, a port and a uid are bare shell words, so they may be substituted
        into the text; two renders with different placeholders prove the templates use
        them only verbatim. Rendering 1000 profiles this way costs a few ms instead of
        ~35, and no render per profile is kept. Empty when the proof fails: then every
        such profile is rendered in full.
        """
        found = self._named.get(owned)
        if found is None:
            renders = []
            hosts = self._hosts()
            for name, ports, uid, host in zip(_SENTINEL, _PORT_SENTINEL, _UID_SENTINEL, hosts):
                drop, tree = self._owner(uid) if owned else (None, None)
                renders.append(self._render_scripts(name, *ports, drop, tree, host))
            marks = ((_SENTINEL, b"n"), ((_PORT_SENTINEL[0][0], _PORT_SENTINEL[1][0]), b"a"),
                     ((_PORT_SENTINEL[0][1], _PORT_SENTINEL[1][1]), b"w"),
                     ((str(_UID_SENTINEL[0]), str(_UID_SENTINEL[1])), b"u"), (hosts, b"h"))
            formats = _formats(*renders, marks)
            isolated = owned and self._owner(_UID_SENTINEL[0])[0] is not None
            found = (self._parts(formats, isolated), blake2b(b"\0".join(
                # the host's id fills the formats too: it is part of the key
                [*formats, self._finish.content, _TYPE.content, _NOTIFICATION.content,
                 self._fill_host().encode()]),
                digest_size=12).hexdigest()) if formats else ()  # () = always render in full
            self._named[owned] = found
        return found

    def _default_scripts(self) -> tuple[dict, str] | tuple[()]:
        """The default profile's scripts as ``bytes %`` formats of the host's id, proven
        as :meth:`_named_scripts` proves its own: everything else they hold is the
        settings', so a render made when the image was built serves every container of it
        (:mod:`.prime`). Empty when the proof fails: then it is rendered in full."""
        if self._default is None:
            hosts = self._hosts()
            renders = [self._render_scripts(DEFAULT, None, None, host=h) for h in hosts]
            formats = _formats(*renders, ((hosts, b"h"),))
            self._default = (self._parts(formats), "") if formats else ()
        return self._default

    def registrar(self, python: str | None = None) -> SlotSpec:
        """The root-owned slot that re-runs reconcile for the unprivileged user (SPEC §10)."""
        ctx = {**self.context, "python": python or sys.executable}
        files = {
            "type": _TYPE,
            "run": File(self._render("registrar/run.j2", ctx).encode(), EXEC),
            "notification-fd": _NOTIFICATION,
            "data/inventory.yml": File(
                b"# Written by hermes-tasks reconcile: the settings the registrar re-uses.\n"
                + self._inventory_yaml().encode(),
                PRIVATE_DATA),
        }
        # The reconcile that publishes the registrar has just run: its first start skips one.
        initial = {"data/published": File(b"", DATA)}
        return SlotSpec(REGISTRAR, files, down=False, logged=False, initial=initial,
                        shared=False)

    def _inventory_yaml(self) -> str:
        """The registrar's settings as YAML. The host's id is the container's hostname unless
        the inventory names one: when it is surely a plain scalar (:func:`_yaml_plain`) it is
        substituted into a dump made with a sentinel, proven by a second sentinel as the
        scripts' formats are, so the dump the image's build made serves every container."""
        settings = self.settings.as_vars()
        host = self.settings.host_id

        def dump(value: str) -> str:
            doc = {"all": {"vars": {**settings, "host_id": value}, "hosts": {"localhost": {}}}}
            return self.cache.text("yaml", "", doc, lambda: _yaml_dump(doc))

        if host and _yaml_plain(host):
            first, second = (dump(h) for h in _HOST_SENTINEL)
            line = "host_id: {}\n"
            if (first.count(_HOST_SENTINEL[0]) == 1 and line.format(_HOST_SENTINEL[0]) in first
                    and first.replace(_HOST_SENTINEL[0], _HOST_SENTINEL[1]) == second):
                return first.replace(_HOST_SENTINEL[0], host)
        return dump(host)

    def shared(self) -> None:
        """Render everything a boot renders that depends only on the settings (the image's
        build keeps it in the render cache, :mod:`.prime`): the default profile's and the
        named profiles' formats (with and without an owned tree), the registrar's slot."""
        self.gateway(DEFAULT, True)
        self._named_scripts(False)
        if self.settings.service_user is not None:
            self._named_scripts(True)
        self.registrar()


def _formats(first: tuple[str, ...], second: tuple[str, ...],
             marks: tuple) -> tuple[bytes, ...] | None:
    """``first`` as ``bytes %`` formats, each ``(values, field)`` of ``marks`` replaced by
    ``%(field)s`` where ``values[0]`` is, or None unless filling them with every
    ``values[1]`` gives ``second`` exactly (the values are used only verbatim).

    A ``values`` pair of one value twice is not substituted (nothing to prove).
    """
    formats = []
    other = {}
    for text in first:
        fmt = text.encode().replace(b"%", b"%%")
        for (mark, alt), field in marks:
            if mark != alt:
                fmt = fmt.replace(mark.encode(), b"%(" + field + b")s")
        formats.append(fmt)
    for (_mark, alt), field in marks:
        other[field] = alt.encode()
    if tuple(f % other for f in formats) != tuple(t.encode() for t in second):
        return None
    return tuple(formats)


def _yaml_plain(word: str) -> bool:
    """Is ``word`` (a host id: ``[A-Za-z0-9][A-Za-z0-9_.-]*``) surely a plain YAML scalar
    that PyYAML resolves as a string? Letters, digits and ``-`` only, at least one letter
    (no int, float or timestamp: those need digits alone or ``.``/``:``), no ``0b``/``0x``
    prefix, and no bool or null word: the name is then dumped as it is, like the sentinels.
    Conservative: any other id is dumped itself."""
    return (_PLAIN_WORD.fullmatch(word) is not None and word[:2].lower() not in ("0b", "0x")
            and word.lower() not in _YAML_WORDS)


_PLAIN_WORD = re.compile(r"[A-Za-z0-9-]*[A-Za-z][A-Za-z0-9-]*")
_YAML_WORDS = frozenset({"yes", "no", "true", "false", "on", "off", "null", "y", "n"})


def _yaml_dump(doc) -> str:
    import yaml

    # One line per value, however long: a secret is masked line by line (redact).
    return yaml.safe_dump(doc, sort_keys=True, width=float("inf"))
