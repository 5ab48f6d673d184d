"""The step model's kernel curves (data/kernels.yaml): every catalogue device has them, each with a source, and
the measured ones agree with the published figures they cite."""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from costplan import kernels, yamlio
from costplan.hardware import PRECISIONS
from costplan.sections import InvalidInput

CATALOGUE = yamlio.read(Path(str(resources.files("costplan") / "data" / "hardware.yaml")))
KEYS = list(CATALOGUE)


def _all(curves: kernels.Curves):
    for precision, curve in curves.gemm.items():
        yield f"gemm.{precision}", curve
    for head_dim, curve in curves.attention_forward.items():
        yield f"attention_forward.{head_dim}", curve
    for head_dim, curve in curves.attention_backward.items():
        yield f"attention_backward.{head_dim}", curve
    yield "collective", curves.collective
    yield "collective_internode", curves.collective_internode
    if curves.alltoall is not None:
        yield "alltoall", curves.alltoall


@pytest.mark.parametrize("key", KEYS)
def test_every_catalogue_device_has_curves(key):
    curves = kernels.curves(key)
    assert curves is not None, key
    peaks = CATALOGUE[key]["peak_tflops"]
    assert set(curves.gemm) <= set(PRECISIONS)
    assert set(curves.gemm) <= set(peaks), "a GEMM curve for a precision the device cannot run"
    assert "bf16" in curves.gemm or "fp16" in curves.gemm
    assert {64, 128} <= set(curves.attention_forward) and {64, 128} <= set(curves.attention_backward)
    for name, curve in _all(curves):
        assert curve.source.strip(), f"{key} {name}: no source"
        if "assumed" in curve.source.lower():
            # an assumption names what it stands on, or why there is nothing better
            assert re.search(r"assumed:? .*(from|as|no |shape)", curve.source, re.I | re.S), f"{key} {name}"
        assert all(0 < y <= 1.5 for _, y in curve.points)


# A source that puts another catalogue device's measurement in this one's place: "assumed from X", "assumed: X's
# curve", "derived: (the shape of) X's curve"
LENT = re.compile(r"(?:assumed from |assumed: |derived: (?:the shape of )?)([a-z0-9][\w.-]*?)(?:'s|\b \()")


@pytest.mark.parametrize("key", KEYS)
def test_a_curve_anothers_measurement_stands_in_for_says_whose_in_a_field(key):
    curves = kernels.curves(key)
    for name, curve in curves.kernel_curves():
        said = LENT.match(curve.source)
        if said and said.group(1) in CATALOGUE:
            assert curve.borrowed_from == said.group(1), f"{key} {name}"
        if curve.borrowed_from is not None:
            assert curve.borrowed_from in CATALOGUE and curve.borrowed_from != key, f"{key} {name}"
            assert said or curve.source.startswith("as "), f"{key} {name}: the source says nothing of the loan"


@pytest.mark.parametrize("key", KEYS)
def test_gemm_and_attention_never_exceed_the_peak(key):
    curves = kernels.curves(key)
    for name, curve in _all(curves):
        if not name.startswith("collective"):
            assert all(y < 1 for _, y in curve.points), f"{key} {name}"


def test_hbm2e_board_streams_at_the_sxm_fraction_of_its_own_bandwidth():
    """h100-sxm-96gb's HBM efficiency is the SXM's 2.8 of 3.35 TB/s (its cited loads) applied to 2.4 TB/s."""
    board = kernels.efficiencies("h100-sxm-96gb")
    assert board.device == "h100-sxm-96gb"
    assert board.memory.value * 2400 == pytest.approx(2.8 / 3.35 * 2400, rel=0.01)   # about 2.0 TB/s


def test_serving_figures_untouched_by_curves():
    """A device with curves but no serving figures still takes the serving defaults under the name 'default'."""
    assert kernels.efficiencies("b200").device == "default"
    assert kernels.efficiencies("h100-sxm").device == "h100-sxm"
    assert kernels.efficiencies("a100-80gb").matmul.value == 0.85


# Spot values: the published number, over the catalogue's dense peak.
A100, H100, B200 = 312, 989, 4500


