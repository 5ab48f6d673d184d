"""The only module that formats numbers for people: human units, tables, JSON, CSV and markdown.

Commands build `Row`s of raw numbers once; `render(rows, fmt)` turns them into text. Units: counts in SI steps
(k, M, B, T), FLOPs in SI (GFLOP, PFLOP, ...), bytes in binary units (KiB, MiB, GiB: 2^10 steps, never mixed
with GB), money in US dollars.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from typing import TYPE_CHECKING

from costplan.costs.result import Estimate

if TYPE_CHECKING:
    from costplan.planner import Option, Proposal
    from costplan.scaling import ScalingLaw
    from costplan.sweep import Point

# ---------------------------------------------------------------------------------------------- units
_COUNT = ["", " k", " M", " B", " T", " Q"]
_SI = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"]
_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]


def _scaled(value: float, step: float, prefixes: Sequence[str]) -> tuple[float, str]:
    index = 0
    while abs(value) >= step and index < len(prefixes) - 1:
        value /= step
        index += 1
    return value, prefixes[index]


def _digits(value: float) -> str:
    """Four significant figures at most, without trailing noise: 124.4, 6.738, 1.2, 31.5."""
    if value == 0:
        return "0"
    decimals = max(0, 3 - int(math.floor(math.log10(abs(value)))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def count(value: float) -> str:
    """124.4 M, 6.738 B, 2 T (parameters, tokens)."""
    scaled, suffix = _scaled(value, 1000, _COUNT)
    return _digits(scaled) + suffix


def flop(value: float) -> str:
    """15.36 GFLOP, 92.17 ZFLOP."""
    scaled, prefix = _scaled(value, 1000, _SI)
    return f"{_digits(scaled)} {prefix}FLOP"


def flops_rate(value: float) -> str:
    """312 TFLOP/s."""
    return flop(value) + "/s"


def size(value: float) -> str:
    """31.5 GiB (binary units)."""
    scaled, unit = _scaled(value, 1024, _BINARY)
    return f"{_digits(scaled)} {unit}"


def usd(value: float) -> str:
    """$1.84 k, $237.1 k, $2.35 M."""
    if abs(value) < 1000:
        return f"${value:,.2f}"
    return "$" + count(value)


def price(value: float) -> str:
    """1.30 (dollars per GPU-hour, under a header that names the unit)."""
    return f"{value:.2f}"


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def ratio(value: float) -> str:
    return f"{_digits(value)}×"


FORMATTERS = {
    "count": count, "flop": flop, "flop/s": flops_rate, "bytes": size, "usd": usd, "percent": percent,
    "ratio": ratio, "hours": lambda v: count(v) + " GPU-hours", "days": lambda v: f"{_digits(v)} days",
    "text": str, "number": _digits, "seconds": lambda v: f"{_digits(v)} s",
}


def human(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return FORMATTERS[unit](value)


# ---------------------------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class Row:
    """One line of a report: raw value plus what it measures; `share` is a fraction of its section's total."""

    section: str
    item: str
    value: Any
    unit: str = "count"
    share: float | None = None
    note: str = ""


