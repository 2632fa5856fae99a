"""records: the dataclasses subset the package uses behaves as dataclasses does, without
importing dataclasses on the way (issue 24)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import ClassVar

import pytest

from hermes_tasks import records


def pair(frozen: bool):
    """The same class written with each decorator."""
    made = []
    for deco, fieldf in ((dataclasses.dataclass(frozen=frozen), dataclasses.field),
                         (records.record(frozen=frozen), records.field)):
        @deco
        class Base:
            kind: ClassVar[str] = "base"
            a: int

        @deco
        class Point(Base):
            b: str = "x"
            c: dict = fieldf(default_factory=dict)
            d: int = fieldf(default=0, compare=False)
            kind: ClassVar[str] = "point"

            def total(self) -> int:
                return self.a + self.d
        made.append(Point)
    return made


@pytest.mark.parametrize("frozen", [False, True])
def test_generated_methods_match_dataclasses(frozen):
    dc, rec = pair(frozen)
    for args, kwargs in (((1,), {}), ((1, "y"), {"c": {"k": 1}, "d": 5}), ((), {"a": 2})):
        x, y = dc(*args, **kwargs), rec(*args, **kwargs)
        assert repr(x) == repr(y)
        assert vars(x) == vars(y)
        assert (x == dc(*args, **kwargs)) == (y == rec(*args, **kwargs))
        assert y.total() == x.total()
    assert (rec(1, d=1) == rec(1, d=2)) and rec(1) != rec(2)  # d is not compared
    assert rec(1) != dc(1) and rec(1).__eq__(1) is NotImplemented
    assert rec.kind == "point" and "kind" not in vars(rec(1))
    assert rec(1).c is not rec(1).c  # a fresh default per instance
    assert rec.__match_args__ == dc.__match_args__ == ("a", "b", "c", "d")
    with pytest.raises(TypeError):
        rec()
    with pytest.raises(TypeError):
        rec(1, nope=2)
    if frozen:  # hashed by the compared fields (c=None keeps it hashable)
        assert hash(rec(1, c=None, d=1)) == hash(rec(1, c=None, d=2)) == hash(dc(1, c=None))
    with pytest.raises(TypeError):  # mutable, or frozen with a dict: unhashable either way
        hash(rec(1))


def test_frozen_assignment_raises_dataclasses_error():
    _, rec = pair(True)
    item = rec(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.a = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        del item.b


def test_replace_and_fields():
    _, rec = pair(True)
    item = rec(1, "y", d=3)
    other = records.replace(item, a=5)
    assert (other.a, other.b, other.d) == (5, "y", 3) and item.a == 1
    assert dataclasses.replace(item, b="z").b == "z"  # interop: tests use dataclasses.replace
    assert [f.name for f in records.fields(rec)] == ["a", "b", "c", "d"]


def test_non_default_after_default_is_refused():
    with pytest.raises(TypeError, match="non-default argument"):
        @records.record
        class Bad:
            a: int = 1
            b: int


def test_explicit_hash_is_kept():
    @records.record
    class Keyed:
        a: int

        def __hash__(self):
            return 7
    assert hash(Keyed(1)) == 7


def test_the_boot_path_imports_neither_dataclasses_nor_typing():
    code = ("import sys; import hermes_tasks.actions, hermes_tasks.boot; "
            "print(*(m in sys.modules for m in ('dataclasses', 'inspect', 'typing')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False", "False"]
