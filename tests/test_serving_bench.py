"""The serving benchmark (bench/serving_validation.py) against published measurements (bench/serving_published.yaml).

The data tests keep the published set at the issue's bar (15 rows, 3 independent sources, A100 and H100, dense
and MoE, batch 1 and large batch) and each figure consistent with the text it was copied from. The comparison
test keeps the median |error| from getting worse than it was when measured; see bench/serving_results.md.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]

# Median |error| over every row measured on the date in bench/serving_results.md, rounded up to the next
# whole percent. It is a ceiling against regressions, not a target: lower it when the model improves.
MEDIAN_ERROR_CEILING = 0.14     # measured 13.6% on 2026-12-08 over 97 rows (15.6% on 2026-12-03); target 0.20


def _bench():
    spec = importlib.util.spec_from_file_location("serving_validation", ROOT / "bench" / "serving_validation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.fixture(scope="module")
def data(bench):
    return bench.load()


def test_published_set_meets_the_issue_bar(data, bench):
    rows = data["rows"]
    assert len(rows) >= 15
    assert len({row["source"] for row in rows}) >= 3
    assert {row["gpu"] for row in rows} >= {"a100-80gb", "h100-sxm"}
    assert any(bench.row_spec(row).model.moe is not None for row in rows)
    assert any(bench.row_spec(row).model.moe is None for row in rows)
    assert any(row["batch"] == 1 for row in rows)
    assert any(row["batch"] == "engine" or row["batch"] >= 64 for row in rows)


def test_every_row_cites_a_source_and_copies_its_figure(data, bench):
    for row in data["rows"]:
        assert row["source"] in data["sources"], row
        assert data["sources"][row["source"]]["url"].startswith("https://"), row["source"]
        assert row["metric"] in bench.REGIMES, row
        # The number compared is the published cell, thousands separators dropped.
        digits = re.sub(r"[^0-9.]", "", row["as_published"])
        assert float(digits) == pytest.approx(row["published"]), row
        assert row["tensor"] <= row["gpus"], row


def test_error_is_relative_to_the_published_figure(bench):
    row = {"published": 80.0}
    assert bench.Result(row, 100.0).error == pytest.approx(0.25)
    assert bench.Result(row, 60.0).error == pytest.approx(-0.25)
    # A published setup the model cannot fit is a miss, worse than any finite error.
    assert bench.Result(row, None).miss == float("inf")
    assert bench.within([bench.Result(row, 90.0), bench.Result(row, None)]) == 0.5


def test_metric_formulas(bench):
    times = bench.Times(prefill=0.5, decode_step=0.01)
    static = {"metric": "static_batch_output_tokens_per_second_per_gpu", "batch": 64, "gpus": 2,
              "output_tokens": 101}
    # 64 sequences x 101 tokens over 0.5 s of prefill and 100 decode steps of 10 ms, on 2 GPUs.
    assert bench.predict(static, times) == pytest.approx(64 * 101 / 1.5 / 2)
    user = {"metric": "end_to_end_tokens_per_second_per_user", "batch": 1, "gpus": 1, "output_tokens": 101}
    assert bench.predict(user, times) == pytest.approx(101 / 1.5)
    assert bench.predict({"metric": "ttft_ms", "output_tokens": 1}, times) == pytest.approx(500)
    assert bench.predict({"metric": "tpot_ms", "output_tokens": 128}, times) == pytest.approx(10)


def test_trtllm_bench_settings_by_hand(bench):
    # trtllm-bench's heuristic for Llama 3.1 8B FP8 (8,030,261,248 parameters) on one 80 GiB H100, 128 in and
    # 2048 out, an FP8 cache at 0.95 of what the weights leave: 2 x 32 layers x 8 KV heads x 128 x 1 byte =
    # 64 KiB a token, (80 - 7.4787 GiB) x 0.95 = 68.90 GiB for 2176-token requests = 518.7 of them, rounded up
    # to 640 (a multiple of 128 between 256 and 1024); 518.7 x (1 + 128/2048) = 551 tokens, below the 2048
    # floor, then at least 128 + 640 since chunked prefill is off.
    row = {"preset": "llama3-8b", "gpu": "h100-sxm", "gpus": 1, "tensor": 1, "weights": "fp8", "kv_cache": "fp8",
           "kv_fraction": 0.95, "prompt_tokens": 128, "output_tokens": 2048, "batch": "engine"}
    assert bench.trtllm_bench_settings(row, 8_030_261_248) == (640, 2048)
    long = {**row, "prompt_tokens": 5000, "output_tokens": 500}
    # 68.90 GiB / (5500 x 64 KiB) = 205.2 requests: 224 (a multiple of 32 below 256); 205.2 x 11 = 2257 tokens,
    # 2304 in multiples of 256, then 5000 + 224 = 5224
    assert bench.trtllm_bench_settings(long, 8_030_261_248) == (224, 5224)


def test_inflight_rows_give_the_cache_what_the_engine_gives_it(data, bench):
    row = next(r for r in data["rows"] if r["metric"] == "inflight_total_output_tokens_per_second")
    from costplan.costs.inference import serve

    est = serve(bench.inflight_spec(row))
    m = est.memory
    cache = m.gpu_memory - m.reserve - m.weights_per_gpu        # what the spec's reserve leaves for the cache
    assert cache == pytest.approx(row["kv_fraction"] * (m.gpu_memory - m.weights_per_gpu), rel=1e-9)
    assert est.throughput.batch <= m.max_batch
    result = bench.inflight(row)
    assert result.predicted == pytest.approx(est.throughput.tokens_per_second_per_gpu * row["tensor"])


def test_median_error_does_not_regress(data, bench):
    results = bench.compare(data)
    assert len(results) == len(data["rows"])
    assert bench.median_abs(results) <= MEDIAN_ERROR_CEILING


def test_engine_specific_rows_are_gqa_decode_before_xqa(data, bench):
    # A property of the row (engine version, GQA model, a metric that includes decode), never of its error.
    flagged = [row for row in data["rows"] if bench.engine_specific(row)]
    assert flagged and all(row["preset"] == "llama2-70b" and row["metric"] != "ttft_ms" for row in flagged)
    def flagged_row(engine: str, metric: str, preset: str) -> bool:
        return bool(bench.engine_specific({"engine": engine, "metric": metric, "preset": preset}))

    assert flagged_row("TensorRT-LLM v0.6.1", "tpot_ms", "llama2-70b")
    assert not flagged_row("TensorRT-LLM v0.6.1", "ttft_ms", "llama2-70b")      # prefill, not decode
    assert not flagged_row("TensorRT-LLM v0.6.1", "tpot_ms", "llama2-7b")       # MHA: one query head per KV head
    assert not flagged_row("TensorRT-LLM v0.8.0", "tpot_ms", "llama2-70b")      # XQA
    assert not flagged_row("SGLang", "tpot_ms", "llama2-70b")


def test_the_headline_counts_engine_specific_rows(data, bench):
    results = bench.compare(data)
    text = bench.report(data, results)
    assert f"| all | {len(results)} | {bench.median_abs(results):.1%} |" in text
    assert "| all but engine-specific (†) |" in text