def _at(key, *path, x):
    curves = kernels.curves(key)
    node = getattr(curves, path[0])
    for p in path[1:]:
        node = node[p]
    return node.at(x)


@pytest.mark.parametrize(("key", "path", "x", "published"), [
    # FlashAttention-2 paper Figure 4(d) (README figure): A100, causal, hd128, fwd+bwd at 16k = 189 TFLOP/s
    ("a100-80gb", ("attention_forward", 128), 16384, 189 / A100),
    ("a100-80gb", ("attention_backward", 128), 16384, 189 / A100),
    # ibid. Figure 4(c): causal, hd64 at 512 = 88 TFLOP/s
    ("a100-80gb", ("attention_forward", 64), 512, 88 / A100),
    # FlashAttention-3 paper Figure 5(d): H100, BF16 forward, causal, hd128 at 16k = 616 TFLOP/s; at 2k = 521
    ("h100-sxm", ("attention_forward", 128), 16384, 616 / H100),
    ("h100-sxm", ("attention_forward", 128), 2048, 521 / H100),
    # ibid. Figure 5(b): causal hd64 at 4k = 420 TFLOP/s
    ("h100-sxm", ("attention_forward", 64), 4096, 420 / H100),
    # FA3 Figure 6(b) non-causal backward hd128 at 16k = 561, times FA2 H100 causal/non-causal fwd+bwd 328/338
    ("h100-sxm", ("attention_backward", 128), 16384, 561 * 328 / 338 / H100),
    # Azure ND A100 v4: cuBLASLt FP16 8192^3 = 253.7 TFLOP/s
    ("a100-80gb", ("gemm", "fp16"), 8192, 253.7 / A100),
    # Azure ND H100 v5: cuBLASLt FP8 16384^3 = 1377.3 TFLOP/s
    ("h100-sxm", ("gemm", "fp8"), 16384, 1377.3 / 1979),
    # Azure ND H200 v5: FP8 4096^3 = 1249.1 TFLOP/s
    ("h200", ("gemm", "fp8"), 4096, 1249.1 / 1979),
    # Azure ND GB200 v6: FP8 8192^3 = 2876.6 TFLOP/s (over the HGX B200 catalogue peak)
    ("b200", ("gemm", "fp8"), 8192, 2876.6 / B200),
    # OpenXLA sm_90 table: BF16 1024^3 = 246.72 TFLOP/s
    ("h100-sxm", ("gemm", "bf16"), 1024, 246.723764705882 / H100),
    # torchtitan's 96 GB HBM2e H100 at 500 W: the SXM's fractions of peak, carried over to this board's own
    # (lower) peaks, so the published SXM TFLOP/s over the SXM's 989 and 1979
    ("h100-sxm-96gb", ("gemm", "bf16"), 1024, 246.723764705882 / H100),
    ("h100-sxm-96gb", ("gemm", "fp8"), 16384, 1377.3 / 1979),
    ("h100-sxm-96gb", ("attention_forward_flash2", 128), 16384, 335 / H100),
    # Fast-CUDA-Kernels README: RTX 4090 cuBLAS SGEMM 4096^3 = 47,611.8 GFLOP/s over the 82.6 TFLOP/s fp32 peak
    ("rtx-4090", ("gemm", "fp32"), 4096, 47.6118 / 82.6),
    # Azure ND H100 v5 NVLS all-reduce busbw at 1G = 466.35 GB/s; ND A100 v4 at 1G = 228.10 GB/s
    ("h100-sxm", ("collective",), 2**30, 466.35 / 450),
    ("a100-80gb", ("collective",), 2**30, 228.10 / 300),
    ("a100-80gb", ("collective",), 2**20, 36.22 / 300),
])
def test_published_spot_values(key, path, x, published):
    assert _at(key, *path, x=x) == pytest.approx(published, rel=0.01)


