"""The kinds of value a section's fields hold, and where validation is: a kind checks one raw value and says
in one sentence what is wrong with it (`Invalid`); containers (lists, mappings, sections) check their items at
their own places, so each problem is reported with its dotted path (costplan/sections.py).
"""
from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from costplan.errors import did_you_mean, printable, shown

if TYPE_CHECKING:
    from costplan.sections import Section

FAILED: Any = type("Failed", (), {"__repr__": lambda self: "FAILED"})()   # a value that had a problem


class Invalid(ValueError):
    """One problem with the value at the place being validated (the message says what, not where)."""


class FieldProblems(ValueError):
    """Cross-field problems, each tied to the field a user should change: [(field, sentence), ...]."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))


def raise_if(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise FieldProblems(problems)


def kind_of(value: Any) -> str:
    return {list: "a list", tuple: "a list", str: "text", int: "a number", float: "a number", bool: "a boolean",
            type(None): "nothing"}.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------------------------- places
class Place:
    """Where validation is in the input: the path so far, the problems found anywhere, and the caller's context
    (the spec's folder, for hardware files named relative to it)."""

    __slots__ = ("path", "problems", "context")

    def __init__(self, path: tuple, problems: list[tuple[tuple, str]], context: Mapping[str, Any]):
        self.path, self.problems, self.context = path, problems, context

    def at(self, key: str | int) -> Place:
        return Place((*self.path, key), self.problems, self.context)

    def add(self, message: str, *names: str) -> None:
        self.problems.append(((*self.path, *(n for n in names if n)), message))

    def check(self, kind: Kind, value: Any) -> Any:
        """The kind's value for `value`, or FAILED with its problems recorded here."""
        before = len(self.problems)
        try:
            result = kind.check(value, self)
        except FieldProblems as exc:
            for name, text in exc.problems:
                self.add(text, name)
            return FAILED
        except ValueError as exc:   # Invalid, or a check's own ValueError: its message is the sentence
            self.add(str(exc))
            return FAILED
        return FAILED if len(self.problems) > before else result


def dotted(path: Iterable[str | int]) -> str:
    """`('model', 'attention', 1, 'window')` → `model.attention[1].window`; keys are the user's text too."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{printable(part)}" if out else printable(part))
    return out


def message(path: tuple, text: str) -> str:
    return f"{dotted(path)}: {text}" if path else text


# ---------------------------------------------------------------------------------------------- kinds
class Kind:
    """A field's type: how a raw value becomes the field's value, or the sentence saying why it cannot."""

    def __init__(self, name: str, check: Callable[[Any], Any] | None, words: tuple[str, ...] | None = None):
        self.name, self.words = name, words
        # The check as a function of the value alone, for kinds that need no place (most fields): validation
        # calls it directly. None for kinds that record problems inside the value (sections, lists), which
        # override `check`.
        self.simple: Callable[[Any], Any] | None = check

    def check(self, value: Any, at: Place) -> Any:
        return self.simple(value)

    def sections(self) -> list[type[Section]]:
        """The sections a value of this kind can hold (for dotted field paths)."""
        return []

    def choices(self) -> tuple | None:
        """The words a value of this kind may be (written in any case), if any."""
        return self.words

    def __or__(self, other: Any) -> Kind:
        if other is None:
            return Nullable(self)
        return NotImplemented

    __ror__ = __or__

    def __repr__(self) -> str:
        return self.name


class Nullable(Kind):
    def __init__(self, inner: Kind):
        super().__init__(f"{inner.name} | None", None)
        self.inner = inner
        inner_simple = inner.simple
        self.simple = None if inner_simple is None else (lambda v: None if v is None else inner_simple(v))

    def check(self, value: Any, at: Place) -> Any:
        return None if value is None else self.inner.check(value, at)

    def sections(self) -> list[type[Section]]:
        return self.inner.sections()

    def choices(self) -> tuple | None:
        return self.inner.choices()


class Then(Kind):
    """A kind whose value is checked further: `check(value, context)` returns the value or raises Invalid."""

    def __init__(self, inner: Kind, check: Callable[[Any, Mapping[str, Any]], Any], name: str | None = None):
        super().__init__(name or inner.name, None)
        self.inner, self.then = inner, check

    def check(self, value: Any, at: Place) -> Any:
        value = at.check(self.inner, value)      # its problems recorded here
        return value if value is FAILED else self.then(value, at.context)

    def sections(self) -> list[type[Section]]:
        return self.inner.sections()

    def choices(self) -> tuple | None:
        return self.inner.choices()


def either(values: Iterable[Any]) -> str:
    """`a, b or c`."""
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


class Choice(Kind):
    """One of a few values (typing.Literal), compared with their types: `true` is not 1."""

    def __init__(self, values: tuple, before: Callable[[Any], Any] | None = None):
        super().__init__(f"Literal{list(values)}", self._choose)
        self.values, self.before = values, before

    def _choose(self, value: Any) -> Any:
        read = value if self.before is None else self.before(value)
        for choice in self.values:
            if type(read) is type(choice) and read == choice:
                return choice
        # YAML 1.1 reads off, no, on and yes as booleans: a word that became one is said as such
        flag = (" (YAML reads off, no, on and yes as false or true: quote a word)"
                if isinstance(value, bool) and not any(isinstance(v, bool) for v in self.values) else "")
        raise Invalid(f"{shown(value)} is not one of {either(self.values)}"
                      f"{did_you_mean(value, [str(v) for v in self.values])}{flag}")

    def choices(self) -> tuple | None:
        return self.values


class SectionKind(Kind):
    def __init__(self, cls: type[Section]):
        super().__init__(cls.__name__, None)
        self.cls = cls

    def check(self, value: Any, at: Place) -> Any:
        return self.cls._validate_at(value, at)

    def sections(self) -> list[type[Section]]:
        return [self.cls]


def _at_least(least: int, value: Any) -> None:
    """A list or mapping that may not hold fewer than `least` entries."""
    if len(value) < least:
        raise Invalid(f"expected at least {least} entr{'y' if least == 1 else 'ies'}, got {len(value)}")


class ListOf(Kind):
    """A list (kept as a list, or as a tuple with `as_tuple`) of values of one kind."""

    def __init__(self, item: Kind, as_tuple: bool = False, min_length: int = 0):
        super().__init__(f"list[{item.name}]", None)
        self.item, self.as_tuple, self.min_length = item, as_tuple, min_length

    def check(self, value: Any, at: Place) -> Any:
        if not isinstance(value, (list, tuple)):
            raise Invalid(f"expected a list, got {kind_of(value)}")
        _at_least(self.min_length, value)
        items = [at.at(i).check(self.item, v) for i, v in enumerate(value)]
        return tuple(items) if self.as_tuple else items

    def sections(self) -> list[type[Section]]:
        return self.item.sections()


class TupleOf(Kind):
    """A fixed number of values, one kind each: a curve's (size, value) point."""

    def __init__(self, items: tuple[Kind, ...]):
        super().__init__(f"tuple[{', '.join(k.name for k in items)}]", None)
        self.items = items

    def check(self, value: Any, at: Place) -> Any:
        if not isinstance(value, (list, tuple)):
            raise Invalid(f"expected a list of {len(self.items)} values, got {kind_of(value)}")
        if len(value) != len(self.items):
            raise Invalid(f"expected {len(self.items)} values, got {len(value)}")
        return tuple(at.at(i).check(kind, v) for i, (kind, v) in enumerate(zip(self.items, value)))


class DictOf(Kind):
    def __init__(self, key: Kind, value: Kind, min_length: int = 0):
        super().__init__(f"dict[{key.name}, {value.name}]", None)
        self.key, self.value, self.min_length = key, value, min_length

    def check(self, value: Any, at: Place) -> Any:
        if not isinstance(value, Mapping):
            raise Invalid(f"expected a mapping, got {kind_of(value)}")
        _at_least(self.min_length, value)
        out = {}
        for k, v in value.items():
            here = at.at(str(k))
            key = here.check(self.key, k)
            out[key] = here.check(self.value, v)
        return out

    def sections(self) -> list[type[Section]]:
        return self.value.sections()


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected text, got {kind_of(value)}")
    return value


# ints and floats, and numpy's numbers (np.int64(8) from a notebook's sweep), which register with the numbers
# ABCs; a boolean is never a number here (numpy's is not a numbers.Real)
_NUMBERS = (int, float, numbers.Real)


def real_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, _NUMBERS):
        raise Invalid(f"expected a number, got {shown(value)}")
    if not math.isfinite(value):
        raise Invalid(f"expected a finite number, got {shown(value)}")
    return float(value)


