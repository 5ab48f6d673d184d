"""Tables of `costplan profile`, `check` and `calibrate`: estimates against measurements.

Rows of `profile` and `check` are profiling.compare.Check objects, duck-typed here so that this module never
imports torch: metric, item, component, estimate, measured, unit, tolerance, status, note, figures. Each result
is a record of raw values: source (the file or preset as given), name, device, device_name, batch, seq_len,
precision, recompute, recompute_layers (profile's and check's own records), timing, checks, and
the op lists `arithmetic_not_counted` and `fvcore_unsupported`; JSON carries all of it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from costplan.report import Block, Case, Suite, Table, exact_difference, human, number, percent, recomputed

CHECK_HEADERS = ["", "estimate", "measured", "error", "tolerance", "status", "note"]
CHECK_ALIGN = ("left", "right", "right", "right", "right", "left", "left")


def check_error(check: Any) -> str:
    """Exact metrics show the signed difference, exactly, in their unit (FLOP counts are exact integers); others
    a percentage."""
    error = check.relative_error
    if uncompared(check):
        return "—"
    if check.measured == check.estimate:
        return "0"
    if check.tolerance == 0 and isinstance(check.estimate, int) and isinstance(check.measured, int):
        return exact_difference(check.measured - check.estimate, check.unit)
    if math.isinf(error):
        return "∞"
    return f"{100 * error:+.2f}%"


def check_tolerance(check: Any) -> str:
    if uncompared(check):      # nothing was compared against it
        return "—"
    return "exact" if check.tolerance == 0 else f"{number(100 * check.tolerance)}%"


def check_note(check: Any, exact: bool = False) -> str:
    """The check's note and the figures it goes on with: formatted in the check's unit, or `exact` (JSON)."""
    figures = [f"{label} {value if exact else human(value, check.unit)}"
               for label, value in getattr(check, "figures", ())]
    return "; ".join(filter(None, [check.note, *figures]))


def check_record(check: Any) -> dict[str, Any]:
    """One check as JSON: raw numbers (exact integers stay integers)."""
    error = None if uncompared(check) else check.relative_error     # as the table's "—"
    return {"metric": check.metric, "item": check.item, "component": check.component or None,
            "estimate": check.estimate, "measured": check.measured, "unit": check.unit,
            "relative_error": None if error is None or math.isinf(error) else error,
            "tolerance": check.tolerance, "status": check.status, "note": check_note(check, exact=True)}


def uncompared(check: Any) -> bool:
    """A check with nothing to compare (no estimate, no measurement or no tolerance): skipped, or a failure
    under `check --strict` (Check.status)."""
    return check.relative_error is None or check.tolerance is None or check.withheld


def check_summary(check: Any) -> str:
    """'estimate 52.45 MiB, measured 53.3 MiB, error +1.61%, tolerance 10%': a failure in one line."""
    if uncompared(check):
        return f"not compared (--strict): {check_note(check) or 'nothing to compare'}"
    return (f"estimate {human(check.estimate, check.unit)}, measured {human(check.measured, check.unit)}, "
            f"error {check_error(check)}, tolerance {check_tolerance(check)}")


def check_failures(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """`costplan check`'s lines on stderr, one per failing check."""
    return [f"FAIL {r['name']}: {c.name} [{c.metric}]: " + (
            check_summary(c) if uncompared(c) else f"estimate {human(c.estimate, c.unit)}, measured "
            f"{human(c.measured, c.unit)} ({check_error(c)}, tolerance {check_tolerance(c)})")
            for r in results for c in r["checks"] if c.status == "FAIL"]


def _op_list(ops: Mapping[str, int]) -> str:
    return ", ".join(f"{name} ×{n}" for name, n in ops.items()) or "none"


def check_title(result: Mapping[str, Any]) -> str:
    r = result
    if r.get("title"):          # a record that describes itself (profile --serve)
        return r["title"]
    laid_out = [f"its {r['spec_gpus']} GPUs" if r.get("spec_gpus", 1) > 1 else "",
                 "its parallelism section" if r.get("spec_parallelism") else ""]
    whole = (f"; the whole model on one device, as estimated here ({' and '.join(filter(None, laid_out))} not "
             "measured; --nproc checks FSDP's shards)" if any(laid_out) else "")
    modules = r.get("implementation", "fused")
    others = (f"; training.implementation {modules}: memory estimated for transformers' modules, not the reference "
              "model's (check --against transformers)" if modules != "fused" else "")
    return (f"{r['name']}: estimate vs {r['device']} ({r['device_name']}), batch {r['batch']} × {r['seq_len']} "
            f"tokens, {r['precision']}, recompute {recomputed(r['recompute'], r.get('recompute_layers'), '')}"
            f"{whole}{others}")


def checks(results: Sequence[Mapping[str, Any]], detail: bool = False) -> Table:
    """Estimate and measurement side by side: a block per spec, a line per check; a JUnit suite per spec. A spec
    that could not be measured (a record of its source, name and error) is a JSON record with its error and a JUnit
    suite with one errored case, in its place; the text formats leave it to the command's error message."""
    blocks, suites = [], []
    for r in results:
        if "error" in r:
            suites.append(Suite(r["name"], [Case("measurement", "ERROR", r["error"].splitlines()[0], r["error"])]))
            continue
        body = [[c.name if not c.component else f"· {c.component}", human(c.estimate, c.unit),
                 human(c.measured, c.unit), check_error(c), check_tolerance(c), c.status, check_note(c)]
                for c in r["checks"]]
        footer = ("Not counted as FLOPs (not matmuls, convention 2): " + _op_list(r["arithmetic_not_counted"])
                  + "\nfvcore has no handle for: " + _op_list(r["fvcore_unsupported"])) if detail else ""
        blocks.append(Block(CHECK_HEADERS, body, title=check_title(r), align=CHECK_ALIGN, footer=footer))
        suites.append(Suite(r["name"], [Case(c.name, c.status, check_summary(c) if c.status == "FAIL" else "",
                                             check_note(c) if c.status == "FAIL" else c.note or "not measured")
                                        for c in r["checks"]]))
    records = [{**r, "checks": [check_record(c) for c in r["checks"]]} for r in results]
    return Table(blocks, records, suites=suites)


def calibration(rates: Mapping[str, Mapping[int, float]], bandwidth: float, interconnect: float | None,
                mfu: float) -> Table:
    """Achieved matmul TFLOP/s by precision and size, then bandwidth and MFU."""
    sizes = sorted({n for by_size in rates.values() for n in by_size})
    body = [[p, *(human(by_size.get(n), "flop/s") for n in sizes)] for p, by_size in rates.items()]
    lines = [f"memory bandwidth (copy, read + write): {number(bandwidth / 1e9)} GB/s"]
    if interconnect:
        lines.append(f"host to device: {number(interconnect / 1e9)} GB/s")
    lines.append(f"reference training step: MFU {percent(mfu)} of the calibrated matmul rate")
    records = {"rates": {p: dict(by_size) for p, by_size in rates.items()}, "bandwidth": bandwidth,
               "interconnect": interconnect, "mfu": mfu}
    return Table([Block(["precision", *(f"n = {n}" for n in sizes)], body, footer="\n".join(lines))], records)
