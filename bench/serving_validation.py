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
once). A decode step of the row's batch is timed at the mean of its steps' cached tokens, prompt + (output -
2) / 2 (D; each step reads those and its own); decode time grows linearly with the context, so the mean step
times the average one. The prefill gives the first output token, decode steps the other output_tokens - 1:
- static_batch_output_tokens_per_second_per_gpu:
  batch * output_tokens / (P + (output_tokens - 1) * D) / gpus
- ttft_ms: T at batch 1
- tpot_ms: D at batch 1
- end_to_end_tokens_per_second_per_user: output_tokens / (T + (output_tokens - 1) * D) at batch 1
- inflight_total_output_tokens_per_second: what `costplan serve` predicts for a busy replica (its output tokens/s
  per GPU × the GPUs of the replica) at the batch and prefill pass the engine's own settings give (for
  trtllm-bench: `trtllm_bench_settings`, its heuristic, and the share of memory it gives the KV cache)
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
    "inflight_total_output_tokens_per_second": "in-flight batching at full load (output tokens/s)",
}
GIB = 2**30


@dataclass(frozen=True)
class Times:
    """What the analytic model says about one row's setup, in seconds."""

    prefill: float          # prefill of the row's whole batch of prompts, in one pass
    decode_step: float | None   # one decode step of the batch at the steps' mean context; None: one output token


@dataclass(frozen=True)
class Result:
    row: dict
    predicted: float | None      # None: the model says the published setup does not fit in memory
    batch: int | None = None     # the batch the engine's settings give, for rows that leave it to the engine

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
    model = row_spec(row).model
    if model.n_kv_heads >= model.n_heads:
        return None
    return f"GQA decode on {row['engine']}, before XQA"


def load(path: Path = DATA) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def mean_cached(row: dict) -> int:
    """The cached tokens of the row's decode steps on average: they feed positions prompt .. prompt + output − 2,
    so prompt + (output − 2)/2 (rounded up for an odd output)."""
    return row["prompt_tokens"] + (row["output_tokens"] - 1) // 2


def row_spec(row: dict, sets: list[str] | None = None):
    """The row's spec as costplan builds it: its preset, or the architecture written out in the row
    (`architecture`, for a model without a preset), with the row's own `sets` (e.g. a longer max_seq_len) and
    then `sets`."""
    from costplan import load_spec

    source = row["preset"] if "preset" in row else {"name": row["model"], "model": row["architecture"]}
    return load_spec(source, [*row.get("sets", []), *(sets or [])])


def overrides(row: dict) -> list[str]:
    """The row's setup as `--set` overrides of its preset: the request shape, formats, layout and hardware."""
    settings = {
        "serving.prompt_tokens": row["prompt_tokens"],
        "serving.output_tokens": row["output_tokens"], "serving.weights": row["weights"],
        "serving.kv_cache": row["kv_cache"], "serving.tensor": row["tensor"],
        "hardware.gpu": row["gpu"], "serving.gpus": row["gpus"],
    }
    if isinstance(row["batch"], int):
        settings["serving.batch"] = row["batch"]
    if "group_size" in row:
        settings["serving.group_size"] = row["group_size"]
    return [f"{key}={value}" for key, value in settings.items()]


def _rounded_up(value: float, steps: list[tuple[float, int]], floor: int) -> int:
    """`value` rounded up to a multiple of the step of the first band (upper limit, step) it lies below, and at
    least `floor` (trtllm-bench's rounding of its batch and token settings)."""
    step = next(step for limit, step in steps if value < limit)
    return max(floor, step * math.ceil(value / step))


def trtllm_bench_settings(row: dict, parameters: int) -> tuple[int, int]:
    """max_batch_size and max_num_tokens that `trtllm-bench throughput` (TensorRT-LLM v1.0) picks when the user
    gives neither: tensorrt_llm/bench/build/tuning.py (calc_engine_setting) for an FP8 checkpoint, the
    KV-cache memory being `kv_fraction` of the memory left after the weights (param_count x 1 byte) on all
    tp x pp GPUs, every request held at ISL + OSL; then, chunked prefill being off,
    max_num_tokens = max(max_num_tokens, ISL + max_batch_size) (bench/benchmark/utils/general.py)."""
    spec = row_spec(row, overrides(row))
    m, gpu = spec.model, spec.gpu
    isl, osl, tp = row["prompt_tokens"], row["output_tokens"], row["tensor"]
    kv_bytes = 1 if row["kv_cache"] == "fp8" else 2
    byte_per_token = 2 * m.n_layers * max(tp, m.n_kv_heads) * m.head_dim * kv_bytes / GIB
    cache = (gpu.memory_bytes / GIB * tp - parameters / GIB) * row["kv_fraction"]
    raw_bs = min(cache / (byte_per_token * (isl + osl)), 4096)      # pp = 1
    raw_tok = min(raw_bs * (1 + isl / osl), 32768)
    max_bs = _rounded_up(raw_bs, [(256, 32), (1024, 128), (math.inf, 256)], floor=64)
    max_tok = _rounded_up(raw_tok, [(4096, 256), (8192, 512), (math.inf, 1024)], floor=2048)
    return max_bs, max(max_tok, isl + max_bs)


