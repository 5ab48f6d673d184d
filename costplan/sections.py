"""Frozen sections of an input file (a spec, a hardware file, a scaling law, kernel curves), validated field by
field into one sentence per problem, each naming its field by a dotted path (`model.attention[1].window`).

A section declares its fields as annotated class attributes, as a dataclass does; an annotation is a kind
(costplan/kinds.py; the spec's own, Width, Flag, ..., in costplan/validation.py), a Literal of choices, another
section, or a list, tuple or dict of those. costplan validates its input itself rather than through a model
library: building such a library's validators cost more at every start of the command line than all of an
estimate.
"""
from __future__ import annotations

import sys
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

from costplan.errors import CostplanError, did_you_mean
from costplan.kinds import (
    ANY, FAILED, INTEGER, REAL, TEXT, Choice, DictOf, FieldProblems, Invalid, Kind, ListOf, Nullable, Place,
    SectionKind, TupleOf, kind_of, message,
)
from costplan.records import Record

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()


class InvalidInput(CostplanError, ValueError):
    """Every problem of one input, each a sentence starting with its field's dotted path: a CostplanError, so
    that a caller building a section directly (`costplan.Spec(model={...})`) catches it as any other input's."""

    def __init__(self, messages: list[str]):
        self.messages = messages
        super().__init__("\n".join(messages))


def kind(annotation: Any, min_length: int = 0) -> Kind:
    """The kind an evaluated annotation stands for."""
    if isinstance(annotation, Kind):
        return annotation
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return SectionKind(annotation)
    plain = {str: TEXT, float: REAL, int: INTEGER, Any: ANY}.get(annotation)
    if plain is not None:
        return plain
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return Choice(args)
    if origin in (types.UnionType, typing.Union):
        others = [a for a in args if a is not type(None)]
        if len(others) == 1 and len(args) == 2:
            return Nullable(kind(others[0], min_length))
    if origin is list:
        return ListOf(kind(args[0]), min_length=min_length)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return ListOf(kind(args[0]), as_tuple=True, min_length=min_length)
    if origin is tuple:
        return TupleOf(tuple(kind(a) for a in args))
    if origin is dict:
        return DictOf(kind(args[0]), kind(args[1]), min_length)
    raise TypeError(f"no kind of field for {annotation!r}")


# ---------------------------------------------------------------------------------------------- sections
def field(default: Any = REQUIRED, *, exclude: bool = False, min_length: int = 0) -> Any:
    """A field's default with what an annotation cannot say: left out of dumps and messages (`exclude`), or a
    list or mapping that may not be empty."""
    return _FieldArgs(default, exclude, min_length)


# Plain classes, not dataclasses: making a dataclass compiles its methods, a cost paid at every start.
class _FieldArgs:
    __slots__ = ("default", "exclude", "min_length")

    def __init__(self, default: Any, exclude: bool, min_length: int):
        self.default, self.exclude, self.min_length = default, exclude, min_length


class FieldInfo:
    """One field of a section: its annotation as written (evaluated: typing.Literal[...], Width | None,
    ModelSpec, ...), the kind that validates it, its default (REQUIRED if none) and whether dumps leave it out."""

    __slots__ = ("name", "annotation", "kind", "default", "exclude")

    def __init__(self, name: str, annotation: Any, kind: Kind, default: Any, exclude: bool):
        self.name, self.annotation, self.kind, self.default, self.exclude = name, annotation, kind, default, exclude

    def is_required(self) -> bool:
        return self.default is REQUIRED

    def __repr__(self) -> str:
        return f"FieldInfo({self.name}: {self.kind!r} = {self.default!r})"


