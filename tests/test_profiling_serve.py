"""Generation with a cache in the reference model, quantized weight storage, and `profile --serve`/`check --serve`:
decoding through the cache gives the logits of a full forward pass; cache bytes, prefill and decode FLOPs and
stored weight bytes agree exactly with costs/serving.py (and with hand counts on a few specs)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from costplan.costs import inference, serving  # noqa: E402
from costplan.errors import CostplanError  # noqa: E402
from costplan.profiling import generate, quantize  # noqa: E402
from costplan.profiling.compare import serve_checks  # noqa: E402
from costplan.loading import with_overrides  # noqa: E402
from costplan.profiling.model import build_model  # noqa: E402
from costplan.profiling.serve import measure_serve, served  # noqa: E402
from costplan.loading import load_spec  # noqa: E402
from costplan.spec_attention import ATTENTION_TYPES  # noqa: E402

CI = Path(__file__).parents[1] / "specs" / "ci"
CPU = torch.device("cpu")
# Dense, GQA, ALiBi, MLA, windows (flash and materialised), chunks with a NoPE layer, MoE, every AFT variant,
# every block structure and attention sinks.
DECODING = ["dense", "flash", "alibi", "mla", "sliding-window", "sliding-window-materialized", "chunked", "moe",
            "moe-shared", "aft-simple", "aft-full", "aft-local", "aft-conv", "block-sandwich", "block-parallel",
            "block-parallel-shared-norm", "sinks-dense", "sinks-flash", "sinks-sliding-window"]


def ci(name: str):
    return load_spec(str(CI / f"{name}.yaml"))


def with_prompt(spec, prompt: int):
    moe = ["model.moe.capacity_factor=null"] if spec.model.moe else []
    return with_overrides(spec, [f"training.seq_len={prompt}", *moe])


# ---------------------------------------------------------------------------------------------- the cache
@pytest.mark.parametrize("name", DECODING)
def test_decoding_with_the_cache_gives_the_logits_of_a_full_forward_pass(name):
    # Prompt 44 tokens, then 20 decoded: past every window (40, and aft-conv's 24 taps), so rolling buffers
    # wrap and AFT's running sums take the tokens that leave the band.
    prompt, total = 44, 64
    spec = ci(name)
    torch.manual_seed(0)
    model = build_model(with_prompt(spec, prompt), dtype=torch.float32)
    with torch.no_grad():       # weights large enough that attention is far from uniform
        for pname, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.5 if pname.endswith((".w", "kernel")) else 0.1)
    full = build_model(with_prompt(spec, total), dtype=torch.float32)
    full.load_state_dict(model.state_dict())
    ids = torch.randint(0, spec.model.vocab_size, (2, total))
    cache = generate.new_cache(with_prompt(spec, prompt), total, batch=2, dtype=torch.float32)
    with torch.no_grad():
        expected = full(ids)[:, prompt - 1:]
        steps = [model(ids[:, :prompt], cache)] + [model(ids[:, t:t + 1], cache) for t in range(prompt, total)]
    got = torch.cat(steps, dim=1)
    assert got.shape == expected.shape
    assert cache.length == total
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_generate_decodes_greedily_from_the_cache():
    spec = with_prompt(ci("flash"), 8)
    model = build_model(spec, dtype=torch.float32)
    cache = generate.new_cache(spec, 12, dtype=torch.float32)
    logits = generate.generate(model, torch.zeros(1, 8, dtype=torch.long), 4, cache)
    assert len(logits) == 5 and cache.length == 12
    assert logits[0].shape == (1, spec.model.vocab_size)


def test_a_filled_cache_takes_one_token_at_a_time_and_no_more_than_max_seq_len():
    spec = with_prompt(ci("flash"), 8)
    model = build_model(spec, dtype=torch.float32)
    cache = generate.new_cache(spec, 16, dtype=torch.float32)
    model(torch.zeros(1, 8, dtype=torch.long), cache)
    with pytest.raises(CostplanError, match="one token at a time"):
        model(torch.zeros(1, 2, dtype=torch.long), cache)
    with pytest.raises(CostplanError, match="max_seq_len"):
        generate.new_cache(spec, spec.model.max_seq_len + 1)


def test_every_attention_type_has_a_cache_or_says_why_not():
    assert set(generate.CACHES) == set(ATTENTION_TYPES)
    spec = ci("sparse-strided")
    assert "sparse attention cannot decode" in generate.decode_unsupported(spec)
    with pytest.raises(CostplanError, match="sparse"):
        generate.new_cache(spec, 16)


# Hand counts, bf16 (2 bytes), 2 layers, 128 tokens: K and V per KV head; a 40-token window; MLA's latent
# (64) and rope key (16); AFT-simple's two running sums of width 256, whatever the length.
@pytest.mark.parametrize("name, expected", [
    ("flash", 2 * 2 * 2 * 64 * 128 * 2),
    ("sliding-window", 2 * 2 * 2 * 64 * 40 * 2),
    # three chunked layers holding one 48-token chunk each, and a global layer holding all 128 tokens
    ("chunked", 2 * 2 * 64 * (3 * 48 + 128) * 2),
    ("mla", 2 * (64 + 16) * 128 * 2),
    ("aft-simple", 2 * 2 * 256 * 2),
    # AFT-local: K and V of its 40-token band plus the two running sums of the 88 tokens that left it
    ("aft-local", 2 * (2 * 256 * 40 + 2 * 256) * 2),
])
def test_cache_bytes_by_hand(name, expected):
    spec = with_prompt(ci(name), 96)
    cache = generate.new_cache(spec, 128)
    model = build_model(spec, dtype=torch.float32)
    generate.generate(model, torch.zeros(1, 96, dtype=torch.long), 32, cache)
    assert cache.nbytes == expected


# ---------------------------------------------------------------------------------------------- quantized weights
@pytest.mark.parametrize("fmt, bound", [("bf16", 2**-8), ("fp8", 2**-3), ("int8", 1 / 254), ("int4", 1 / 14)])
def test_quantized_matrices_round_trip_within_half_a_step(fmt, bound):
    torch.manual_seed(0)
    w = torch.randn(48, 256)
    back = quantize.dequantize(quantize.quantize(w, fmt, 64), fmt, 64)
    # Relative to each scale's range: half a quantization step (bf16 and fp8: relative to the value).
    reference = w.abs() if fmt in ("bf16", "fp8") else w.abs().amax(1, keepdim=True) * (1 + 2**-10)
    assert ((back - w).abs() <= bound * reference + 1e-6).all()


def test_int4_packs_two_weights_a_byte_with_a_scale_per_group():
    stored = quantize.quantize(torch.randn(8, 256), "int4", 64)
    assert stored["values"].dtype == torch.uint8 and stored["values"].shape == (8, 128)
    assert stored["scale"].shape == (8, 4) and stored["scale"].element_size() == 2
    with pytest.raises(CostplanError, match="groups of 96"):
        quantize.quantize(torch.randn(8, 256), "int4", 96)


def test_weight_bytes_by_hand_for_int8():
    # ci-flash: per layer q (256→256), k, v (256→128), o (256→256), gate, up (256→640), down (640→256):
    # 1 byte each plus a 2-byte scale per output row; embedding, head (256×256 each) and norms stay bf16.
    spec = ci("flash")
    matrices = 2 * (256 * 256 * 2 + 256 * 128 * 2 + 256 * 640 * 3)
    rows = 2 * (256 + 128 + 128 + 256 + 640 + 640 + 256)
    rest = 2 * 256 * 256 + 256 * (2 * 2 + 1)
    model = build_model(spec, dtype=torch.float32)
    assert quantize.stored_bytes(model, "int8") == matrices + 2 * rows + 2 * rest


def test_int4_group_is_the_largest_power_of_two_dividing_every_matrix():
    assert quantize.group_size_for(build_model(ci("moe"), device="meta")) == 64       # experts' 320 inputs
    assert quantize.group_size_for(build_model(ci("flash"), device="meta")) == 128


# ---------------------------------------------------------------------------------------------- against costs/serving
@pytest.mark.parametrize("name", ["dense", "flash", "alibi", "sliding-window", "moe", "moe-shared", "aft-simple",
                                  "aft-full", "aft-local", "aft-conv", "mla", "block-sandwich", "block-parallel",
                                  "block-parallel-shared-norm", "sinks-dense", "sinks-flash", "chunked"])
# (block-parallel and block-parallel-shared-norm have LM-head biases; chunked decodes at context 111, serve's mean of
# the 31 steps' cached tokens, its new token in the third 48-token chunk: its 15 cached keys and itself, not a
# chunk's average query)
def test_measured_serving_quantities_agree_exactly_with_the_analytic_model(name):
    spec = ci(name)
    m = measure_serve(spec, CPU, time=False)
    s = served(spec)
    # the reference model's cache after a generation of 96 prompt and 32 output tokens: 127 (the last never fed)
    assert m.kv_bytes == serving.kv_cache_bytes(s, 127, m.kv_format)
    if name not in ("sliding-window", "aft-local"):      # windows: see the test below
        assert m.prefill_flops == serving.prefill_flops(s, m.prompt)
    statuses = {c.item.split(",")[0]: c.status for c in serve_checks(m)}
    assert statuses.pop("decode FLOPs") == "ok"
    assert statuses.pop("decode step time at context 111") == "skip"
    assert set(statuses.values()) == {"ok"}
    for fmt in serving.WEIGHT_FORMATS:
        assert m.weight_bytes[fmt] == serving.weight_bytes(s, fmt, m.group_size)
    assert m.decode_flops == serving.decode_flops(s, m.context)


def test_fp8_kv_cache_is_half_the_bf16_one():
    spec = with_overrides(ci("flash"), ["serving.kv_cache=fp8"])
    m = measure_serve(spec, CPU, time=False)
    assert m.kv_bytes == serving.kv_cache_bytes(served(spec), 127, "fp8") == 2 * 2 * 2 * 64 * 127


@pytest.mark.parametrize("output", [1, 2, 3])
def test_the_cache_ends_one_token_short_of_the_generation(output):
    # The prefill samples the first output token and each decode step the next, so after o output tokens the
    # cache holds the prompt and o − 1 of them; one output token leaves just the prompt's. What the reference
    # model holds is what serve sizes a sequence at, and its decode FLOPs are counted at the steps' mean cached
    # tokens: o = 2 feeds position 100 alone, o = 3 positions 100 and 101 (100.5, taken as 101).
    spec = with_overrides(ci("flash"), ["serving.prompt_tokens=100", f"serving.output_tokens={output}"])
    m = measure_serve(spec, CPU, time=False)
    est = inference.serve(spec)
    assert m.kv_bytes == est.memory.kv_cache_per_sequence == 2 * 2 * 2 * 64 * 2 * (99 + output)
    assert est.memory.kv_cache_tokens == 99 + output
    assert m.decode_flops == serving.decode_flops(served(spec), {1: 100, 2: 100, 3: 101}[output])


def test_a_prefill_longer_than_a_window_is_compared_as_its_tiles_execute():
    # A 120-token prompt, 40-token windows: the kernel computes whole 40×40 tiles, more than the window's pairs.
    spec = with_overrides(ci("sliding-window"), ["serving.prompt_tokens=120", "serving.output_tokens=8"])
    m = measure_serve(spec, CPU, time=False)
    prefill = next(c for c in serve_checks(m) if c.item.startswith("prefill"))
    assert prefill.status == "ok"
    assert m.prefill_flops > serving.prefill_flops(served(spec), 120)
    assert [label for label, _ in prefill.figures] == ["model FLOPs (keys a query may see)"]
    assert dict(prefill.figures)["model FLOPs (keys a query may see)"] == serving.prefill_flops(served(spec), 120)


# ---------------------------------------------------------------------------------------------- the commands
def test_profile_serve_rows(run):
    r = run("profile", "--serve", str(CI / "flash.yaml"), str(CI / "sparse-strided.yaml"), "--no-time",
            "--format", "json")
    assert r.exit_code == 0, r.output
    flash, sparse = json.loads(r.stdout)
    items = [c["item"] for c in flash["checks"]]
    assert items == ["KV cache, one sequence of 127 tokens (bf16)", "prefill FLOPs, 96-token prompt (FlopCounterMode)",
                     "decode FLOPs, one token at context 111", "weights stored as bf16", "weights stored as fp8",
                     "weights stored as int8", "weights stored as int4", "decode step time at context 111, batch 1"]
    assert [c["status"] for c in flash["checks"]] == ["ok"] * 7 + ["skip"]
    assert all(isinstance(c["measured"], int) for c in flash["checks"][:7])
    # Sparse patterns: weights measured, the decode rows say why there is nothing to measure.
    assert [c["status"] for c in sparse["checks"][:3]] == ["skip"] * 3
    assert "cannot decode incrementally" in sparse["checks"][2]["note"]


def test_check_serve_exit_status(run, monkeypatch):
    ok = run("check", "--serve", str(CI / "flash.yaml"), "--no-time")
    assert ok.exit_code == 0, ok.output
    assert "serving estimate vs cpu" in ok.stdout
    # MLA decodes in latent space in the reference model and in the estimate alike.
    assert run("check", "--serve", str(CI / "mla.yaml"), "--no-time").exit_code == 0
    # A formula that forgets the absorbed form fails the decode row, naming it.
    from costplan.costs import serving as analytic
    monkeypatch.setattr(analytic, "_latent_decode", lambda parts, keys: 0)
    failed = run("check", "--serve", str(CI / "mla.yaml"), "--no-time")
    assert failed.exit_code == 1
    assert "FAIL ci-mla: decode FLOPs" in failed.stderr


def test_decode_time_is_bytes_at_the_paired_read_rate_plus_each_kernels_fixed_cost():
    # Matrix-vector products timed between the steps read 15 GB/s: 600 MB a step take 40 ms, whatever the
    # hardware file's figures. Where the file measures a fixed cost per kernel (25 µs), each kernel ci-flash's
    # decode step launches adds it: per layer a norm before attention and one before the MLP, the q, k, v and o
    # projections, rotary on q and k, the attention kernel, two residual adds, the SwiGLU's three GEMMs and its
    # activation (15), twice, plus the embedding lookup, the final norm and the LM head: 33 kernels, 0.825 ms.
    from types import SimpleNamespace

    from costplan.profiling.compare import _decode_time_check

    def check(curves, calibrated_on="cpu: here", device_name="cpu: here"):
        gpu = SimpleNamespace(memory_bandwidth_gbs=30.0, curves=lambda: curves, calibrated_on=calibrated_on, key="f",
                              queues_kernels=calibrated_on.startswith("cuda"))
        m = SimpleNamespace(context=112, timing=SimpleNamespace(runs=9, spread=0.1, median=0.041), read_rate=15e9,
                            timed_spec=SimpleNamespace(gpu=gpu, model=ci("flash").model), timed_dtype="float32",
                            time_overrides=[], device_name=device_name, time_note="")
        return _decode_time_check(m, 0.3, lambda spec, context, element: 600e6)

    figure = SimpleNamespace
    fixed = check(SimpleNamespace(weight_read=figure(value=0.8), kernel_seconds=figure(value=25e-6)))
    assert fixed.estimate == pytest.approx(0.040 + 33 * 25e-6) and fixed.status == "ok"
    assert "572.2 MiB read at 15 GB/s" in fixed.note and "the hardware file's 24 GB/s" in fixed.note
    assert "+ 33 kernels × 25 µs" in fixed.note
    # a GPU's host launches the next kernel while the device reads: the longer of the two
    gpu = check(SimpleNamespace(weight_read=figure(value=0.8), kernel_seconds=figure(value=25e-6)), "cuda: here",
                "cuda: here")
    assert gpu.estimate == pytest.approx(0.040) and ", or 33 kernels × 25 µs if longer" in gpu.note
    launch_bound = check(SimpleNamespace(weight_read=figure(value=0.8), kernel_seconds=figure(value=2e-3)),
                         "cuda: here", "cuda: here")
    assert launch_bound.estimate == pytest.approx(33 * 2e-3)
    bare = check(None)
    assert bare.estimate == pytest.approx(0.040) and "kernels" not in bare.note
    elsewhere = check(None, calibrated_on="cpu: another")
    assert elsewhere.status == "skip" and "not calibrated on this device" in elsewhere.note