def estimate_rows(est: Estimate) -> list[Row]:
    """The rows of `costplan estimate` for one spec: breakdowns with each part's share of the total."""
    p, f, m, t, a = est.params, est.flops, est.memory, est.time, est.assumptions
    rows = [Row("parameters", "total", p.total)]
    rows += [Row("parameters", f"  {key}", v, share=v / p.total) for key, v in p.by_component.items()]
    if p.active != p.total:
        rows.append(Row("parameters", "active per token", p.active, share=p.active / p.total,
                        note=f"{count(p.active_non_embedding)} without the input embedding"))
    rows.append(Row("FLOPs", "forward per token", f.forward_per_token, "flop"))
    rows += [Row("FLOPs", f"  {key}", v, "flop", share=v / f.forward_per_token)
             for key, v in f.by_component.items() if v]
    rows += [
        Row("FLOPs", "training per token (3 × forward)", f.training_per_token, "flop"),
        Row("FLOPs", "hardware per token", f.hardware_per_token, "flop",
            note="with recomputation and causal tile skipping"),
        Row("FLOPs", "training total", f.training_total, "flop",
            note=f"{count(a['tokens'])} tokens, {_digits(a['tokens_per_param'])} per parameter"),
    ]
    rows += [Row("memory", name, value, "bytes", share=value / m.total_per_gpu) for name, value in (
        ("weights", m.weights), ("gradients", m.gradients), ("optimizer states", m.optimizer),
        (f"activations (micro-batch {a['micro_batch_size']})", m.activations),
        ("loss gradients (transient)", m.workspace))]
    rows += [
        Row("memory", "total per GPU", m.total_per_gpu, "bytes",
            note=f"{'fits' if m.fits else 'does not fit'} in {size(m.gpu_memory)}"),
        Row("memory", "KV cache per token (inference)", m.kv_cache_per_token, "bytes"),
        Row("memory", f"KV cache at seq_len {a['seq_len']}", m.kv_cache_at_seq_len, "bytes",
            note="one sequence; windows and recurrent states cap it"),
        Row("time", "GPU-hours", t.gpu_hours, "hours",
            note=f"{a['gpu']} at {flops_rate(a['peak_flops_per_gpu'])} {a['precision']}, MFU {percent(a['mfu'])}"),
        Row("time", "wall clock", t.wall_clock_days, "days", note=f"on {a['gpu_count']} GPUs"),
        Row("time", "cost", t.cost_usd, "usd", note=f"at ${a['usd_per_gpu_hour']:.2f} per GPU-hour"),
    ]
    if est.parallelism is not None:
        rows += parallel_rows(est)
    return rows + scaling_rows(est)


def parallel_rows(est: Estimate) -> list[Row]:
    """How one step is split: the layout, traffic per GPU by kind, the bubble and the step time."""
    par = est.parallelism
    extras = [f"expert {par.expert}" if par.expert > 1 else "", f"ZeRO {par.zero}",
              "sequence parallel" if par.sequence_parallel else "", f"{par.micro_batches} micro-batches per step"]
    layout = f"{par.tensor} × {par.pipeline} × {par.data}"
    rows = [Row("parallelism", "tensor × pipeline × data", layout, "text",
                note=", ".join(e for e in extras if e)),
            Row("parallelism", "memory reported for", f"stage {par.memory_stage + 1} of {par.pipeline}", "text",
                note="the fullest pipeline stage")]
    for kind, volume in par.communication_bytes.items():
        if volume:
            rate = par.bandwidth_bytes_per_s[kind] / 1e9
            rows.append(Row("parallelism", f"{kind}-parallel traffic per step", volume, "bytes",
                            note=f"{_digits(par.communication_seconds[kind])} s at {_digits(rate)} GB/s "
                                 "per direction"))
    step = par.step_seconds
    rows += [
        Row("parallelism", "pipeline bubble", par.bubble_fraction, "percent", note="of the step: (p − 1)/m "
            "of the compute"),
        Row("parallelism", "step time", step["total"], "seconds",
            note=f"compute {_digits(step['compute'])} s + bubble {_digits(step['bubble'])} s + exposed "
                 f"communication {_digits(step['exposed_communication'])} s"),
    ]
    return rows


# (label, unit, value of an Estimate) for the rows of `costplan compare`
COMPARED = [
    ("parameters, total", "count", lambda e: e.params.total),
    ("parameters, active", "count", lambda e: e.params.active),
    ("forward FLOPs per token", "flop", lambda e: e.flops.forward_per_token),
    ("attention FLOPs per token", "flop", lambda e: e.flops.by_component["attention"]),
    ("training FLOPs per token", "flop", lambda e: e.flops.training_per_token),
    ("hardware FLOPs per token", "flop", lambda e: e.flops.hardware_per_token),
    ("training FLOPs, total", "flop", lambda e: e.flops.training_total),
    ("weights", "bytes", lambda e: e.memory.weights),
    ("gradients", "bytes", lambda e: e.memory.gradients),
    ("optimizer states", "bytes", lambda e: e.memory.optimizer),
    ("activations (micro-batch)", "bytes", lambda e: e.memory.activations),
    ("memory per GPU", "bytes", lambda e: e.memory.total_per_gpu),
    ("KV cache per token", "bytes", lambda e: e.memory.kv_cache_per_token),
    ("KV cache at seq_len", "bytes", lambda e: e.memory.kv_cache_at_seq_len),
    ("GPU-hours", "hours", lambda e: e.time.gpu_hours),
    ("cost", "usd", lambda e: e.time.cost_usd),
    ("predicted loss (scaling law)", "number", lambda e: e.scaling.loss),
]