class Section(Record):
    """A frozen part of an input file: its fields are its annotated class attributes, unknown keys are errors.
    `model_validate` checks a mapping; keyword construction (`TrainingSpec(precision="fp8")`) checks the same
    way. Hooks for subclasses: `_before` (the raw mapping: defaults derived from other fields) and `_after` (the
    built section: cross-field rules, raising FieldProblems)."""

    model_fields: ClassVar[dict[str, FieldInfo]] = {}
    _words: ClassVar[dict[str, tuple[str, ...]]] = {}   # fields whose text values are accepted in any case

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)   # the field names, in order
        names = sys.modules[cls.__module__].__dict__
        fields = dict(cls.model_fields)
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            if name.startswith("_") or name == "model_fields":
                continue
            if isinstance(annotation, str):
                annotation = eval(annotation, names)  # noqa: S307 - the module's own annotation
            default = cls.__dict__.get(name, REQUIRED)
            args = default if isinstance(default, _FieldArgs) else _FieldArgs(default, False, 0)
            fields[name] = FieldInfo(name, annotation, kind(annotation, args.min_length), args.default,
                                     args.exclude)
            if isinstance(default, _FieldArgs):
                setattr(cls, name, args.default)
        cls.model_fields = fields
        cls._set_defaults({n: f.default for n, f in fields.items() if not f.is_required()})
        cls._excluded = frozenset(n for n, f in fields.items() if f.exclude)
        cls._words = {n: tuple(w for w in f.kind.choices() if isinstance(w, str))
                      for n, f in fields.items() if n != "type" and f.kind.choices()}

    def __init__(self, **data: Any) -> None:
        self.__dict__.update(type(self).model_validate(data).__dict__)

    @classmethod
    def model_validate(cls, data: Any, context: Mapping[str, Any] | None = None) -> Any:
        """A validated section from a raw mapping, or InvalidInput with every problem."""
        problems: list[tuple[tuple, str]] = []
        result = Place((), problems, context or {}).check(SectionKind(cls), data)
        if problems:
            raise InvalidInput([message(path, text) for path, text in problems])
        return result

    @classmethod
    def _before(cls, data: Any, context: Mapping[str, Any]) -> Any:
        """The raw data as the fields are read from it: words in any case become the choice they name."""
        if not isinstance(data, Mapping):
            return data
        fixed = {name: canonical(value, words) for name, words in cls._words.items()
                 if isinstance(value := data.get(name), str) and value not in words}
        return {**data, **fixed} if fixed else data

    def _after(self) -> None:
        """Cross-field rules on the built section; raise FieldProblems."""

    @classmethod
    def _validate_at(cls, data: Any, at: Place, siblings: Mapping[str, type[Section]] | None = None) -> Any:
        data = cls._before(data, at.context)
        values = cls._values(data, at, siblings)
        if values is FAILED:
            return FAILED
        section = cls.__new__(cls)
        section.__dict__.update(values)
        return section if _rules_hold(section, at) else FAILED

    @classmethod
    def _values(cls, data: Any, at: Place, siblings: Mapping[str, type[Section]] | None = None) -> Any:
        if not isinstance(data, Mapping):
            raise Invalid(f"expected a mapping of fields, got {kind_of(data)}")
        before = len(at.problems)
        values = {}
        for name, info in cls.model_fields.items():
            if name in data:
                simple = info.kind.simple
                if simple is None:
                    values[name] = at.at(name).check(info.kind, data[name])
                    continue
                try:
                    values[name] = simple(data[name])
                except ValueError as exc:
                    at.problems.append(((*at.path, name), str(exc)))
            elif info.is_required():
                at.at(name).add("required field is missing")
            else:
                values[name] = info.default
        for name in data:
            if name not in cls.model_fields:
                at.at(str(name)).add(cls._unknown(str(name), siblings))
        return FAILED if len(at.problems) > before else values

    @classmethod
    def _unknown(cls, name: str, siblings: Mapping[str, type[Section]] | None) -> str:
        others = [tag for tag, member in (siblings or {}).items() if member is not cls and name in member.model_fields]
        if others:
            return (f"type {cls.model_fields['type'].default!r} has no field {name!r}; {', '.join(others)} "
                    f"{'has' if len(others) == 1 else 'have'} it")
        names = [n for n, f in cls.model_fields.items() if not f.exclude]
        return f"unknown field{did_you_mean(name, names)}"


def _rules_hold(section: Section, at: Place) -> bool:
    """Run a built section's cross-field rules; False (problems recorded) when they fail."""
    try:
        section._after()
    except FieldProblems as exc:
        for name, text in exc.problems:
            at.add(text, name)
        return False
    except ValueError as exc:
        at.add(str(exc))
        return False
    return True


def canonical(value: Any, choices: Iterable[str]) -> Any:
    """The choice a text value names regardless of case (`SwiGLU` → swiglu, `BF16` → bf16) when exactly one
    does; otherwise the value unchanged, for validation to judge."""
    if not isinstance(value, str):
        return value
    same = [c for c in choices if c.casefold() == value.casefold()]
    return same[0] if len(same) == 1 else value


def field_sections(annotation: Any) -> list[type[Section]]:
    """The sections a field's annotation can hold: one, the members of a tagged union, or none (a value)."""
    return kind(annotation).sections()


def valid_field_getter(cls: type[Section], data: Mapping[str, Any], context: Mapping[str, Any] | None = None):
    """A getter for cross-field rules over raw data: a field's validated value (or its default), or None when
    the field is invalid on its own."""

    def get(name: str) -> Any:
        info = cls.model_fields[name]
        if name not in data or data[name] is None:
            return None if info.is_required() else info.default
        value = Place((), [], context or {}).check(info.kind, data[name])
        return None if value is FAILED else value

    return get
