"""The only module that formats numbers for people: units, and one `render(table, fmt)` for every command.

Units: counts with k, M, B, T (thousand to trillion; never bytes), FLOPs in SI (GFLOP, PFLOP, ...), bytes in
binary units (KiB, MiB, GiB: 2^10 steps, never mixed with GB; "bytes" spelled out below 1 KiB), times in the
largest unit they reach, money in US dollars; scientific notation where a prefix runs out or zeros would hide
the magnitude. Commands build a `Table` (costplan/tables/): raw records for JSON and CSV, blocks of formatted
cells for people; `render` turns it into table, markdown, JSON, CSV or JUnit text.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from costplan.records import Record

if TYPE_CHECKING:
    from costplan.scaling import ScalingLaw

# ---------------------------------------------------------------------------------------------- units
# A count's suffixes mean thousand, million, billion, trillion; a lone "B" is never bytes, which are spelled
# out below 1 KiB. Past the last prefix, and for magnitudes a row of zeros would hide, scientific notation.
_COUNT = ["", " k", " M", " B", " T"]
_SI = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"]
_BINARY = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
# (seconds in the unit, its name, whether it takes a plural s), largest first
_DURATIONS = [(365.25 * 86400, "year", True), (86400, "day", True), (3600, "hour", True), (60, "min", False),
              (1, "s", False), (1e-3, "ms", False), (1e-6, "µs", False), (1e-9, "ns", False)]


def _scaled(value: float, step: float, prefixes: Sequence[str]) -> tuple[float, str]:
    """value in the largest prefix it reaches, rounded as number() rounds it: 999,999.99 is 1 M, not 1000 k."""
    index = 0
    while (abs(value) >= step or abs(float(f"{value:.4g}")) >= step) and index < len(prefixes) - 1:
        value /= step
        index += 1
    return value, prefixes[index]


def _scientific(value: float) -> str:
    """1.45e7, 8.036e-9: four significant figures, no exponent sign or padding."""
    mantissa, exponent = f"{value:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def number(value: float) -> str:
    """Four significant figures at most, without trailing noise: 124.4, 6.738, 1.2, 31.5; scientific notation
    from a million up and below 0.0001 (1.45e7, 8.036e-9)."""
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return "∞" if value > 0 else "−∞" if value < 0 else "nan"
    magnitude = int(math.floor(math.log10(abs(value))))
    if magnitude >= 6 or magnitude < -4:
        return _scientific(value)
    text = f"{value:.{max(0, 3 - magnitude)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _prefixed(value: float, step: float, prefixes: Sequence[str], unit: str = "") -> str:
    """value with the largest prefix that keeps it under `step`; past the last prefix, scientific notation."""
    scaled, prefix = _scaled(value, step, prefixes)
    if abs(scaled) >= step:
        return f"{number(value)}{' ' + unit if unit else ''}"
    return f"{number(scaled)}{prefix}{unit}"


_EXACT_UNITS = {"bytes": " bytes", "flop": " FLOP"}    # what an exact difference counts; a count is a number


def exact_difference(value: int, unit: str) -> str:
    """+12, -4,096 bytes, +1 FLOP: a difference between exact integers, signed, every digit kept."""
    return f"{value:+,d}{_EXACT_UNITS.get(unit, '')}"


def plural(text: str, noun: str) -> str:
    """'1 GPU', '8 GPUs', '0.5 days': the noun is singular only after exactly one."""
    return f"{text} {noun}{'' if text == '1' else 's'}"


def recomputed(recompute: str, layers: int | None, where: str = " of each stage") -> str:
    """'full', or 'full of the first 8 layers of each stage' (training.recompute_layers)."""
    return f"{recompute} of the first {plural(str(layers), 'layer')}{where}" if layers else recompute


def count(value: float) -> str:
    """124.4 M, 6.738 B, 2 T, 1e18 (parameters, tokens): k, M, B, T are thousand to trillion."""
    return _prefixed(value, 1000, _COUNT)


def whole(value: int) -> str:
    """An exact whole number with thousands separators: 3,636 sequences, 24 GPUs."""
    return f"{value:,}"


def degrees(tensor: int, pipeline: int, data: int, context: int = 1, expert: int = 1, zero: int = 0,
            expert_tensor: int | None = None, sequence_parallel: bool = False) -> str:
    """A parallel layout: tensor × pipeline × data, with what else splits it (layout_extras; SP for sequence
    parallelism): "2 × 1 × 1024", "8 × 1 × 8 expert 8", "4 × 1 × 16 expert 8 ZeRO 2 SP"."""
    return " ".join([f"{tensor} × {pipeline} × {data}",
                     *layout_extras(tensor, data, zero, context, expert, expert_tensor, sequence_parallel, "SP")])


def parallel_layout(par: Any) -> str:
    """An estimate's layout (its `parallelism` record) as degrees() writes it, the ZeRO stage included: sweep's
    layout column, compare's row."""
    return degrees(par.tensor, par.pipeline, par.data, par.context, par.expert, par.zero, par.expert_tensor,
                   par.sequence_parallel)