def inflight_spec(row: dict):
    """The spec of an in-flight batching row: the engine's batch and prefill pass (trtllm_bench_settings), and
    a reserve such that the KV cache gets `kv_fraction` of the memory left after the weights, as the engine's
    free_gpu_memory_fraction gives it (its activation workspace, measured at start-up, is not known: left out).
    The batch is what the scheduler keeps running: max_batch_size, or fewer when that many whole requests
    (GUARANTEED_NO_EVICT holds each at ISL + OSL) do not fit in the cache."""
    from costplan.costs.inference import serve

    base = row_spec(row, overrides(row))
    memory = serve(base).memory
    max_bs, max_tokens = trtllm_bench_settings(row, parameter_count(base))
    reserve = (1 - row["kv_fraction"]) * (memory.gpu_memory - memory.weights_per_gpu) / memory.gpu_memory
    sized = row_spec(row, [*overrides(row), f"serving.reserve={reserve!r}"])
    batch = min(max_bs, serve(sized).memory.max_batch)
    return row_spec(row, [*overrides(row), f"serving.reserve={reserve!r}", f"serving.batch={batch}",
                          f"serving.prefill_tokens={max_tokens}"])


def parameter_count(spec) -> int:
    from costplan import estimate

    return estimate(spec).params.total


def model_times(row: dict) -> Times | None:
    """The serving model's times for the row's setup; None when the model says the setup does not fit.

    A static batch's prompts are prefilled together in one context phase (gptSessionBenchmark runs them as one
    batch), so its prefill is the model's prefill of `batch` prompts in one pass, their tokens in the same GEMMs
    (costs/inference.prefill_seconds); at batch 1 that is the model's TTFT. The decode step (TPOT) is timed at
    the batch given and the steps' mean cached tokens (mean_cached)."""
    from costplan.costs.inference import prefill_seconds, serve

    spec = row_spec(row, overrides(row))
    estimate = serve(spec)
    latency = estimate.latency
    if not estimate.fits:
        return None
    assert estimate.assumptions.decode_context == mean_cached(row)
    prefill = latency.ttft_seconds if row["batch"] == 1 else prefill_seconds(spec, row["batch"])
    return Times(prefill=prefill, decode_step=latency.tpot_seconds)


def predict(row: dict, times: Times) -> float:
    """The row's published metric, in its published unit, from the model's times."""
    metric, out = row["metric"], row["output_tokens"]
    whole_run = times.prefill + (out - 1) * times.decode_step if out > 1 else times.prefill
    if metric == "static_batch_output_tokens_per_second_per_gpu":
        return row["batch"] * out / whole_run / row["gpus"]
    if metric == "ttft_ms":
        return times.prefill * 1e3
    if metric == "tpot_ms":
        return times.decode_step * 1e3
    if metric == "end_to_end_tokens_per_second_per_user":
        return out / whole_run
    raise ValueError(f"unknown metric {metric!r}")


def inflight(row: dict) -> Result:
    """Output tokens/s of the row's whole replica, as `costplan serve` predicts a busy one (see inflight_spec);
    no prediction when the model says it does not fit."""
    from costplan.costs.inference import serve

    estimate = serve(inflight_spec(row))
    per_gpu = estimate.throughput.tokens_per_second_per_gpu
    return Result(row, None if per_gpu is None else per_gpu * estimate.assumptions.tensor,
                  estimate.throughput.batch)


def compare(data: dict) -> list[Result]:
    results = []
    for row in data["rows"]:
        if row["metric"] == "inflight_total_output_tokens_per_second":
            results.append(inflight(row))
            continue
        times = model_times(row)
        results.append(Result(row, None if times is None else predict(row, times)))
    return results


def median_abs(results: list[Result]) -> float:
    return statistics.median(r.miss for r in results)


def within(results: list[Result], bound: float = TARGET) -> float:
    return sum(r.miss <= bound for r in results) / len(results)


def _setup(result: Result) -> str:
    row = result.row
    weights = row["weights"] + (f" g{row['group_size']}" if "group_size" in row else "")
    batch = f"batch {row['batch']}" if result.batch is None else f"batch {result.batch} (the engine's settings)"
    return (f"{row['model']}, {row['gpus']}x {row['gpu']} TP{row['tensor']}, {weights}/{row['kv_cache']} KV, "
            f"{row['prompt_tokens']}->{row['output_tokens']} tokens, {batch}")


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
            f"| {number}{mark} | {row['source']} | {row['metric']} | {_setup(result)} | "
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
