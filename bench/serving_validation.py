"""Compare `costplan serve`'s predicted prefill and decode times with published serving measurements.

    python bench/serving_validation.py

Reads bench/serving_published.yaml (validation data only: nothing in costplan may be fitted to it), builds
each row's spec from its preset with the row's setup as `--set` overrides, asks the analytic serving model
(costs/inference.serve, what `costplan serve` prints) for its time to first token T and time per output token
D, turns them into the row's published metric and prints a markdown table with the signed error of each row,
the median |error| and the share of rows within 20%, overall and per source, regime and GPU. The results and
their discussion are in bench/serving_results.md.

The model's time to first token (T) prefills one prompt alone; a static batch's prefill (P) is its `batch`
prompts in one pass, as the engine runs its context phase (their tokens share each GEMM; the weights are read
once). A decode step of the row's batch is timed at the midpoint context prompt + output / 2 (D); decode time
grows linearly with the context, so the midpoint step times the average one. The prefill gives the first output
token, decode steps the other output_tokens - 1:
- static_batch_output_tokens_per_second_per_gpu:
  batch * output_tokens / (P + (output_tokens - 1) * D) / gpus
- ttft_ms: T at batch 1
- tpot_ms: D at batch 1
- end_to_end_tokens_per_second_per_user: output_tokens / (T + (output_tokens - 1) * D) at batch 1
"""
from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DATA = HERE / "serving_published.yaml"
RESULTS = HERE / "serving_results.md"
TARGET = 0.20          # the bar: median |error| at most 20%

REGIMES = {
    "static_batch_output_tokens_per_second_per_gpu": "large batch (prefill + decode)",
    "ttft_ms": "batch 1 prefill (TTFT)",
    "tpot_ms": "batch 1 decode (TPOT)",
    "end_to_end_tokens_per_second_per_user": "batch 1 decode (tokens/s per user)",
}


@dataclass(frozen=True)
class Times:
    """What the analytic model says about one row's setup, in seconds."""

    prefill: float          # prefill of the row's whole batch of prompts, in one pass
    decode_step: float      # one decode step of the batch at the midpoint context


@dataclass(frozen=True)
class Result:
    row: dict
    predicted: float | None      # None: the model says the published setup does not fit in memory

    @property
    def error(self) -> float | None:
        """Signed relative error of the prediction: positive means costplan predicts more than was measured."""
        return None if self.predicted is None else self.predicted / self.row["published"] - 1.0

    @property
    def miss(self) -> float:
        """|error|, infinite for a setup the model cannot place: it ran, so the model is wrong about it."""
        return math.inf if self.error is None else abs(self.error)


# TensorRT-LLM decoded GQA models with a kernel that reads each KV head once per query head until its XQA
# kernel (v0.8, docs/source/blogs/XQA-kernel.md). Rows measured before it describe that engine version, not
# the GQA-aware decode the model assumes; they are kept in every figure and also reported apart.
XQA_VERSION = (0, 8)


def engine_specific(row: dict) -> str | None:
    """Why a row measures a property of its engine version rather than of the model, or None."""
    match = re.fullmatch(r"TensorRT-LLM v(\d+)\.(\d+)(?:\.\d+)?", str(row.get("engine", "")))
    if not match or (int(match[1]), int(match[2])) >= XQA_VERSION or row["metric"] == "ttft_ms":
        return None
    from costplan import load_spec

    model = load_spec(row["preset"]).model
    if model.n_kv_heads >= model.n_heads:
        return None
    return f"GQA decode on {row['engine']}, before XQA"


def load(path: Path = DATA) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def midpoint_context(row: dict) -> int:
    return row["prompt_tokens"] + row["output_tokens"] // 2


def overrides(row: dict) -> list[str]:
    """The row's setup as `--set` overrides of its preset: the request shape, formats, layout and hardware."""
    settings = {
        "serving.batch": row["batch"], "serving.prompt_tokens": row["prompt_tokens"],
        "serving.output_tokens": row["output_tokens"], "serving.weights": row["weights"],
        "serving.kv_cache": row["kv_cache"], "serving.tensor": row["tensor"],
        "hardware.gpu": row["gpu"], "serving.gpus": row["gpus"],
    }
    if "group_size" in row:
        settings["serving.group_size"] = row["group_size"]
    return [f"{key}={value}" for key, value in settings.items()]


