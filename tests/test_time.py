"""GPU-hours, wall clock and cost, checked against published training runs."""
from __future__ import annotations

import pytest

import costplan
from conftest import make_spec


@pytest.mark.parametrize("preset, published", [
    # Llama 2 paper, Table 2: A100-80GB GPU-hours for 2.0T tokens. The default A100 MFU (45%) is derived from the
    # 7B row, so 13B and 70B are independent checks of the cost model at the same utilisation.
    ("llama2-13b", 368_640),
    ("llama2-70b", 1_720_320),
])
def test_llama2_gpu_hours(preset, published):
    assert costplan.estimate(costplan.load_spec(preset)).time.gpu_hours == pytest.approx(published, rel=0.10)


def test_llama1_7b_gpu_hours():
    # Touvron et al. 2023 (LLaMA), Table 15: 7B used 82,432 A100-80GB GPU-hours for 1.0T tokens at 2,048 context.
    spec = costplan.load_spec("llama2-7b", ["model.max_seq_len=2048", "training.seq_len=2048",
                                            "training.tokens=1e12"])
    assert costplan.estimate(spec).time.gpu_hours == pytest.approx(82_432, rel=0.10)


def test_gpt3_training_compute():
    # Brown et al. 2020, Table D.1: 3.14e23 FLOPs for GPT-3 175B on 300B tokens (6ND, no attention term).
    assert costplan.estimate(costplan.load_spec("gpt3-175b")).flops.training_total == pytest.approx(3.14e23,
                                                                                                   rel=0.03)


def test_time_and_cost_by_hand():
    spec = make_spec(training={"tokens": 10**9}, hardware={"gpu": "h100-sxm", "count": 8, "mfu": 0.5,
                                                           "usd_per_gpu_hour": 2.0})
    e = costplan.estimate(spec)
    hours = e.flops.training_total / (989e12 * 0.5) / 3600
    assert e.time.gpu_hours == pytest.approx(hours, rel=1e-12)
    assert e.time.wall_clock_days == pytest.approx(hours / 8 / 24, rel=1e-12)
    assert e.time.cost_usd == pytest.approx(hours * 2.0, rel=1e-12)
    assert e.assumptions["mfu_source"] == "hardware.mfu"


def test_catalogue_defaults_and_precision_peak():
    e = costplan.estimate(make_spec(training={"tokens": 10**9, "precision": "fp8"}, hardware={"gpu": "h100-sxm"}))
    assert e.assumptions["peak_flops_per_gpu"] == 1979e12 and e.assumptions["mfu"] == 0.40
    assert e.assumptions["usd_per_gpu_hour"] == 2.95


def test_default_tokens_are_twenty_per_parameter():
    e = costplan.estimate(make_spec())
    assert e.assumptions["tokens"] == 20 * e.params.total
    assert e.assumptions["tokens_per_param"] == 20
