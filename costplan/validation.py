"""The kinds of value an input file's fields hold (Width, Count, Flag, ...), each with its messages, and the
command-line options' parsers.

Every message says what is wrong with the value; costplan/sections.py puts the field's dotted path before it
(`model.n_kv_heads: ...`), so the CLI prints `Error: FILE: FIELD: sentence` for each problem of a file.
"""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from costplan.errors import UNPRINTED, CostplanError, did_you_mean, printable, shown
from costplan.kinds import Choice, Invalid, Kind, real_number, text, whole_number

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


def amount(number: Any) -> str:
    """A number as a limit's message says it: whole numbers with thousands separators, floats and very large
    whole numbers short where that is exact (1e+12, not 1000000000000.0)."""
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return shown(number)
    whole = isinstance(number, int) or math.isfinite(number) and number.is_integer()
    if whole and abs(number) < 10**15:
        return f"{int(number):,}"
    if float(number) != number:         # an int past a float's precision: every digit
        return str(number)
    short = f"{float(number):g}"        # as short as reads back exactly: 1e+40, but 1.0000001 whole
    return short if not math.isfinite(number) or float(short) == number else repr(float(number))


def bounded(name: str, number: Any, *, gt: float | None = None, ge: float | None = None, le: float | None = None,
            least: float | None = None) -> Kind:
    """A number kind (`number` reads the value) within limits: greater than `gt` or at least `ge`, at most `le`,
    and not below `least` (a limit that keeps quotients finite, said as such)."""

    def check(value: Any) -> Any:
        read = number(value)
        if gt is not None and not read > gt:
            raise Invalid(f"must be greater than {gt}, got {shown(value)}")
        if ge is not None and not read >= ge:
            raise Invalid(f"must be at least {ge}, got {shown(value)}")
        if le is not None and not read <= le:
            # a fraction written as a percentage (--mfu 45): say which fraction that is
            hint = f"; a fraction: {read / 100:g} for {read:g}%" if le == 1 and 2 <= read <= 100 else ""
            raise Invalid(f"{amount(value)} is too large (costplan accepts up to {amount(le)}{hint})")
        if least is not None and read < least:
            raise Invalid(f"{shown(read)} is too small (costplan accepts from {least})")
        return read

    return Kind(name, check)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {shown(value)}")
    return value


def _name(value: Any) -> str:
    """Names are printed in tables and headings as they are: no control or format characters (an escape
    sequence would recolour or rewrite the terminal), and one line."""
    bad = [ch for ch in text(value) if unicodedata.category(ch) in UNPRINTED]
    if bad:
        kind = "line separator" if unicodedata.category(bad[0]) in ("Zl", "Zp") else "control character"
        raise Invalid(f"contains the {kind} {shown(bad[0])}; a name is printed as it is")
    if not value.strip():
        raise Invalid("is empty; a name heads the tables it is printed in")
    return value


def whole_or_none(value: Any) -> int | None:
    """The whole number a raw YAML value stands for, or None."""
    try:
        return whole_number(value)
    except Invalid:
        return None


def _count_or_auto(value: Any) -> Any:
    """'auto' or a count in 1..MAX_COUNT, with the same messages as Count."""
    if value == "auto":
        return value
    if isinstance(value, str):
        raise Invalid(f"expected a whole number or auto, got {shown(value)}")
    return Count.check(value, None)


def count_or_none(value: Any) -> int | None:
    """The count a raw YAML value stands for if it is a valid one (1..MAX_COUNT), else None."""
    number = whole_or_none(value)
    return number if number is not None and 0 < number <= MAX_COUNT else None


def width_or_none(value: Any) -> int | None:
    """The size a raw YAML value stands for if it is a valid one (1..MAX_WIDTH), else None: for defaults
    derived from other fields before validation."""
    number = whole_or_none(value)
    return number if number is not None and 0 < number <= MAX_WIDTH else None