def layout_words(gpus: int, tensor: int, pipeline: int, data: int, context: int = 1, expert: int = 1) -> str:
    """Where a run's per-GPU figures hold: "one GPU", or its degrees."""
    return "one GPU" if gpus == 1 else degrees(tensor, pipeline, data, context, expert)


def flop(value: float) -> str:
    """15.36 GFLOP, 92.17 ZFLOP, 4.445e29 FLOP."""
    return _prefixed(value, 1000, [f" {p}" for p in _SI], "FLOP")


def flops_rate(value: float) -> str:
    """312 TFLOP/s."""
    return flop(value) + "/s"


def size(value: float) -> str:
    """31.5 GiB, 512 bytes, 1 byte (binary units; bytes spelled out)."""
    scaled, unit = _scaled(value, 1024, _BINARY)
    if unit == "bytes" or abs(scaled) >= 1024:
        text = number(value)
        return "1 byte" if text == "1" else f"{text} bytes"
    return f"{number(scaled)} {unit}"


def duration(seconds: float) -> str:
    """3.71 days, 4.2 hours, 12 min, 3.2 s, 41 µs, 1 day: the largest unit the time reaches."""
    if seconds == 0:
        return "0 s"
    for step, name, plurals in _DURATIONS:
        if abs(seconds) >= step or step == _DURATIONS[-1][0]:
            text = number(seconds / step)
            return plural(text, name) if plurals else f"{text} {name}"
    raise AssertionError("unreachable")


def seconds(value: float) -> str:
    """12.3 ms, 1.234 s, 2.5 min (step times; alias of duration)."""
    return duration(value)


def days(value: float) -> str:
    """Wall clock given in days: 3.71 days, 4.207 hours, 41 µs."""
    return duration(value * 86400)


def gpu_hours(value: float) -> str:
    """182.4 k GPU-hours, 1 GPU-hour; under one, the GPU time as a duration: 25 min of GPU time."""
    if 0 < abs(value) < 1:
        return f"{duration(value * 3600)} of GPU time"
    return plural(count(value), "GPU-hour")


def usd(value: float) -> str:
    """$1.84 k, $237.1 k, $2.35 M, $5.47, < $0.01, $0."""
    if value == 0:
        return "$0"
    if 0 < value < 0.01:
        return "< $0.01"
    if abs(value) < 1000:
        return f"${value:,.2f}"
    return "$" + count(value)


def price(value: float) -> str:
    """1.30, 0.0001 (dollars per GPU-hour, under a header that names the unit): cents, or what a price below
    a cent needs to be read at all."""
    return f"{value:.2f}" if value == 0 or abs(value) >= 0.01 else number(value)


def percent(value: float) -> str:
    """45.0%; 0.0039% below a twentieth of a percent, where one decimal would print 0.0%."""
    if value != 0 and abs(100 * value) < 0.05:
        return f"{100 * value:.2g}%"
    return f"{100 * value:.1f}%"


