"""Shared pieces of input validation: field types with clear messages, and pydantic errors → one sentence each.

Every message names the field by its dotted path (`model.n_kv_heads`), so the CLI can print
`Error: FILE: FIELD: sentence` for each problem, all problems of a file together.
"""
from __future__ import annotations

import functools
import math
import re
import typing
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, TypeAdapter, ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from costplan.errors import CostplanError, did_you_mean, printable, shown

# Upper limits keep every product in the cost model far from float overflow; they are far above any real model.
MAX_WIDTH = 1 << 24          # d_model, d_ff, head_dim, vocab_size, max_seq_len, windows
MAX_COUNT = 1 << 20          # layers, heads, experts, batch sizes, GPUs
MAX_TOKENS = 10**18
# Lower limits keep every quotient finite: time is FLOPs / (peak × MFU), so with the upper limits above no
# estimate reaches float infinity (which JSON cannot hold). Published training runs report MFU from a few
# percent up; 0.01% is far below any of them. Peaks, memory and bandwidths in the units of their fields
# (TFLOP/s, GiB, GB/s) below a millionth describe no device.
MIN_MFU = 1e-4
MIN_POSITIVE = 1e-6


def _whole_number(value: Any) -> Any:
    """Accept ints and integral floats (YAML `2e12`); reject booleans, text and fractions."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("whole_number", "expected a whole number, got {value}", {"value": shown(value)})
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise PydanticCustomError("whole_number", "expected a whole number, got {value}",
                                      {"value": shown(value)})
        return int(value)
    return value


def _real_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("real_number", "expected a number, got {value}", {"value": shown(value)})
    if not math.isfinite(value):
        raise PydanticCustomError("real_number", "expected a finite number, got {value}", {"value": shown(value)})
    return value


def _at_least(least: float):
    def check(value: float) -> float:
        if value < least:
            raise PydanticCustomError("too_small", "{value} is too small (costplan accepts from {least})",
                                      {"value": shown(value), "least": least})
        return value

    return check


def _flag(value: Any) -> Any:
    if not isinstance(value, bool):
        raise PydanticCustomError("flag", "expected true or false, got {value}", {"value": shown(value)})
    return value


def _name(value: str) -> str:
    """Names are printed in tables and headings as they are: no control or format characters (an escape
    sequence would recolour or rewrite the terminal), and one line."""
    bad = [ch for ch in value if unicodedata.category(ch) in ("Cc", "Cf")]
    if bad:
        raise PydanticCustomError("name", "contains the control character {char}; a name is printed as it is",
                                  {"char": shown(bad[0])})
    return value


def whole_or_none(value: Any) -> int | None:
    """The whole number a raw YAML value stands for, or None."""
    try:
        return _whole_number(value)
    except PydanticCustomError:
        return None


def _count_or_auto(value: Any) -> Any:
    """'auto' or a count in 1..MAX_COUNT, with the same messages as Count."""
    if value == "auto":
        return value
    if isinstance(value, str):
        raise PydanticCustomError("whole_number", "expected a whole number or auto, got {value}",
                                  {"value": shown(value)})
    number = _whole_number(value)
    if number <= 0:
        raise PydanticCustomError("greater_than", "must be greater than 0", {"gt": 0})
    if number > MAX_COUNT:
        raise PydanticCustomError("less_than_equal", "too large", {"le": MAX_COUNT})
    return number


def width_or_none(value: Any) -> int | None:
    """The size a raw YAML value stands for if it is a valid one (1..MAX_WIDTH), else None: for defaults
    derived from other fields before validation."""
    try:
        number = _whole_number(value)
    except PydanticCustomError:
        return None
    return number if 0 < number <= MAX_WIDTH else None


Width = Annotated[int, BeforeValidator(_whole_number), Field(gt=0, le=MAX_WIDTH)]
Count = Annotated[int, BeforeValidator(_whole_number), Field(gt=0, le=MAX_COUNT)]
CountOrAuto = Annotated[Union[int, Literal["auto"]], PlainValidator(_count_or_auto)]
Tokens = Annotated[int, BeforeValidator(_whole_number), Field(gt=0, le=MAX_TOKENS)]
Amount = Annotated[int, BeforeValidator(_whole_number), Field(ge=0, le=MAX_COUNT)]   # a count that may be 0
Flag = Annotated[bool, BeforeValidator(_flag)]
Name = Annotated[str, AfterValidator(_name)]
ZeroStage = Annotated[Literal[0, 1, 2, 3], BeforeValidator(_whole_number)]   # `true` is no stage
Fraction = Annotated[float, BeforeValidator(_real_number), Field(gt=0, le=1), AfterValidator(_at_least(MIN_MFU))]
Positive = Annotated[float, BeforeValidator(_real_number), Field(gt=0, le=1e30),
                     AfterValidator(_at_least(MIN_POSITIVE))]
NonNegative = Annotated[float, BeforeValidator(_real_number), Field(ge=0, le=1e30)]
Price = Annotated[float, BeforeValidator(_real_number), Field(ge=0, le=1e6)]


def canonical(value: Any, choices: Iterable[str]) -> Any:
    """The choice a text value names regardless of case (`SwiGLU` → swiglu, `BF16` → bf16) when exactly one
    does; otherwise the value unchanged, for validation to judge."""
    if not isinstance(value, str):
        return value
    same = [c for c in choices if c.casefold() == value.casefold()]
    return same[0] if len(same) == 1 else value


@functools.cache
def _word_choices(cls: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """{field: its text choices} for the fields of a section whose values are a Literal of words."""
    found = {}
    for name, field in cls.model_fields.items():
        args = [a for arg in (field.annotation, *typing.get_args(field.annotation))
                if typing.get_origin(arg) is Literal for a in typing.get_args(arg)]
        words = tuple(a for a in args if isinstance(a, str))
        if words and name != "type":     # `type` picks a union member and is read before this runs
            found[name] = words
    return found


class Section(BaseModel):
    """A frozen part of an input file; unknown keys are errors; words are accepted in any case."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _words_in_any_case(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        fixed = {f: canonical(value, words) for f, words in _word_choices(cls).items()
                 if isinstance(value := data.get(f), str) and value not in words}
        return {**data, **fixed} if fixed else data