def model_times(row: dict) -> Times | None:
    """The serving model's times for the row's setup; None when the model says the setup does not fit.

    A static batch's prompts are prefilled together in one context phase (gptSessionBenchmark runs them as one
    batch), so its prefill is the model's prefill of `batch` prompts in one pass, their tokens in the same GEMMs
    (costs/inference.prefill_seconds); at batch 1 that is the model's TTFT. The decode step (TPOT) is timed at
    the batch given and the midpoint context prompt + output / 2."""
    from costplan import load_spec
    from costplan.costs.inference import prefill_seconds, serve

    spec = load_spec(row["preset"], overrides(row))
    estimate = serve(spec)
    latency = estimate.latency
    if latency.ttft_seconds is None or latency.tpot_seconds is None:
        return None
    assert estimate.assumptions.decode_context == midpoint_context(row)
    prefill = latency.ttft_seconds if row["batch"] == 1 else prefill_seconds(spec, row["batch"])
    return Times(prefill=prefill, decode_step=latency.tpot_seconds)


def predict(row: dict, times: Times) -> float:
    """The row's published metric, in its published unit, from the model's times."""
    metric, out = row["metric"], row["output_tokens"]
    whole_run = times.prefill + (out - 1) * times.decode_step
    if metric == "static_batch_output_tokens_per_second_per_gpu":
        return row["batch"] * out / whole_run / row["gpus"]
    if metric == "ttft_ms":
        return times.prefill * 1e3
    if metric == "tpot_ms":
        return times.decode_step * 1e3
    if metric == "end_to_end_tokens_per_second_per_user":
        return out / whole_run
    raise ValueError(f"unknown metric {metric!r}")


def compare(data: dict) -> list[Result]:
    results = []
    for row in data["rows"]:
        times = model_times(row)
        results.append(Result(row, None if times is None else predict(row, times)))
    return results


def median_abs(results: list[Result]) -> float:
    return statistics.median(r.miss for r in results)


def within(results: list[Result], bound: float = TARGET) -> float:
    return sum(r.miss <= bound for r in results) / len(results)


def _setup(row: dict) -> str:
    weights = row["weights"] + (f" g{row['group_size']}" if "group_size" in row else "")
    return (f"{row['model']}, {row['gpus']}x {row['gpu']} TP{row['tensor']}, {weights}/{row['kv_cache']} KV, "
            f"{row['prompt_tokens']}->{row['output_tokens']} tokens, batch {row['batch']}")


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _predicted(result: Result) -> str:
    return "does not fit" if result.predicted is None else _number(result.predicted)


def _error(result: Result) -> str:
    return "miss" if result.error is None else f"{result.error:+.1%}"


def _summary_line(label: str, results: list[Result]) -> str:
    return (f"| {label} | {len(results)} | {median_abs(results):.1%} | {within(results):.0%} |")


def report(data: dict, results: list[Result]) -> str:
    """The markdown table of every row and the summaries."""
    lines = [
        "| # | source | metric | setup | published | predicted | error |",
        "|---:|---|---|---|---:|---:|---:|",
    ]
    for number, result in enumerate(results, 1):
        row = result.row
        mark = " †" if engine_specific(row) else ""
        lines.append(
            f"| {number}{mark} | {row['source']} | {row['metric']} | {_setup(row)} | "
            f"{row['as_published']} {row['unit']} | {_predicted(result)} | {_error(result)} |"
        )
    lines += ["", "| rows | n | median \\|error\\| | within 20% |", "|---|---:|---:|---:|"]
    lines.append(_summary_line("all", results))
    special = [r for r in results if engine_specific(r.row)]
    if special:
        lines.append(_summary_line("all but engine-specific (†)", [r for r in results if r not in special]))
        lines.append(_summary_line("engine-specific (†): GQA decode before TensorRT-LLM's XQA", special))
    for key in data["sources"]:
        subset = [r for r in results if r.row["source"] == key]
        if subset:
            lines.append(_summary_line(f"source {key}", subset))
    for metric, label in REGIMES.items():
        subset = [r for r in results if r.row["metric"] == metric]
        if subset:
            lines.append(_summary_line(label, subset))
    for gpu in sorted({r.row["gpu"] for r in results}):
        lines.append(_summary_line(gpu, [r for r in results if r.row["gpu"] == gpu]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="published measurements (YAML)")
    args = parser.parse_args(argv)
    data = load(args.data)
    results = compare(data)
    sys.stdout.write(report(data, results))
    general = [r for r in results if not engine_specific(r.row)]
    sys.stdout.write(f"\nmedian |error| {median_abs(results):.1%} over {len(results)} rows; "
                     f"{within(results):.0%} within 20%; without the {len(results) - len(general)} "
                     f"engine-specific rows (†) {median_abs(general):.1%} over {len(general)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