def usable_size(usable: int, stated: int) -> str:
    """The memory a step must fit in, as size() prints it, but to two decimals in the stated memory's unit where
    size() would print it as the stated memory (an MI300X's 191.98 GiB of 192)."""
    shown = size(usable)
    if usable == stated or shown != size(stated):
        return shown
    scaled, unit = _scaled(stated, 1024, _BINARY)
    return f"{usable * scaled / stated:.2f} {unit}"


def capacity(usable: int, stated: int) -> str:
    """'79.14 GiB usable of 80 GiB', or '80 GiB' where all of a GPU's memory is usable (no usable figure)."""
    return size(stated) if usable == stated else f"{usable_size(usable, stated)} usable of {size(stated)}"


def ratio(value: float) -> str:
    return f"{number(value)}×"


def zero_stage(stage: int, data: int) -> str:
    """'ZeRO 2', or nothing when there is nothing to shard: stage 0, or a data-parallel group of one."""
    return f"ZeRO {stage}" if stage and data > 1 else ""


def layout_extras(tensor: int, data: int, zero: int, context: int = 1, expert: int = 1,
                  expert_tensor: int | None = None, sequence_parallel: bool = False,
                  sequence_word: str = "sequence parallel") -> list[str]:
    """What splits a layout besides its tensor × pipeline × data grid, as every table names it: context and
    expert degrees above one, an expert tensor degree other than the tensor degree (its default), the ZeRO
    stage, sequence parallelism where it splits anything (on one tensor rank it is a no-op, and Megatron switches
    it off there), as `sequence_word`."""
    named = [f"context {context}" if context > 1 else "", f"expert {expert}" if expert > 1 else "",
             f"expert tensor {expert_tensor}" if expert_tensor is not None and expert_tensor != tensor else "",
             zero_stage(zero, data), sequence_word if sequence_parallel and tensor > 1 else ""]
    return [n for n in named if n]


def flop_power(value: float) -> str:
    """$10^{21}$ FLOPs, $3\\times10^{21}$ FLOPs: for a figure, in matplotlib's math text, read like its log axes."""
    exponent = math.floor(math.log10(value))
    mantissa = number(value / 10 ** exponent)
    prefix = "" if mantissa == "1" else mantissa + r"\times"
    return f"${prefix}10^{{{exponent}}}$ FLOPs"


FORMATTERS = {
    "count": count, "flop": flop, "flop/s": flops_rate, "bytes": size, "usd": usd, "percent": percent,
    "ratio": ratio, "hours": gpu_hours, "days": days, "text": str, "number": number, "seconds": seconds,
    "whole": whole, "dollars": number, "tokens/s": count,
}
# What a raw number (JSON, CSV) is in, by the unit it is formatted as; none for plain numbers and names.
# "dollars" are USD shown to four figures (a price per million tokens), not rounded to cents as "usd" is.
UNIT_WORDS = {"bytes": "bytes", "flop": "FLOPs", "hours": "GPU-hours", "usd": "USD", "seconds": "seconds",
              "days": "days", "count": "count", "whole": "count", "percent": "fraction", "dollars": "USD",
              "tokens/s": "tokens/s"}