class FieldProblems(ValueError):
    """Cross-field problems, each tied to the field a user should change: [(field, sentence), ...]."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))


def raise_if(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise FieldProblems(problems)


def kind_of(value: Any) -> str:
    return {list: "a list", str: "text", int: "a number", float: "a number", bool: "a boolean",
            type(None): "nothing"}.get(type(value), type(value).__name__)


def valid_field_getter(cls: type[BaseModel], data: Mapping[str, Any], context: dict | None = None):
    """A getter for cross-field rules over raw data: a field's validated value (or its default), or None when
    the field is invalid on its own."""

    def get(name: str) -> Any:
        field = cls.model_fields[name]
        if name not in data or data[name] is None:
            return None if field.is_required() else field.default
        try:
            return _adapter(cls, name).validate_python(data[name], context=context)
        except (ValidationError, ValueError):
            return None

    return get


@functools.cache
def _adapter(cls: type[BaseModel], name: str) -> TypeAdapter:
    field = cls.model_fields[name]
    annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return TypeAdapter(annotation)


# ---------------------------------------------------------------------------------------------- messages
def error_messages(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One sentence per error, each starting with the dotted field path."""
    out: list[str] = []
    for err in exc.errors(include_url=False):
        out.extend(_describe(err, root))
    return out


def _tagged_members(annotation: Any) -> dict[str, type[BaseModel]]:
    """For a discriminated union of sections on `type`, {tag: class}; else {}."""
    members = {}
    for arg in typing.get_args(annotation):   # through Annotated, unions and tuples (a pattern of them)
        if isinstance(arg, type) and issubclass(arg, BaseModel) and "type" in arg.model_fields:
            members[arg.model_fields["type"].default] = arg
        else:
            members.update(_tagged_members(arg))
    return members


def field_sections(annotation: Any) -> list[type[BaseModel]]:
    """The sections a field's annotation can hold: one, the members of a tagged union, or none (a value)."""
    members = _tagged_members(annotation)
    if members:
        return list(members.values())
    section = _section_of(annotation)
    return [section] if section is not None else []


def _section_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section_of(arg)
        if found is not None:
            return found
    return None


# The tags of a field holding one tagged section or a list of them (model.attention), which pydantic puts in
# error locations; messages leave them out.
PATTERN_TAGS = ("one", "pattern")


def _walk(loc: tuple, root: type[BaseModel]) -> tuple[type[BaseModel] | None, list[str], dict]:
    """Follow an error location from the root section: the section it ends in, the location with the
    discriminator tags pydantic inserts for tagged unions removed, and the union members of the last field."""
    cls: type[BaseModel] | None = root
    clean: list[str] = []
    members: dict[str, type[BaseModel]] = {}
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        clean.append(str(part))
        if cls is None or part not in cls.model_fields:
            cls, members = None, {}
            continue
        annotation = cls.model_fields[part].annotation
        members = _tagged_members(annotation)
        if parts and parts[0] in PATTERN_TAGS:     # one attention, or a per-layer pattern of them
            parts.pop(0)
        if parts and isinstance(parts[0], int):     # an entry of a list: `attention[2]`
            clean[-1] += f"[{parts.pop(0)}]"
        if members:
            cls = members.get(parts.pop(0)) if parts and parts[0] in members else None
        else:
            cls = _section_of(annotation)
    return cls, clean, members