def compare_table(estimates: Sequence[Estimate], baseline: int, fmt: str) -> str:
    """Specs as columns, metrics as rows, each value with its ratio to the baseline column."""
    names = [e.name for e in estimates]
    if fmt == "csv":
        return csv_text([{"metric": label, **{n: get(e) for n, e in zip(names, estimates)}}
                         for label, _, get in COMPARED])
    body = []
    for label, unit, get in COMPARED:
        base = get(estimates[baseline])
        cells = []
        for index, e in enumerate(estimates):
            value = human(get(e), unit)
            if index != baseline:
                value += f" ({ratio(get(e) / base)})" if base else " (—)"
            cells.append(value)
        body.append([label, *cells])
    headers = ["", *(f"{n} (baseline)" if i == baseline else n for i, n in enumerate(names))]
    return grid(headers, body, fmt, align_right=True)


def seq_len_table(estimates: Sequence[Estimate], fmt: str) -> str:
    """How one spec's costs grow with context: one row per seq_len, growth against the first row."""
    first = estimates[0]
    headers = ["seq_len", "forward FLOPs/token", "growth", "attention FLOPs/token", "activations", "growth",
               "KV cache at seq_len", "parameters"]
    body = []
    for e in estimates:
        f, m = e.flops, e.memory
        body.append([str(e.assumptions["seq_len"]), flop(f.forward_per_token),
                     ratio(f.forward_per_token / first.flops.forward_per_token),
                     flop(f.by_component["attention"]), size(m.activations),
                     ratio(m.activations / first.memory.activations), size(m.kv_cache_at_seq_len),
                     count(e.params.total)])
    return grid(headers, body, fmt, align_right=True)


def scaling_rows(est: Estimate) -> list[Row]:
    """The scaling law's predicted loss and the tokens per parameter against the compute-optimal ratio."""
    s = est.scaling
    n = "active parameters (mixture of experts)" if s.params_convention == "active" else "parameters"
    return [
        Row("scaling", "predicted loss", s.loss, "number", note=f"{s.law} law, nats per token"),
        Row("scaling", f"tokens per {'active ' if s.params_convention == 'active' else ''}parameter",
            s.tokens_per_param, "number",
            note=f"compute-optimal for these {n}: {_digits(s.optimal_tokens / s.params)}"),
    ]


def estimate_title(est: Estimate) -> str:
    a = est.assumptions
    return (f"{est.name}: {count(est.params.total)} parameters, {count(a['tokens'])} tokens, "
            f"{a['gpu_count']} × {a['gpu_name']} ({a['precision']}, {a['optimizer']}, recompute {a['recompute']})")


def law_formula(law: ScalingLaw) -> str:
    """L = E + A/N^α + B/D^β with the law's constants as written."""
    return f"L = {law.E:g} + {law.A:g}/N^{law.alpha:g} + {law.B:g}/D^{law.beta:g}"


def proposal_rows(plan: Proposal) -> list[Row]:
    """`costplan plan --budget`: the law's optimum, then the concrete architecture and its real cost."""
    o, m = plan.optimum, plan.spec["model"]
    hw = plan.spec["hardware"]
    return [
        Row("optimum", "parameters", o.params, note=f"{plan.law} law, closed form under C = 6·N·D"),
        Row("optimum", "tokens", o.tokens, note=f"{_digits(o.tokens_per_param)} per parameter"),
        Row("optimum", "predicted loss", o.loss, "number", note="nats per token"),
        Row("proposal", "architecture", f"{m['n_layers']} layers × d_model {m['d_model']}", "text",
            note=f"{m['n_heads']} heads of {m['head_dim']}, d_ff {m['d_ff']}, SwiGLU, vocabulary "
                 f"{m['vocab_size']}, context {m['max_seq_len']}"),
        Row("proposal", "parameters", plan.params, note=f"{percent(plan.params / o.params - 1)} from the optimum"),
        Row("proposal", "tokens", plan.tokens, note=f"{_digits(plan.tokens / plan.params)} per parameter; what "
            "the budget buys at the real FLOPs per token"),
        Row("proposal", "training FLOPs", plan.flops, "flop", note="attention included (6·N·D leaves it out)"),
        Row("proposal", "predicted loss", plan.loss, "number", note="nats per token"),
        Row("proposal", "GPU-hours", plan.gpu_hours, "hours", note=f"{hw['gpu']} at its catalogue MFU"),
        Row("proposal", "wall clock", plan.wall_clock_days, "days",
            note=f"on {hw['count']} GPU{'' if hw['count'] == 1 else 's'}"),
        Row("proposal", "cost", plan.cost_usd, "usd", note="at the catalogue price"),
    ]