# Maximum sustainable over maximum achievable matmul FLOPS, bf16, the node's other GPUs computing (stas00/ml-engineering
# 0359db8, compute/accelerator/README.md, notes 3 and 6): H200 (the H100's die at 700 W) 755 of 850 TFLOP/s, B200 1439
# of 1737; their fp8 rows give the same ratios (1354 / 1525, 2788 / 3350).
@pytest.mark.parametrize(("key", "sustained", "burst"), [
    ("h100-sxm", 755, 850), ("h200", 755, 850), ("h100-sxm-96gb", 755, 850), ("b200", 1439, 1737)])
def test_burst_timed_curves_run_at_the_published_sustained_share(key, sustained, burst):
    curves = kernels.curves(key)
    measured = curves.gemm["bf16"]
    assert measured.timed == "burst" and "OpenXLA" in measured.source     # 10 runs a shape after an idle
    for x in (1024, 4096, 8192):
        assert curves.sustained_gemm("bf16").at(x) == pytest.approx(measured.at(x) * sustained / burst, rel=1e-3)
    # FlashAttention's benchmarks are bursts too
    attention = curves.attention_forward[128]
    assert attention.timed == "burst"
    assert curves.sustained(attention).at(4096) == pytest.approx(attention.at(4096) * sustained / burst, rel=1e-3)
    # Azure's fp8 curves ran 10,000 warm-up iterations first: sustained as measured
    assert curves.gemm["fp8"].timed == "sustained" and curves.sustained_gemm("fp8") is curves.gemm["fp8"]


def test_flashattention3s_curves_are_bursts_and_flashattention2s_as_measured():
    # FlashAttention-3's benchmark (hopper/benchmark_attn.py, July 2024) sleeps 1 s before each case "to avoid
    # residual power throttling"; FlashAttention-2's (benchmarks/benchmark_flash_attention.py) runs its cases
    # back to back
    for key in KEYS:
        curves = kernels.curves(key)
        for name, curve in curves.kernel_curves():
            if name.startswith("attention"):
                fa3 = "FlashAttention-3" in curve.source and "_flash" not in name
                assert (curve.timed == "burst") == fa3, (key, name)
        if any(curve.timed == "burst" for _, curve in curves.kernel_curves()):
            assert 0 < curves.sustained_share.value <= 1


def test_openxlas_tables_and_theirs_alone_are_timed_in_bursts():
    # MI300X's curves take OpenXLA's shape scaled to its own sustained rates: not bursts
    for key in KEYS:
        for precision, curve in kernels.curves(key).gemm.items():
            openxla = "OpenXLA" in curve.source and "scaled" not in curve.source
            assert (curve.timed == "burst") == openxla, (key, precision)


def test_mi300x_gemms_reach_its_measured_sustained_rates():
    # MI300X at 750 W (same table, notes 9 and 13): bf16 659 TFLOP/s at 12288x9728x8192, fp8 1187 at
    # 6912x19200x16384 (catalogue peaks 1307.4 and 2614.9); its curves were H100's, 0.81 of peak, before
    curves, peaks = kernels.curves("mi300x"), CATALOGUE["mi300x"]["peak_tflops"]
    for precision, rate, shape in (("bf16", 659, (12288, 9728, 8192)), ("fp8", 1187, (6912, 19200, 16384))):
        x = (shape[0] * shape[1] * shape[2]) ** (1 / 3)
        assert curves.sustained_gemm(precision).at(x) * peaks[precision] == pytest.approx(rate, rel=0.005)


