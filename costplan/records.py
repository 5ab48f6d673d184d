"""Frozen values with named fields, for what costplan builds from its own numbers (results, tables, resolved
runs): declared as annotated class attributes with optional defaults, as a dataclass is.

A dataclass compiles its generated methods when its class is made: some thirty of them on an estimate's path
cost about as long as the rest of the command. A Record's methods are written once, here, and read the field
names its subclass declares. Cost-model values built thousands of times per sweep stay dataclasses or named
tuples (their construction is faster per call).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal


class Record:
    """Fields are the class's annotated attributes (those not starting with `_`); a value given as the
    attribute is the field's default. Instances are frozen, equal when their fields are, and dump as nested
    plain values (`model_dump`), the JSON object of a result."""

    _fields: ClassVar[tuple[str, ...]] = ()
    _field_set: ClassVar[frozenset[str]] = frozenset()
    _defaults: ClassVar[dict[str, Any]] = {}
    _excluded: ClassVar[frozenset[str]] = frozenset()   # left out of dumps and repr
    _template: ClassVar[dict[str, Any]] = {}
    _required: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = [n for n in cls.__dict__.get("__annotations__", {}) if not n.startswith("_")
               and n not in ("model_fields",)]
        defaults = dict(cls._defaults)
        for name in own:
            if name in cls.__dict__:
                defaults[name] = cls.__dict__[name]
            else:
                defaults.pop(name, None)
        cls._fields = tuple(dict.fromkeys((*cls._fields, *own)))
        cls._field_set = frozenset(cls._fields)
        cls._set_defaults(defaults)

    @classmethod
    def _set_defaults(cls, defaults: dict[str, Any]) -> None:
        cls._defaults = defaults
        # every field in order, with its default or None: a copy updated by the given values is a record's fields
        cls._template = {n: defaults.get(n) for n in cls._fields}
        cls._required = frozenset(n for n in cls._fields if n not in defaults)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self._fields
        if args:
            if len(args) > len(fields):
                raise TypeError(f"{type(self).__name__} has {len(fields)} fields, not {len(args)}")
            kwargs = {**dict(zip(fields, args)), **kwargs}
        if not kwargs.keys() <= self._field_set:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(set(kwargs) - self._field_set))}")
        if not self._required <= kwargs.keys():
            lacking = next(n for n in fields if n in self._required and n not in kwargs)
            raise TypeError(f"{type(self).__name__} needs {lacking}")
        # in field order, always (the template's): equal records then hold their fields alike (see _field_values)
        values = self._template.copy()
        values.update(kwargs)
        self.__dict__.update(values)

    def _field_values(self) -> tuple:
        """The values in field order: a record's __dict__ holds its fields in that order, then anything
        attached beside them (set_private)."""
        values = self.__dict__
        if len(values) == len(self._fields):
            return tuple(values.values())
        return tuple(values[n] for n in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        mine, theirs = self.__dict__, other.__dict__
        if len(mine) == len(theirs) == len(self._fields):
            return mine == theirs
        return self._field_values() == other._field_values()   # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._field_values()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name} cannot be set")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name} cannot be deleted")

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={self.__dict__[n]!r}" for n in self._fields if n not in self._excluded)
        return f"{type(self).__name__}({shown})"

    def model_dump(self, exclude: Iterable[str] = (), exclude_none: bool = False,
                   mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        """The fields as plain values (records as mappings, in declaration order); `exclude_none` leaves out
        fields that are None at every depth; mode json writes tuples as lists."""
        out = {}
        for name in self._fields:
            value = self.__dict__[name]
            if not (name in self._excluded or name in exclude or (exclude_none and value is None)):
                out[name] = dumped(value, exclude_none, mode)
        return out

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Any:
        """A copy with some fields replaced, not checked again (the caller's values are already valid); what is
        not a field (a spec's raw mapping) is not copied."""
        copy = type(self).__new__(type(self))
        copy.__dict__.update({n: self.__dict__[n] for n in self._fields})
        copy.__dict__.update(update or {})
        return copy


def set_private(record: Record, name: str, value: Any) -> None:
    """Attach something that is not a field (a spec's raw mapping); equality and dumps ignore it."""
    object.__setattr__(record, name, value)


def dumped(value: Any, exclude_none: bool = False, mode: str = "python") -> Any:
    if isinstance(value, Record):
        return value.model_dump(exclude_none=exclude_none, mode=mode)  # type: ignore[arg-type]
    if isinstance(value, (tuple, list)):
        items = [dumped(v, exclude_none, mode) for v in value]
        return tuple(items) if isinstance(value, tuple) and mode == "python" else items
    if isinstance(value, dict):
        return {k: dumped(v, exclude_none, mode) for k, v in value.items()}
    return value
