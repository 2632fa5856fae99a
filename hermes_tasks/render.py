"""Render slots from the Jinja2 templates: the desired content of every slot file.

One ``Environment`` (StrictUndefined, trailing newline kept, ``shquote`` filter). Rendering
depends only on the settings and the profile, never on who runs it: the scripts decide
about privilege drops themselves at run time with ``id -u``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys

from .inventory import Settings
from .profiles import DEFAULT, SLOT_PREFIX, valid_name
from .rendercache import RenderCache

REGISTRAR = "hermes-tasks-registrar"
# Two names no profile can collide with in practice (see Renderer._named_scripts).
_SENTINEL = ("zq9sentinel9qz", "xk7placeholder7kx")
EXEC = 0o755
DATA = 0o644
# Files that hold extra_env values (possibly secrets, SPEC §8): not readable by others.
# Root gives them to the service group (apply.file_owner), which may read them anyway.
PRIVATE_EXEC = 0o750
PRIVATE_DATA = 0o640


@dataclasses.dataclass(frozen=True)
class File:
    content: bytes
    mode: int


@dataclasses.dataclass(frozen=True)
class SlotSpec:
    """Everything a slot must hold. ``files`` maps slot-relative paths to content."""

    name: str
    files: dict[str, File]
    down: bool
    logged: bool = True
    # Written only when the slot is first published, never compared afterwards.
    initial: dict[str, File] = dataclasses.field(default_factory=dict)


_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def shquote(value) -> str:
    """Quote any value as one POSIX shell word.

    Double quotes with ``\\ $ ` "`` escaped rather than single quotes: same safety, and
    ShellCheck does not flag a literal ``$(...)`` the way it flags one in single quotes
    (SC2016), so every rendered script stays free of findings whatever the value holds.
    """
    text = str(value)
    if _SAFE.fullmatch(text):
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

    def __init__(self, settings: Settings, cache: RenderCache | None = None):
        self.settings = settings
        self.context = settings.as_vars()
        # Jinja is imported and a template compiled only when the cache lacks a render.
        self.cache = cache or RenderCache()
        self._finish = File(self._render("gateway/finish.j2", self.context).encode(), EXEC)
        self._named: tuple[str, str, str] | tuple[()] | None = None

    def _render(self, name: str, ctx: dict) -> str:
        return self.cache.text(name, source(name), ctx,
                               lambda: environment().get_template(name).render(ctx))

    def gateway(self, name: str, autostart: bool) -> SlotSpec:
        """The slot of profile ``name`` (``default`` runs the gateway without ``-p``)."""
        named = self._named_scripts() if name != DEFAULT and valid_name(name) else None
        if named:
            run, log_run, own = (text.replace(_SENTINEL[0], name) for text in named)
        else:
            run, log_run, own = self._render_scripts(name)
        files = {
            "type": File(b"longrun\n", DATA),
            "run": File(run.encode(), PRIVATE_EXEC),
            "finish": self._finish,
            "log/run": File(log_run.encode(), EXEC),
            # Ownership (SPEC §12): run execs the gateway through it, as the service user.
            "data/own": File(own.encode(), EXEC),
        }
        return SlotSpec(SLOT_PREFIX + name, files, down=not autostart)

    def _render_scripts(self, name: str) -> tuple[str, str, str]:
        ctx = {**self.context, "name": name, "slot": SLOT_PREFIX + name,
               "is_default": name == DEFAULT}
        return (self._render("gateway/run.j2", ctx), self._render("gateway/log/run.j2", ctx),
                self._render("gateway/own.j2", ctx))

    def _named_scripts(self) -> tuple[str, str, str] | None:
        """Named profiles' scripts rendered once, with a placeholder for the name.

        A valid name is a bare shell word, so it may be substituted into the text; two
        renders with different placeholders prove the templates use the name only
        verbatim. Rendering 1000 profiles this way costs a few ms instead of ~35.
        """
        if self._named is None:
            first, second = (self._render_scripts(s) for s in _SENTINEL)
            same = tuple(t.replace(_SENTINEL[0], _SENTINEL[1]) for t in first) == second
            self._named = first if same else ()  # () = always render in full
        return self._named

    def registrar(self, python: str | None = None) -> SlotSpec:
        """The root-owned slot that re-runs reconcile for the unprivileged user (SPEC §10)."""
        ctx = {**self.context, "python": python or sys.executable}
        inventory = {"all": {"vars": self.settings.as_vars(), "hosts": {"localhost": {}}}}
        files = {
            "type": File(b"longrun\n", DATA),
            "run": File(self._render("registrar/run.j2", ctx).encode(), EXEC),
            "notification-fd": File(b"3\n", DATA),
            "data/inventory.yml": File(
                b"# Written by hermes-tasks reconcile: the settings the registrar re-uses.\n"
                + self.cache.text("yaml", "", inventory, lambda: _yaml_dump(inventory)).encode(),
                PRIVATE_DATA),
        }
        # The reconcile that publishes the registrar has just run: its first start skips one.
        initial = {"data/published": File(b"", DATA)}
        return SlotSpec(REGISTRAR, files, down=False, logged=False, initial=initial)


def _yaml_dump(doc) -> str:
    import yaml

    # One line per value, however long: a secret is masked line by line (redact).
    return yaml.safe_dump(doc, sort_keys=True, width=float("inf"))