# a count written with a suffix (2T tokens, 70B): the exponent it stands for, which the message suggests
_SUFFIXES = {"k": 3, "m": 6, "b": 9, "g": 9, "t": 12}
_SUFFIXED = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMbBgGtT])\s*$")


def _written_as(value: Any) -> str:
    """' (write 2e12 for 2T)' where text is a number with a k/M/B/T suffix, else ''."""
    found = _SUFFIXED.match(value) if isinstance(value, str) else None
    return f" (write {found[1]}e{_SUFFIXES[found[2].lower()]} for {found[1]}{found[2]})" if found else ""


def whole_number(value: Any) -> int:
    """Accept ints and integral floats (YAML `2e12`), numpy's too; reject booleans, text and fractions."""
    if isinstance(value, bool) or not isinstance(value, _NUMBERS):
        raise Invalid(f"expected a whole number, got {shown(value)}{_written_as(value)}")
    if not isinstance(value, (int, float)):
        value = int(value) if isinstance(value, numbers.Integral) else float(value)
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise Invalid(f"expected a whole number, got {shown(value)}")
        return int(value)
    return value


def _key_number(value: Any) -> int:
    """A whole number, or one written as text (a mapping's keys, such as a curve table's head dimensions)."""
    return int(value) if isinstance(value, str) and value.strip().isdigit() else whole_number(value)


TEXT, REAL, INTEGER = Kind("str", text), Kind("float", real_number), Kind("int", _key_number)
ANY = Kind("Any", lambda v: v)