def test_burst_timed_curves_need_a_sustained_share():
    gemm = {"bf16": {"points": [[1, 0.5]], "source": "test", "timed": "burst"}}
    with pytest.raises(InvalidInput, match="sustained_share: attention_backward.64 timed in bursts"):
        kernels.Curves.model_validate({"gemm": {"bf16": {"points": [[1, 0.5]], "source": "t"}},
                                       "attention_forward": {64: {"points": [[1, 0.4]], "source": "t"}},
                                       "attention_backward": {64: {"points": [[1, 0.2]], "source": "t",
                                                                   "timed": "burst"}},
                                       "collective": {"points": [[1, 1.0]], "source": "t"},
                                       "collective_internode": {"points": [[1, 0.5]], "source": "t"}})
    rest = {"attention_forward": {64: {"points": [[1, 0.4]], "source": "t"}},
            "attention_backward": {64: {"points": [[1, 0.2]], "source": "t"}},
            "collective": {"points": [[1, 1.0]], "source": "t"}, "collective_internode": {"points": [[1, 0.5]],
                                                                                         "source": "t"}}
    with pytest.raises(InvalidInput, match="sustained_share: gemm.bf16 timed in bursts"):
        kernels.Curves.model_validate({"gemm": gemm, **rest})
    with pytest.raises(InvalidInput, match="sustained_share: a sustained rate over a burst one is at most 1"):
        kernels.Curves.model_validate({"gemm": gemm, **rest, "sustained_share": {"value": 1.2, "source": "t"}})
    curves = kernels.Curves.model_validate({"gemm": gemm, **rest, "sustained_share": {"value": 0.8, "source": "t"}})
    assert curves.sustained_gemm("bf16").at(1) == pytest.approx(0.4) and curves.gemm["bf16"].at(1) == 0.5
    assert curves.burst_share() == 0.8
    plain = {"gemm": {"bf16": {"points": [[1, 0.5]], "source": "t"}}, **rest}     # a share nothing takes
    assert kernels.Curves.model_validate({**plain, "sustained_share": {"value": 0.8, "source": "t"}}).burst_share() \
        is None


@pytest.mark.parametrize("change, problem", [
    # a head dimension of 0 or below had stopped every estimate on the file in math.log2 (a traceback)
    ({"attention_forward": {0: {"points": [[1, 0.4]], "source": "t"}}},
     "attention_forward.0: must be greater than 0, got 0"),
    ({"attention_backward": {-64: {"points": [[1, 0.2]], "source": "t"}}},
     "attention_backward.-64: must be greater than 0, got -64"),
    # 1e300 seconds a kernel had printed infinite GPU-hours, a NaN cost and JSON that is not JSON
    ({"kernel_seconds": {"value": 1e300, "source": "t"}},
     "kernel_seconds.value: 1e+300 is too large (costplan accepts up to 1e+30)"),
])
def test_a_hardware_file_s_odd_kernel_figures_are_refused(change, problem):
    plain = {"gemm": {"bf16": {"points": [[1, 0.5]], "source": "t"}},
             "attention_forward": {64: {"points": [[1, 0.4]], "source": "t"}},
             "attention_backward": {64: {"points": [[1, 0.2]], "source": "t"}},
             "collective": {"points": [[1, 1.0]], "source": "t"},
             "collective_internode": {"points": [[1, 0.5]], "source": "t"}}
    with pytest.raises(InvalidInput) as caught:
        kernels.Curves.model_validate({**plain, **change})
    assert any(problem in message for message in caught.value.messages), caught.value.messages


def test_curves_rise_with_size_where_measured():
    h100 = kernels.curves("h100-sxm")
    for curve in (h100.gemm["bf16"], h100.gemm["fp8"], h100.attention_forward[128], h100.collective):
        assert curve.at(curve.points[0][0]) < curve.at(curve.points[-1][0])
    # between published points the curve interpolates, beyond them it holds flat
    fwd = h100.attention_forward[128]
    assert 521 / H100 < fwd.at(3000) < 579 / H100
    assert fwd.at(65536) == fwd.at(16384)


def test_each_device_entry_read_alone_equals_the_whole_table():
    """Estimates parse only their device's entry of data/kernels.yaml: each must read as in the whole file."""
    whole = yamlio.read(Path(str(resources.files("costplan") / "data" / "kernels.yaml")))
    assert set(kernels._sections()) == set(whole)
    for key, entry in whole.items():
        assert kernels._entry(key) == entry, key
    assert kernels._entry("no-such-device") == {}


def test_sections_cut_at_top_level_keys_only():
    text = "# a: comment\na:\n  b: 1\n  # c: indented comment\nd: [1, 2]\n"
    assert yamlio.sections(text) == {"a": "a:\n  b: 1\n  # c: indented comment\n",
                                     "d": "d: [1, 2]\n"}
    with pytest.raises(ValueError, match="duplicate top-level key 'a'"):
        yamlio.sections("a: 1\nb: 2\na: 3\n")