Width = bounded("Width", whole_number, gt=0, le=MAX_WIDTH)
Count = bounded("Count", whole_number, gt=0, le=MAX_COUNT)
CountOrAuto = Kind("CountOrAuto", _count_or_auto, words=("auto",))
Tokens = bounded("Tokens", whole_number, gt=0, le=MAX_TOKENS)
Amount = bounded("Amount", whole_number, ge=0, le=MAX_COUNT)   # a count that may be 0
Flag = Kind("Flag", _flag)
Name = Kind("Name", _name)
ZeroStage = Choice((0, 1, 2, 3), before=whole_number)   # `true` is no stage
Fraction = bounded("Fraction", real_number, gt=0, le=1, least=MIN_MFU)
Positive = bounded("Positive", real_number, gt=0, le=1e30, least=MIN_POSITIVE)


# A rate's units as `serve --rate` takes them (50/s, 3000/min, 180000/h): seconds each
RATE_UNITS = {"s": 1, "min": 60, "h": 3600}


def _per_second(value: Any) -> float:
    """A rate as a number of requests per second, or with a unit: `50/s`, `3000/min`, `180000/h`."""
    if isinstance(value, str) and "/" in value:
        number, _, unit = value.strip().rpartition("/")
        try:
            rate = float(number.strip().replace("_", "")) / RATE_UNITS[unit.strip().lower()]
        except (ValueError, KeyError):
            raise Invalid(f"expected requests per second such as 50 or 50/s (or 3000/min, 180000/h), got "
                          f"{shown(value)}") from None
        return real_number(rate)        # nan and inf are refused as a number's are
    return real_number(value)


PerSecond = bounded("PerSecond", _per_second, gt=0, le=1e30, least=MIN_POSITIVE)
NonNegative = bounded("NonNegative", real_number, ge=0, le=1e30)
Price = bounded("Price", real_number, ge=0, le=1e6)
Real = Kind("Real", real_number)


# ---------------------------------------------------------------------------------------------- command options
# No months: a month is no fixed number of days, and `m` could be minutes.
_DURATION_HOURS = {"min": 1 / 60, "mins": 1 / 60, "minute": 1 / 60, "minutes": 1 / 60, "h": 1, "hour": 1,
                   "hours": 1, "d": 24, "day": 24, "days": 24, "w": 168, "week": 168, "weeks": 168, "y": 8760,
                   "yr": 8760, "yrs": 8760, "year": 8760, "years": 8760}
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


def parse_mfu(option: str, text: str) -> float:
    """A utilisation figure given on the command line: from MIN_MFU to 1."""
    value = parse_positive(option, text)
    if not MIN_MFU <= value <= 1:
        raise CostplanError(f"{option}: a utilisation from {MIN_MFU:g} to 1, got {printable(text)}")
    return value


def parse_unit(text: str) -> str:
    text = text.lower() if text.lower() in BUDGET_UNITS else text     # USD, FLOPs: as --law ignores case
    if text not in BUDGET_UNITS:
        raise CostplanError(f"--unit: {shown(text)} is not one of {', '.join(BUDGET_UNITS)}"
                            f"{did_you_mean(text, BUDGET_UNITS)}")
    return text


def parse_duration(option: str, text: str) -> float:
    """`30d`, `12h`, `2w`, `90min`, `1y` (365 days), `1.5 days` → hours."""
    match = re.fullmatch(r"\s*(-?)([0-9][0-9_]*(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]+)\s*", str(text).lower())
    if not match or match.group(3) not in _DURATION_HOURS:
        raise CostplanError(f"{option}: {shown(text)} is not a duration; write a number and a unit, e.g. 30d, 12h, "
                            "2w, 90min or 1y")
    hours = float(match.group(1) + match.group(2).replace("_", "")) * _DURATION_HOURS[match.group(3)]
    if hours <= 0:
        raise CostplanError(f"{option}: must be longer than zero, got {shown(text)}")
    return hours


def parse_count(option: str, text: str, limit: int = MAX_WIDTH) -> int:
    """A whole number from 1 to `limit` given on the command line (MAX_COUNT for what a spec counts: GPUs)."""
    value = parse_positive(option, text)
    if value != int(value):
        raise CostplanError(f"{option}: expected a whole number, got {printable(text)}")
    if value > limit:
        raise CostplanError(f"{option}: {printable(text)} is too large (costplan accepts up to {amount(limit)})")
    return int(value)
