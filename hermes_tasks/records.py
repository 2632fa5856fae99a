"""Record classes: the part of :mod:`dataclasses` this package uses, at a fraction of the cost.

Why not :mod:`dataclasses` (issue 24): on the boot path, importing it (with ``inspect``)
costs ~14 ms and each frozen class ~0.4 ms to build — ~30 ms of a run whose goal is ~100 ms
for 1000 profiles. A record class gets the same methods at ~0.05 ms a class: ``__init__``
(defaults, ``default_factory``; compiled, one ``exec`` a class, as it runs for every
instance), and closures over its field names for ``__repr__``, ``__eq__`` (fields with
``compare``, same class only), ``__hash__`` (frozen: of the compared fields; else
unhashable unless the class defines one), frozen assignment raising
``dataclasses.FrozenInstanceError``, and ``__match_args__``. Fields are the class's
annotations (strings: every module uses ``from __future__ import annotations``), minus
``ClassVar``, inherited fields first. ``__dataclass_fields__`` is filled with duck-typed
fields, so :func:`dataclasses.replace` works on records too. Not supported (not used):
``init=False`` fields, ``kw_only``, ``__post_init__``, ordering, slots.
"""

from __future__ import annotations

__all__ = ["Field", "field", "fields", "record", "replace"]

MISSING = type("MISSING", (), {"__repr__": lambda self: "MISSING"})()


class Field:
    """One field; ``init`` and ``_field_type`` are what :func:`dataclasses.replace` reads."""

    __slots__ = ("name", "default", "default_factory", "compare", "repr", "init", "_field_type")

    def __init__(self, default=MISSING, default_factory=MISSING, compare=True, repr=True):
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.compare = compare
        self.repr = repr
        self.init = True
        self._field_type = None

    def __repr__(self) -> str:
        return f"Field(name={self.name!r})"


def field(*, default=MISSING, default_factory=MISSING, compare: bool = True,
          repr: bool = True) -> Field:  # noqa: A002 - dataclasses' own keyword
    return Field(default, default_factory, compare, repr)


def fields(obj_or_cls) -> tuple[Field, ...]:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return tuple(cls.__dataclass_fields__.values())


def replace(obj, /, **changes):
    """A copy of ``obj`` with ``changes`` (as :func:`dataclasses.replace`)."""
    for name in obj.__dataclass_fields__:
        if name not in changes:
            changes[name] = getattr(obj, name)
    return obj.__class__(**changes)


def record(cls=None, /, *, frozen: bool = False):
    """Class decorator: ``@record`` or ``@record(frozen=True)``."""
    if cls is None:
        return lambda c: _build(c, frozen)
    return _build(cls, frozen)


def _is_classvar(annotation) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _collect(cls) -> dict[str, Field]:
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        found.update(base.__dict__.get("__dataclass_fields__", {}))
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        spec.name = name
        found[name] = spec
        if isinstance(value, Field):
            if spec.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
    return found


def _build(cls, frozen: bool):
    specs = _collect(cls)
    names = list(specs)
    env: dict = {"MISSING": MISSING, "cls": cls, "setter": object.__setattr__}
    params, body = [], []
    seen_default = False
    for name, spec in specs.items():
        if spec.default_factory is not MISSING:
            env[f"f_{name}"] = spec.default_factory
            params.append(f"{name}=MISSING")
            value = f"f_{name}() if {name} is MISSING else {name}"
            seen_default = True
        elif spec.default is not MISSING:
            env[f"d_{name}"] = spec.default
            params.append(f"{name}=d_{name}")
            value = name
            seen_default = True
        else:
            if seen_default:
                raise TypeError(f"non-default argument {name!r} follows default argument")
            params.append(name)
            value = name
        body.append(f"  setter(self, {name!r}, {value})" if frozen
                    else f"  self.{name} = {value}")
    # Only __init__ is compiled (it runs for every instance); the rest are closures over
    # the class's field names: compiling them too made a class cost twice as much.
    exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body or ["  pass"]),
         env)  # noqa: S102 - our own generated method, as dataclasses does
    env.update(_methods(cls, names, [n for n in names if specs[n].compare],
                        [n for n in names if specs[n].repr], frozen))
    # A class body that defines __eq__ gets __hash__ = None from Python: not explicit.
    own_hash = cls.__dict__.get("__hash__", MISSING)
    explicit_hash = not (own_hash is MISSING or (own_hash is None and "__eq__" in cls.__dict__))
    for method in ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__"):
        if method in env and (method not in cls.__dict__
                              or (method == "__hash__" and not explicit_hash)):
            env[method].__qualname__ = f"{cls.__qualname__}.{method}"
            setattr(cls, method, env[method])
    if not frozen and not explicit_hash:
        cls.__hash__ = None  # mutable and compared by value: unhashable, as dataclasses
    cls.__dataclass_fields__ = specs
    cls.__match_args__ = tuple(names)
    return cls


def _methods(cls, names: list[str], compared: list[str], shown: list[str], frozen: bool) -> dict:
    """__repr__, __eq__ and (frozen) __hash__, __setattr__, __delattr__ for ``cls``."""
    def key(self) -> tuple:
        return tuple([getattr(self, n) for n in compared])

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in shown)
        return f"{self.__class__.__qualname__}({inner})"

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    made = {"__repr__": __repr__, "__eq__": __eq__}
    if frozen:
        fields = frozenset(names)

        def __hash__(self) -> int:
            return hash(key(self))

        def __setattr__(self, name, value):
            if type(self) is cls or name in fields:
                from dataclasses import FrozenInstanceError  # only when misused
                raise FrozenInstanceError(f"cannot assign to field {name!r}")
            super(cls, self).__setattr__(name, value)

        def __delattr__(self, name):
            if type(self) is cls or name in fields:
                from dataclasses import FrozenInstanceError
                raise FrozenInstanceError(f"cannot delete field {name!r}")
            super(cls, self).__delattr__(name)

        made.update(__hash__=__hash__, __setattr__=__setattr__, __delattr__=__delattr__)
    return made