def proposal_title(plan: Proposal) -> str:
    b = plan.budget
    amount = {"flops": flop(b["amount"]), "gpu-hours": count(b["amount"]) + " GPU-hours",
              "usd": usd(b["amount"])}[b["unit"]]
    extra = "" if b["unit"] == "flops" else f" = {flop(b['flops'])} on {b['gpu']}"
    return f"Budget {amount}{extra}"


DEADLINE_HEADERS = ["GPU", "GPUs", "tensor × pipeline × data", "memory per GPU", "wall clock", "GPU-hours",
                    "cost", "note"]


def deadline_grid(options: Sequence[Option], fmt: str) -> str:
    """`costplan plan SPEC --deadline`: one row per GPU type, cheapest first."""
    body = []
    for o in options:
        if o.gpus is None:
            body.append([o.gpu, "—", "—", "—", "—", "—", "—", o.note])
            continue
        lay = o.layout
        extras = [f"ZeRO {lay['zero']}", f"expert {lay['expert']}" if lay["expert"] > 1 else "",
                  "SP" if lay["sequence_parallel"] else ""]
        body.append([o.gpu, str(o.gpus), f"{lay['tensor']} × {lay['pipeline']} × {lay['data']}, "
                     + ", ".join(e for e in extras if e),
                     f"{size(o.memory_per_gpu)} of {size(o.gpu_memory)}", human(o.wall_clock_days, "days"),
                     count(o.gpu_hours), usd(o.cost_usd), o.note])
    return grid(DEADLINE_HEADERS, body, fmt)


SWEEP_UNITS = {"params": "count", "active_params": "count", "training_flops": "flop", "memory_per_gpu": "bytes",
               "fits": "text", "gpu_hours": "hours", "wall_clock_days": "days", "cost_usd": "usd",
               "loss": "number"}


def sweep_output(points: Sequence[Point], keys: Sequence[str], fmt: str) -> str:
    """`costplan sweep`: one row per point, the varied keys first; raw numbers in JSON and CSV."""
    records = [{**p.varied, **p.values} for p in points]
    if fmt == "json":
        return to_json(records)
    if fmt == "csv":
        return csv_text(records) if records else ",".join([*keys, *SWEEP_UNITS])
    headers = [*keys, *SWEEP_UNITS]
    body = [[str(p.varied[k]) for k in keys]
            + [human(v, SWEEP_UNITS[name]) if name != "fits" else ("yes" if v else "no")
               for name, v in p.values.items()] for p in points]
    return grid(headers, body, fmt)


def warnings(est: Estimate) -> list[str]:
    """What a user should notice on stderr."""
    out = []
    a, m = est.assumptions, est.memory
    if a["tokens_source"] != "training.tokens":
        out.append(f"{est.name}: no training.tokens; assuming {a['tokens_source'].split(';')[0]}")
    if not m.fits:
        out.append(f"{est.name}: {size(m.total_per_gpu)} per GPU does not fit in {a['gpu']}'s "
                   f"{size(m.gpu_memory)} without sharding or recomputation")
    return out


# ---------------------------------------------------------------------------------------------- rendering
def table(rows: Iterable[Row], fmt: str = "table", title: str = "") -> str:
    """Rows as an aligned text table (fmt 'table') or a GitHub markdown table (fmt 'markdown')."""
    from tabulate import tabulate  # imported on use: keeps `costplan --help` fast

    body, last = [], None
    for row in rows:
        section = row.section if row.section != last else ""
        last = row.section
        share = percent(row.share) if row.share is not None else ""
        body.append([section, row.item, human(row.value, row.unit), share, row.note])
    headers = ["", "", "value", "share", "note"]
    style = "github" if fmt == "markdown" else "simple"
    text = tabulate(body, headers=headers, tablefmt=style, colalign=("left", "left", "right", "right", "left"),
                    disable_numparse=True)
    if title:
        text = (f"### {title}\n\n" if fmt == "markdown" else f"{title}\n") + text
    return text