def human(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return FORMATTERS[unit](value)


# ---------------------------------------------------------------------------------------------- tables
class Row(Record):
    """One line of a sectioned report: raw value plus what it measures; `share` is a fraction of its section's
    total."""

    section: str
    item: str
    value: Any
    unit: str = "count"
    share: float | None = None
    note: str = ""


class Block(Record):
    """One printed table: a title line, headers, cells (already formatted), and text after it."""

    headers: Sequence[str]
    body: Sequence[Sequence[Any]]
    title: str = ""
    align: Sequence[str] | None = None        # per column; None lets tabulate choose
    footer: str = ""


class LazyRows(Sequence):
    """A block's rows, formatted when first read: a sweep printed as JSON or CSV never formats its 10,000 rows
    for people."""

    def __init__(self, make: Callable[[], list[list[Any]]]):
        self._make, self._rows = make, None

    def _made(self) -> list[list[Any]]:
        if self._rows is None:
            self._rows = self._make()
        return self._rows

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - as list's
        return self._made()[index]

    def __len__(self) -> int:
        return len(self._made())


class Case(Record):
    """One JUnit test case: status ok | FAIL | skip | ERROR (nothing could be measured); `message` the failure or
    error in a line, `detail` its body (or the reason for a skip)."""

    name: str
    status: str
    message: str = ""
    detail: str = ""


class Suite(Record):
    name: str
    cases: Sequence[Case]


class Table(Record):
    """What a command prints: blocks for people; `records` for JSON as they are and, flattened, for CSV
    (unless `flat` gives the CSV rows; `columns` lead the CSV header, which they make even without rows);
    `suites` for JUnit."""

    blocks: Sequence[Block]
    records: Any
    flat: Sequence[Mapping[str, Any]] | None = None
    columns: Sequence[str] = ()
    suites: Sequence[Suite] = ()


def sectioned(rows: Iterable[Row], title: str = "") -> Block:
    """Rows as a block: section (once), item, value, share, note."""
    body, last = [], None
    for row in rows:
        section = row.section if row.section != last else ""
        last = row.section
        share = percent(row.share) if row.share is not None else ""
        body.append([section, row.item, human(row.value, row.unit), share, row.note])
    return Block(["", "", "value", "share", "note"], body, title, ("left", "left", "right", "right", "left"))


def render(table: Table, fmt: str) -> str:
    """The table as `fmt`: table (aligned text), markdown, json, csv or junit."""
    if fmt == "json":
        return to_json(table.records)
    if fmt == "csv":
        if table.flat is not None:
            return csv_text(table.flat, table.columns)
        records = [table.records] if isinstance(table.records, Mapping) else table.records
        return csv_text([flatten(r, whole=table.columns) for r in records], table.columns)
    if fmt == "junit":
        return junit(table.suites)
    return "\n\n".join(block_text(b, fmt) for b in table.blocks)


def block_text(block: Block, fmt: str = "table") -> str:
    text = aligned_text(block) if fmt == "table" else None
    if text is None:
        from tabulate import tabulate  # imported on use: keeps `costplan --help` fast

        body, headers = list(block.body), list(block.headers)
        if fmt == "markdown":   # a | in a cell (a spec's name) would end it: escaped, as GitHub's tables read
            body = [[str(cell).replace("|", "\\|") for cell in row] for row in body]
            headers = [str(cell).replace("|", "\\|") for cell in headers]
        text = tabulate(body, headers=headers, disable_numparse=True, colalign=block.align,
                        tablefmt="github" if fmt == "markdown" else "simple")
    if block.title:
        text = (f"### {block.title}\n\n" if fmt == "markdown" else f"{block.title}\n") + text
    return text + (f"\n\n{block.footer}" if block.footer else "")


# A gap of two spaces between columns, a column two wider than its header at least, cells stripped and no space
# at the end of a line: tabulate's "simple" layout.
_GAP = "  "
_HEADER_PADDING = 2


def aligned_text(block: Block) -> str | None:
    """The block as tabulate's "simple" layout prints it (cells as text, columns left- or right-aligned), in
    one pass: tabulate infers a type for each cell, which took 1.3 s of a 10,000-row sweep. None where a cell
    needs tabulate's own handling (several lines, a terminal escape, a character wider or narrower than one
    column), or no rows at all."""
    rows = [["" if cell is None else str(cell) for cell in row] for row in block.body]
    headers = [str(h) for h in block.headers]
    if any(not (cell.isascii() and cell.isprintable() or _one_column_each(cell)) for row in [headers, *rows]
           for cell in row):
        return None
    rows = [[cell.strip() for cell in row] for row in rows]
    align = list(block.align) if block.align else ["left"] * len(headers)
    if not rows or set(align) - {"left", "right"} or any(len(row) != len(headers) for row in rows):
        return None
    widths = [max([len(h) + _HEADER_PADDING, *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    pads = [str.ljust if a == "left" else str.rjust for a in align]

    def line(cells: Sequence[str]) -> str:
        return _GAP.join(pad(cell, width) for pad, cell, width in zip(pads, cells, widths)).rstrip()

    return "\n".join([line(headers), _GAP.join("-" * w for w in widths), *map(line, rows)])


@functools.cache
def _one_column(char: str) -> bool:
    """A character every measure of width counts as one column (tabulate's len(), or wcwidth where installed):
    printable, not combining, not East Asian wide (a layout's ×, a missing value's —, µs)."""
    import unicodedata   # here: only a table with a character past ASCII reads it

    return (char.isprintable() and not unicodedata.category(char).startswith("M")
            and unicodedata.east_asian_width(char) not in ("W", "F")
            and not "\u1160" <= char <= "\u11ff")   # Hangul vowel and final jamo: they join the syllable before


def _one_column_each(text: str) -> bool:
    return all(map(_one_column, text))


def to_json(objects: Any) -> str:
    """JSON with exact integers (Python ints are unbounded; nothing is rounded)."""
    import json   # here, not at the top: a table needs neither json nor csv, and each costs a start

    return json.dumps(objects, indent=2, default=str)


def flatten(obj: Mapping[str, Any], prefix: str = "", whole: Sequence[str] = ()) -> dict[str, Any]:
    """{'a': {'b': 1}} → {'a.b': 1}, for CSV columns; a column named in `whole` keeps its mapping in one cell (a
    sweep's varied section, `model.moe`, is one value of its axis)."""
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and name not in whole:
            flat.update(flatten(value, name + ".", whole))
        else:
            flat[name] = value
    return flat


def csv_text(records: Sequence[Mapping[str, Any]], columns: Sequence[str] = ()) -> str:
    """One CSV row per record; the columns are `columns`, then the records' other keys in first-seen order."""
    import csv
    import io

    names = list(columns)
    for record in records:
        names += [k for k in record if k not in names]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _csv_cell(v) for k, v in record.items()} for record in records)
    return out.getvalue().rstrip("\n")


def _csv_cell(value: Any) -> Any:
    """A value as JSON spells it (true, ["a", "b"]), not as Python prints it (True, ['a', 'b'])."""
    import json

    if isinstance(value, (bool, list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def junit(suites: Sequence[Suite]) -> str:
    """JUnit XML: a test suite per spec, a test case per check; failures carry the numbers."""
    from xml.sax.saxutils import quoteattr

    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>"]
    for suite in suites:
        failures = sum(c.status == "FAIL" for c in suite.cases)
        errors = sum(c.status == "ERROR" for c in suite.cases)
        skipped = sum(c.status == "skip" for c in suite.cases)
        lines.append(f"  <testsuite name={quoteattr(suite.name)} tests=\"{len(suite.cases)}\" "
                     f"failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">")
        for c in suite.cases:
            lines.append(f"    <testcase classname={quoteattr('costplan.' + suite.name)} name={quoteattr(c.name)}>")
            if c.status in ("FAIL", "ERROR"):
                tag = "failure" if c.status == "FAIL" else "error"
                lines.append(f"      <{tag} message={quoteattr(c.message)}>{quoteattr(c.detail)[1:-1]}</{tag}>")
            elif c.status == "skip":
                lines.append(f"      <skipped message={quoteattr(c.detail)}/>")
            lines.append("    </testcase>")
        lines.append("  </testsuite>")
    lines.append("</testsuites>")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- other text
def law_formula(law: ScalingLaw) -> str:
    """L = E + A/N^α + B/D^β with the law's constants as written."""
    return f"L = {law.E:g} + {law.A:g}/N^{law.alpha:g} + {law.B:g}/D^{law.beta:g}"


def hardware_yaml(entry: Mapping[str, Any], header: str) -> str:
    """A hardware file: floats to 4 significant figures (measurements are not more precise than that)."""
    import yaml

    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return float(f"{value:.4g}")
        if isinstance(value, Mapping):
            return {k: rounded(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):            # kernel curves' points
            return [rounded(v) for v in value]
        return value

    body = yaml.safe_dump(rounded(dict(entry)), sort_keys=False, allow_unicode=True, width=110)
    return "".join(f"# {line}\n" for line in header.splitlines()) + body