def _describe(err: Mapping[str, Any], root: type[BaseModel]) -> list[str]:
    kind, loc, value, ctx = err["type"], tuple(err["loc"]), err.get("input"), err.get("ctx") or {}
    section, where, members = _walk(loc, root)
    where = [printable(part) for part in where]   # keys are the user's text too
    field = ".".join(where)
    if kind == "value_error" and isinstance(ctx.get("error"), FieldProblems):
        return [".".join(p for p in (field, name) if p) + f": {msg}" for name, msg in ctx["error"].problems]
    if kind == "extra_forbidden":
        owner, _, union = _walk(loc[:-1], root)
        names = [n for n, f in owner.model_fields.items() if not f.exclude] if owner else []
        name = where[-1]
        others = [tag for tag, member in union.items() if member is not owner and name in member.model_fields]
        if owner is not None and union and others:
            tag = owner.model_fields["type"].default
            return [f"{field}: type {tag!r} has no field {name!r}; {', '.join(others)} "
                    f"{'has' if len(others) == 1 else 'have'} it"]
        return [f"{field}: unknown field{did_you_mean(name, names)}"]
    if kind == "missing":
        return [f"{field}: required field is missing"]
    if kind == "literal_error":
        return [f"{field}: {shown(value)} is not one of {ctx['expected'].replace(chr(39), '')}"
                f"{did_you_mean(value, _literal_words(ctx['expected']))}"]
    if kind == "union_tag_invalid":
        tags = ", ".join(members)
        return [f"{field}.type: {shown(ctx['tag'])} is not one of {tags}{did_you_mean(ctx['tag'], members)}"]
    if kind == "union_tag_not_found":
        return [f"{field}.type: required field is missing; one of {', '.join(members)}"]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return [f"{field}: expected a mapping of fields, got {kind_of(value)}"]
    if kind in ("greater_than", "greater_than_equal"):
        relation = "greater than" if kind == "greater_than" else "at least"
        return [f"{field}: must be {relation} {ctx.get('gt', ctx.get('ge'))}, got {shown(value)}"]
    if kind in ("less_than_equal", "less_than"):
        return [f"{field}: {shown(value)} is too large (costplan accepts up to {ctx.get('le', ctx.get('lt'))})"]
    if kind == "string_type":
        return [f"{field}: expected text, got {kind_of(value)}"]
    if kind == "value_error":
        return [f"{field}: {ctx.get('error', err['msg'])}"]
    return [f"{field or 'top level'}: {err['msg']}"]


def _literal_words(expected: str) -> list[str]:
    return [w.strip(" '") for w in expected.replace(" or ", ", ").split(",")]


# ---------------------------------------------------------------------------------------------- command options
_DURATION_HOURS = {"h": 1, "hour": 1, "hours": 1, "d": 24, "day": 24, "days": 24, "w": 168, "week": 168,
                   "weeks": 168}
BUDGET_UNITS = ("flops", "gpu-hours", "usd")


def parse_positive(option: str, text: str) -> float:
    """A finite number greater than zero (`5.76e23`, `250_000`), or a CostplanError naming the option."""
    try:
        value = float(str(text).replace("_", ""))
    except ValueError:
        raise CostplanError(f"{option}: expected a number, got {shown(text)}") from None
    if not math.isfinite(value):
        raise CostplanError(f"{option}: expected a finite number, got {shown(text)}")
    if value <= 0:
        raise CostplanError(f"{option}: must be greater than 0, got {printable(text)}")
    return value


def parse_unit(text: str) -> str:
    if text not in BUDGET_UNITS:
        raise CostplanError(f"--unit: {shown(text)} is not one of {', '.join(BUDGET_UNITS)}"
                            f"{did_you_mean(text, BUDGET_UNITS)}")
    return text


def parse_duration(option: str, text: str) -> float:
    """`30d`, `12h`, `2w`, `1.5 days` → hours."""
    match = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]+)\s*", str(text).lower())
    if not match or match.group(2) not in _DURATION_HOURS:
        raise CostplanError(f"{option}: {shown(text)} is not a duration; write a number and a unit, e.g. 30d, 12h "
                            "or 2w")
    hours = float(match.group(1).replace("_", "")) * _DURATION_HOURS[match.group(2)]
    if hours <= 0:
        raise CostplanError(f"{option}: must be longer than zero, got {shown(text)}")
    return hours


def parse_count(option: str, text: str) -> int:
    """A whole number from 1 to MAX_WIDTH given on the command line."""
    value = parse_positive(option, text)
    if value != int(value):
        raise CostplanError(f"{option}: expected a whole number, got {printable(text)}")
    if value > MAX_WIDTH:
        raise CostplanError(f"{option}: {printable(text)} is too large (costplan accepts up to {MAX_WIDTH})")
    return int(value)