def grid(headers: Sequence[str], body: Sequence[Sequence[Any]], fmt: str = "table",
         align_right: bool = False) -> str:
    """A plain table of already-formatted cells (listings, comparisons); `align_right` right-aligns every
    column after the first."""
    if fmt == "csv":
        return csv_text([dict(zip(headers, r)) for r in body])
    from tabulate import tabulate

    align = ("left", *["right"] * (len(headers) - 1)) if align_right else None
    return tabulate(body, headers=list(headers), tablefmt="github" if fmt == "markdown" else "simple",
                    disable_numparse=True, colalign=align)


def to_json(objects: Any) -> str:
    """JSON with exact integers (Python ints are unbounded; nothing is rounded)."""
    return json.dumps(objects, indent=2, default=str)


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} → {'a.b': 1}, for CSV columns."""
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def csv_text(records: Sequence[Mapping[str, Any]]) -> str:
    """One CSV row per record; the columns are the union of the records' keys, in first-seen order."""
    columns: list[str] = []
    for record in records:
        columns += [k for k in record if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue().rstrip("\n")


def render_estimates(estimates: Sequence[Estimate], fmt: str) -> str:
    """`costplan estimate` output in any format."""
    if fmt == "json":
        return to_json([e.model_dump() for e in estimates])
    if fmt == "csv":
        return csv_text([flatten(e.model_dump()) for e in estimates])
    return "\n\n".join(table(estimate_rows(e), fmt, estimate_title(e)) for e in estimates)


# ---------------------------------------------------------------------------------------------- profile / check
# Rows of `costplan profile` and `costplan check` are profiling.compare.Check objects (duck-typed here, so this
# module never imports torch): metric, item, component, estimate, measured, unit, tolerance, status, note.

def seconds(value: float) -> str:
    """12.3 ms, 1.234 s."""
    if abs(value) < 1:
        return f"{_digits(value * 1000)} ms"
    return f"{_digits(value)} s"


FORMATTERS["seconds"] = seconds


def check_error(check: Any) -> str:
    """Exact metrics show the signed difference (FLOP counts are exact integers); others a percentage."""
    error = check.relative_error
    if error is None or check.status == "skip":
        return "—"
    if check.measured == check.estimate:
        return "0"
    if check.tolerance == 0 and isinstance(check.estimate, int) and isinstance(check.measured, int):
        return "0" if check.measured == check.estimate else f"{check.measured - check.estimate:+d}"
    if math.isinf(error):
        return "∞"
    return f"{100 * error:+.2f}%"


def check_tolerance(check: Any) -> str:
    if check.tolerance is None:
        return "—"
    return "exact" if check.tolerance == 0 else f"{_digits(100 * check.tolerance)}%"


def check_table(checks: Sequence[Any], fmt: str = "table", title: str = "") -> str:
    """Estimate and measurement side by side, one line per check."""
    from tabulate import tabulate

    body = [[c.name if not c.component else f"· {c.component}", human(c.estimate, c.unit),
             human(c.measured, c.unit), check_error(c), check_tolerance(c), c.status, c.note] for c in checks]
    text = tabulate(body, headers=["", "estimate", "measured", "error", "tolerance", "status", "note"],
                    tablefmt="github" if fmt == "markdown" else "simple", disable_numparse=True,
                    colalign=("left", "right", "right", "right", "right", "left", "left"))
    if title:
        text = (f"### {title}\n\n" if fmt == "markdown" else f"{title}\n") + text
    return text


def check_record(check: Any) -> dict[str, Any]:
    """One check as JSON: raw numbers (exact integers stay integers)."""
    error = check.relative_error
    return {"metric": check.metric, "item": check.item, "component": check.component or None,
            "estimate": check.estimate, "measured": check.measured, "unit": check.unit,
            "relative_error": None if error is None or math.isinf(error) else error,
            "tolerance": check.tolerance, "status": check.status, "note": check.note}


def junit(results: Sequence[Mapping[str, Any]]) -> str:
    """JUnit XML: a test suite per spec, a test case per check; failures carry the numbers."""
    from xml.sax.saxutils import quoteattr

    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>"]
    for result in results:
        checks = result["checks"]
        failures = sum(c.status == "FAIL" for c in checks)
        skipped = sum(c.status == "skip" for c in checks)
        lines.append(f"  <testsuite name={quoteattr(result['name'])} tests=\"{len(checks)}\" "
                     f"failures=\"{failures}\" skipped=\"{skipped}\">")
        for c in checks:
            lines.append(f"    <testcase classname={quoteattr('costplan.' + result['name'])} "
                         f"name={quoteattr(c.name)}>")
            message = (f"estimate {c.estimate}, measured {c.measured}, error {check_error(c)}, "
                       f"tolerance {check_tolerance(c)}")
            if c.status == "FAIL":
                lines.append(f"      <failure message={quoteattr(message)}>{quoteattr(c.note)[1:-1]}</failure>")
            elif c.status == "skip":
                lines.append(f"      <skipped message={quoteattr(c.note or 'not measured')}/>")
            lines.append("    </testcase>")
        lines.append("  </testsuite>")
    lines.append("</testsuites>")
    return "\n".join(lines)


def _op_list(ops: Mapping[str, int]) -> str:
    return ", ".join(f"{name} ×{n}" for name, n in ops.items()) or "none"


def check_title(result: Mapping[str, Any]) -> str:
    r = result
    if r.get("title"):          # a record that describes itself (profile --serve)
        return r["title"]
    return (f"{r['name']}: estimate vs {r['device']} ({r['device_name']}), batch {r['batch']} × {r['seq_len']} "
            f"tokens, {r['precision']}, recompute {r['recompute']}")


def render_checks(results: Sequence[Mapping[str, Any]], fmt: str, detail: bool = False) -> str:
    """`costplan profile`/`check` output. Each result is a record of raw values: name, device, device_name,
    batch, seq_len, precision, recompute, timing, checks, and the op lists `arithmetic_not_counted` and
    `fvcore_unsupported`; JSON carries all of it."""
    if fmt == "json":
        return to_json([{**r, "checks": [check_record(c) for c in r["checks"]]} for r in results])
    if fmt == "junit":
        return junit(results)
    blocks = []
    for r in results:
        text = check_table(r["checks"], fmt, check_title(r))
        if detail:
            text += ("\n\nNot counted as FLOPs (not matmuls, convention 2): "
                     + _op_list(r["arithmetic_not_counted"])
                     + "\nfvcore has no handle for: " + _op_list(r["fvcore_unsupported"]))
        blocks.append(text)
    return "\n\n".join(blocks)


# ---------------------------------------------------------------------------------------------- calibrate
def hardware_yaml(entry: Mapping[str, Any], header: str) -> str:
    """A hardware file: floats to 4 significant figures (measurements are not more precise than that)."""
    import yaml

    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return float(f"{value:.4g}")
        if isinstance(value, Mapping):
            return {k: rounded(v) for k, v in value.items()}
        return value

    body = yaml.safe_dump(rounded(dict(entry)), sort_keys=False, allow_unicode=True, width=110)
    return "".join(f"# {line}\n" for line in header.splitlines()) + body


def calibration_table(rates: Mapping[str, Mapping[int, float]], bandwidth: float, interconnect: float | None,
                      mfu: float, fmt: str = "table") -> str:
    """Achieved matmul TFLOP/s by precision and size, then bandwidth and MFU."""
    sizes = sorted({n for by_size in rates.values() for n in by_size})
    body = [[p, *(human(by_size.get(n), "flop/s") for n in sizes)] for p, by_size in rates.items()]
    text = grid(["precision", *(f"n = {n}" for n in sizes)], body, fmt)
    lines = [f"memory bandwidth (copy, read + write): {_digits(bandwidth / 1e9)} GB/s"]
    if interconnect:
        lines.append(f"host to device: {_digits(interconnect / 1e9)} GB/s")
    lines.append(f"reference training step: MFU {percent(mfu)} of the calibrated matmul rate")
    return text + "\n\n" + "\n".join(lines)
