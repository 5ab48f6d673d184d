"""FlashAttention-2 curves on Hopper (data/kernels.yaml, attention_forward_flash2 / attention_backward_flash2):
present where the default attention curves are FlashAttention-3, well formed, below FlashAttention-3, and equal to
the published bar labels they cite. Read with plain YAML, independent of the schema in costplan/kernels.py."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

TABLE = yaml.safe_load(Path(str(resources.files("costplan") / "data" / "kernels.yaml")).read_text(encoding="utf-8"))
HOPPER = ["h100-sxm", "h100-pcie", "h200"]
PAIRS = [("attention_forward_flash2", "attention_forward"), ("attention_backward_flash2", "attention_backward")]
H100_SXM_BF16 = 989   # TFLOP/s, dense, hardware.yaml


@pytest.mark.parametrize("device", HOPPER)
@pytest.mark.parametrize("flash2, flash3", PAIRS)
def test_flash2_curves_are_well_formed_and_below_flash3(device, flash2, flash3):
    entry = TABLE[device]
    assert flash2 in entry, f"{device} has no {flash2}"
    assert {64, 128} <= set(entry[flash2])
    for head_dim, curve in entry[flash2].items():
        assert curve["source"].strip()
        xs = [x for x, _ in curve["points"]]
        assert xs == sorted(xs) and len(set(xs)) == len(xs), "points must be ascending"
        assert xs[0] == 512 and xs[-1] == 16384
        assert all(0 < value <= 1 for _, value in curve["points"])
        fa3 = dict(entry[flash3][head_dim]["points"])
        for x, value in curve["points"]:
            assert value < fa3[x], f"{device} {flash2}[{head_dim}] at seqlen {x}: {value} >= FA3's {fa3[x]}"


def test_derived_devices_match_h100_sxm():
    # h200: same peak; h100-pcie: SXM TFLOP/s scaled by 756/989, the same fraction of its own peak
    for device in ("h100-pcie", "h200"):
        for flash2, _ in PAIRS:
            for head_dim, curve in TABLE[device][flash2].items():
                assert curve["points"] == TABLE["h100-sxm"][flash2][head_dim]["points"]
                assert curve["source"].startswith("as h100-sxm")


@pytest.mark.parametrize("field, head_dim, seqlen, tflops", [
    # Shah et al. 2024 (FlashAttention-3), Figure 5(d): FlashAttention-2 causal forward, head dim 128, 16k
    ("attention_forward_flash2", 128, 16384, 335),
    # Figure 5(b): head dim 64, seqlen 512
    ("attention_forward_flash2", 64, 512, 180),
])
def test_spot_values_equal_the_published_bar_labels(field, head_dim, seqlen, tflops):
    value = dict(TABLE["h100-sxm"][field][head_dim]["points"])[seqlen]
    assert value == pytest.approx(tflops / H100_SXM_BF16, abs=5e-4)


def test_derived_backward_reproduces_the_published_forward_backward():
    # Dao 2023 (FlashAttention-2), Figure 7(d): causal fwd+bwd, head dim 128, 8k = 308 TFLOP/s with
    # fwd+bwd = 3.5x the forward FLOPs and the backward 2.5x; the forward and backward curves together give it back.
    fwd = dict(TABLE["h100-sxm"]["attention_forward_flash2"][128]["points"])[8192]
    bwd = dict(TABLE["h100-sxm"]["attention_backward_flash2"][128]["points"])[8192]
    fwd_bwd = 3.5 / (1 / fwd + 2.5 / bwd) * H100_SXM_BF16
    assert fwd_bwd == pytest.approx(308, rel=0.01)
