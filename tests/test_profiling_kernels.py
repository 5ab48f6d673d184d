"""The reference model's own kernels compute what they claim (against plain dense formulas, in fp64), and
the FLOP counters have no holes: the ones torch 2.13 leaves are shown, and filled."""
from __future__ import annotations

import math

import pytest

pytest.importorskip("torch")

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from conftest import make_spec  # noqa: E402
from costplan.profiling import blocks, counters  # noqa: E402
from costplan.profiling.aft import AFT, CausalDepthwiseConv  # noqa: E402
from costplan.profiling.attention import Positions  # noqa: E402
from costplan.profiling.model import build_model  # noqa: E402
from costplan.profiling.modules import RMSNorm  # noqa: E402

torch.manual_seed(0)
F64 = {"dtype": torch.float64}


# ---------------------------------------------------------------------------------------------- attention
def dense_reference(q, k, v, visible, scale):  # noqa: ANN001, ANN201
    """softmax over the visible keys, written densely: (b, s, H, d) in, (b, s, H, d_v) out; a query that
    sees nothing outputs zeros."""
    per_group = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(per_group, 2), v.repeat_interleave(per_group, 2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    scores = scores.masked_fill(~visible, float("-inf"))
    p = torch.softmax(scores, -1).nan_to_num(0.0)
    return torch.einsum("bhqk,bkhd->bqhd", p, v)


def pattern_mask(parts, s, heads):  # noqa: ANN001, ANN201
    visible = torch.zeros(heads, s, s, dtype=torch.bool)
    for part in parts:
        for block in part.blocks:
            q = torch.arange(s)[block.queries][:, None]
            k = (torch.arange(s)[block.keys] if isinstance(block.keys, slice) else block.keys)[None, :]
            ok = (k <= q) & (k > q - block.window if block.window is not None else True)
            rows = q.expand_as(ok)
            cols = k.expand_as(ok)
            visible[part.heads, rows[ok], cols[ok]] = True
    return visible


PATTERNS = {
    "window": lambda s, h: [blocks.Part(slice(0, h), blocks.window_blocks(s, 24))],
    "window-wider-than-tile": lambda s, h: [blocks.Part(slice(0, h), blocks.window_blocks(s, 300))],
    "strided": lambda s, h: [blocks.Part(slice(0, h - h // 2), blocks.window_blocks(s, 8)),
                             blocks.Part(slice(h - h // 2, h), blocks.column_blocks(s, 8))],
    "fixed": lambda s, h: [blocks.Part(slice(0, h - h // 2), blocks.diagonal_blocks(s, 16)),
                           blocks.Part(slice(h - h // 2, h), blocks.summary_block(s, 16, 4, None))],
}


@pytest.mark.parametrize("materialize", [False, True], ids=["flash", "materialized"])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_block_attention_matches_dense_masked_attention(pattern, materialize):
    b, s, heads, groups, d = 2, 150, 4, 2, 8
    q = torch.randn(b, s, heads, d, **F64, requires_grad=True)
    k = torch.randn(b, s, groups, d, **F64, requires_grad=True)
    v = torch.randn(b, s, groups, d, **F64, requires_grad=True)
    parts = PATTERNS[pattern](s, heads)
    out = blocks.BlockAttention.apply(q, k, v, parts, 0.3, materialize, None)
    ref = dense_reference(q, k, v, pattern_mask(parts, s, heads), 0.3)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), grad)
    want = torch.autograd.grad(ref, (q, k, v), grad)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e)


def sink_reference(q, k, v, visible, scale, sinks):  # noqa: ANN001, ANN201
    """transformers' GptOssAttention (eager_attention_forward): the sink logit is a last column of each head's
    scores, dropped after the softmax."""
    per_group = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(per_group, 2), v.repeat_interleave(per_group, 2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    scores = scores.masked_fill(~visible, float("-inf"))
    column = sinks.reshape(1, -1, 1, 1).expand(scores.shape[0], -1, scores.shape[2], -1)
    p = torch.softmax(torch.cat([scores, column], dim=-1), -1)[..., :-1]
    return torch.einsum("bhqk,bkhd->bqhd", p, v)


def _sink_inputs(s: int, heads: int = 4, groups: int = 2, d: int = 8):  # noqa: ANN202
    shapes = [(2, s, heads, d), (2, s, groups, d), (2, s, groups, d), (heads,)]
    return [torch.randn(*shape, **F64, requires_grad=True) for shape in shapes]


def _assert_same_values_and_gradients(out, ref, inputs):  # noqa: ANN001
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    for a, e in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(ref, inputs, grad)):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("materialize", [False, True], ids=["flash", "materialized"])
@pytest.mark.parametrize("pattern", ["window", "fixed"])
def test_block_attention_with_sinks_matches_gpt_oss(pattern, materialize):
    s, heads = 150, 4
    q, k, v, sinks = inputs = _sink_inputs(s, heads)
    parts = PATTERNS[pattern](s, heads)
    out = blocks.BlockAttention.apply(q, k, v, parts, 0.3, materialize, None, sinks)
    _assert_same_values_and_gradients(out, sink_reference(q, k, v, pattern_mask(parts, s, heads), 0.3, sinks),
                                      inputs)


@pytest.mark.parametrize("core", ["explicit", "causal-tiles"])
def test_softmax_cores_with_sinks_match_gpt_oss(core):
    from costplan.profiling.attention import explicit_core

    s, heads, groups = 150, 4, 2
    q, k, v, sinks = inputs = _sink_inputs(s, heads, groups)
    future = torch.ones(s, s, dtype=torch.bool).triu(1)
    run = explicit_core if core == "explicit" else blocks.CausalTiles()
    out = run(q, k, v, Positions(None, None, None, future), 0.3, heads, groups, sinks).reshape(q.shape)
    _assert_same_values_and_gradients(out, sink_reference(q, k, v, ~future, 0.3, sinks), inputs)


def test_window_tiles_are_the_pairs_the_analytic_model_counts():
    from costplan.costs.attention.pairs import tile_for, tiled_pairs

    for s in (1, 50, 128, 129, 300):
        for w in (1, 7, 64, 128, 200, 500):
            pairs = sum(len(range(s)[b.queries]) * len(range(s)[b.keys]) for b in blocks.window_blocks(s, w))
            assert pairs == tiled_pairs(s, w, tile_for(w)), (s, w)


def test_rmsnorm_matches_torch():
    x = torch.randn(3, 5, 16, **F64, requires_grad=True)
    norm = RMSNorm(16, **F64)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    out = norm(x)
    ref = F.rms_norm(x, (16,), norm.weight, norm.eps)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    for a, e in zip(torch.autograd.grad(out, (x, norm.weight), grad), torch.autograd.grad(ref, (x, norm.weight), grad)):
        torch.testing.assert_close(a, e)


def test_rmsnorm_saves_input_and_fp32_rstd_only():
    x = torch.randn(4, 8, dtype=torch.bfloat16, requires_grad=True)
    norm = RMSNorm(8, dtype=torch.bfloat16)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append((t.dtype, tuple(t.shape))) or t,
                                                  lambda t: t):
        norm(x)
    assert sorted(saved, key=str) == sorted([(torch.bfloat16, (4, 8)), (torch.float32, (4, 1)),
                                             (torch.bfloat16, (8,))], key=str)


def test_causal_depthwise_conv_matches_padded_conv():
    x = torch.randn(3, 4, 20, **F64, requires_grad=True)
    w = torch.randn(4, 1, 5, **F64, requires_grad=True)
    out = CausalDepthwiseConv.apply(x, w)
    ref = F.conv1d(F.pad(x, (4, 0)), w, groups=4)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    for a, e in zip(torch.autograd.grad(out, (x, w), grad), torch.autograd.grad(ref, (x, w), grad)):
        torch.testing.assert_close(a, e)


# ---------------------------------------------------------------------------------------------- AFT
def aft_module(kind: dict, s: int = 40):
    spec = make_spec({"attention": kind, "max_seq_len": s, "d_model": 32, "n_heads": 4})
    return AFT(spec.model.attention, spec.model, s, **F64), spec


def positions(spec, s):  # noqa: ANN001, ANN201
    future = torch.ones(s, s, dtype=torch.bool).triu(1)
    window = getattr(spec.model.attention, "window", None)
    outside = None
    if window:
        ahead = torch.arange(s)[:, None] - torch.arange(s)[None, :]
        outside = (ahead < 0) | (ahead >= window)
    return Positions(None, None, None, future, outside)


def eq2(module: AFT, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Zhai et al. Eq. 2, causal, written densely: w is the (s × s) position bias actually used."""
    q, k, v = module.q(x), module.k(x), module.v(x)
    s = x.shape[1]
    causal = torch.ones(s, s, dtype=torch.bool).tril()
    weights = torch.exp(k[:, None, :, :] + w[None, :, :, None]) * causal[None, :, :, None]   # (b, t, t', W)
    y = torch.sigmoid(q) * (weights * v[:, None]).sum(2) / weights.sum(2)
    return module.o(y)


@pytest.mark.parametrize("kind", [{"type": "aft_full"}, {"type": "aft_local", "window": 12},
                                  {"type": "aft_conv", "window": 12}, {"type": "aft_simple"}])
def test_aft_follows_equation_2(kind):
    module, spec = aft_module(kind)
    s = 40
    x = torch.randn(2, s, 32, **F64)
    ahead = torch.arange(s)[:, None] - torch.arange(s)[None, :]
    with torch.no_grad():
        if kind["type"] in ("aft_full", "aft_local"):
            module.w.normal_()
        if kind["type"] == "aft_conv":
            module.kernel.normal_()
    if kind["type"] == "aft_full":
        w = module.w[:s, :s]
    elif kind["type"] == "aft_local":       # w inside the band, 0 outside
        w = torch.where((ahead >= 0) & (ahead < 12), module.w[:s, :s], torch.zeros(()))
    elif kind["type"] == "aft_conv":        # per head, w[t − t'] inside the kernel's reach, 0 outside
        w = torch.zeros(s, s, 32, **F64)
        taps = module.kernel.shape[-1]
        for lag in range(taps):
            per_head = module.kernel[:, taps - 1 - lag].repeat_interleave(8)
            w[ahead == lag] = per_head
        q, k, v = module.q(x), module.k(x), module.v(x)
        causal = torch.ones(s, s, dtype=torch.bool).tril()[None, :, :, None]
        weights = torch.exp(k[:, None] + w[None]) * causal
        ref = module.o(torch.sigmoid(q) * (weights * v[:, None]).sum(2) / weights.sum(2))
        torch.testing.assert_close(module(x, positions(spec, s)), ref)
        return
    else:
        w = torch.zeros(s, s, **F64)
    torch.testing.assert_close(module(x, positions(spec, s)), eq2(module, x, w))


# ---------------------------------------------------------------------------------------------- MoE
def moe_spec(**moe):
    return make_spec({"mlp": "swiglu", "d_ff": 48, "moe": {"n_experts": 4, "top_k": 2, **moe}},
                     {"precision": "fp32"})


@pytest.mark.parametrize("moe", [{}, {"capacity_factor": 1.0}, {"n_shared_experts": 1, "shared_expert_gate": True}])
def test_moe_flops_do_not_depend_on_routing(moe):
    # Route every token to the same experts (a zero router, ties broken the same way): the counted FLOPs are
    # those of balanced routing, because every row is computed exactly once (or its buffer slot is).
    from costplan.profiling.step import batch, loss_of

    spec = moe_spec(**moe)
    results = []
    for skewed in (False, True):
        model = build_model(spec)
        if skewed:
            for block in model.layers:
                torch.nn.init.zeros_(block.moe.router.weight)
        ids, targets = batch(spec, 2, "cpu")
        results.append(counters.count_flops(model, lambda: loss_of(model(ids), targets)))
    assert results[0].forward == results[1].forward
    assert results[0].training == results[1].training


def test_moe_matches_a_per_token_loop():
    # out_t = Σ over the top-k experts e of p_e(t) · expert_e(x_t) (+ the shared expert), token by token.
    spec = moe_spec(n_shared_experts=1)
    block = build_model(spec, dtype=torch.float64).layers[0].moe
    x = torch.randn(2, 16, 64, **F64)
    out = block(x)
    probs = torch.softmax(block.router(x), -1)
    expected = block.shared(x).clone()
    top = torch.topk(probs, 2, -1)
    for bi in range(2):
        for t in range(16):
            for weight, e in zip(top.values[bi, t], top.indices[bi, t]):
                expected[bi, t] += weight * block.experts[int(e)](x[bi, t][None])[0]
    torch.testing.assert_close(out, expected)


def _all_tokens_to_experts_0_and_1(spec):  # noqa: ANN001, ANN202
    """The first layer's MoE block on 16 tokens whose router sends every token to experts 0 and 1."""
    block = build_model(spec, dtype=torch.float64).layers[0].moe
    with torch.no_grad():
        block.router.weight.zero_()
        block.router.weight[0] += 1.0
        block.router.weight[1] += 0.5
    x = torch.rand(1, 16, 64, **F64) + 0.1          # positive, so experts 0 and 1 win for every token
    return block(x)


def test_capacity_drops_tokens_past_a_full_buffer():
    # Capacity ⌈0.5 · 16 · 2 / 4⌉ = 4 rows per expert: with every token routed to experts 0 and 1, only the
    # first 4 tokens get through; the rest get nothing from the routed experts.
    out = _all_tokens_to_experts_0_and_1(moe_spec(capacity_factor=0.5))
    assert out[0, :4].abs().sum() > 0
    torch.testing.assert_close(out[0, 4:], torch.zeros(12, 64, **F64))


def test_a_fractional_capacity_keeps_the_partial_slot():
    # 3 experts, capacity ⌈0.5 · 16 · 2 / 3⌉ = ⌈5.33⌉ = 6 rows per expert (5 if rounded down): with every token
    # routed to experts 0 and 1, exactly the first 6 tokens get through.
    out = _all_tokens_to_experts_0_and_1(make_spec({"mlp": "swiglu", "d_ff": 48, "moe": {
        "n_experts": 3, "top_k": 2, "capacity_factor": 0.5}}, {"precision": "fp32"}))
    assert (out[0, :6].abs().sum(-1) > 0).all()
    torch.testing.assert_close(out[0, 6:], torch.zeros(10, 64, **F64))


# ---------------------------------------------------------------------------------------------- counters
def sdpa_step(enable_gqa: bool = False):  # noqa: ANN202
    q = torch.randn(1, 4, 32, 8, requires_grad=True)
    k = torch.randn(1, 2 if enable_gqa else 4, 32, 8, requires_grad=True)
    return lambda: F.scaled_dot_product_attention(q, k, k, is_causal=True, enable_gqa=enable_gqa).sum().backward()


def test_torch_counts_cpu_sdpa_as_zero_and_the_registered_formula_fixes_it():
    with FlopCounterMode(display=False) as stock:
        sdpa_step()()
    assert stock.get_total_flops() == 0                           # the hole, measured on torch 2.13 CPU
    with FlopCounterMode(display=False, custom_mapping=counters.EXTRA_FORMULAS) as fixed:
        sdpa_step(enable_gqa=True)()
    forward = 2 * 4 * 32 * 32 * (8 + 8)                          # QKᵀ and PV, every pair, query heads
    assert fixed.get_total_flops() == forward + 2 * 4 * 32 * 32 * (3 * 8 + 2 * 8)


@pytest.mark.parametrize("kernel, extra", [("flash_attention", ()), ("efficient_attention", (None, True)),
                                           ("cudnn_attention", (None, True))])
def test_gpu_attention_kernels_are_counted_with_grouped_query_heads(kernel, extra):
    # torch 2.11's own formula refuses fewer key than query heads (an AssertionError in a CUDA check of a
    # grouped-query spec); the kernels' meta functions stand in for a GPU here
    q = torch.randn(2, 8, 128, 64, device="meta", dtype=torch.bfloat16)
    kv = torch.randn(2, 2, 128, 64, device="meta", dtype=torch.bfloat16)
    with FlopCounterMode(display=False, custom_mapping=counters.EXTRA_FORMULAS) as counted:
        getattr(torch.ops.aten, f"_scaled_dot_product_{kernel}")(q, kv, kv, *extra)
    assert counted.get_total_flops() == 2 * (2 * 8) * 128 * 128 * (64 + 64)    # QKᵀ and PV, query heads
    backward = getattr(torch.ops.aten, f"_scaled_dot_product_{kernel}_backward")
    # FlashAttention's backward: S = QKᵀ again, dP = dO·Vᵀ, dV = Pᵀ·dO, dQ = dS·K, dK = dSᵀ·Q (2.5 × forward)
    assert counters.EXTRA_FORMULAS[backward] is counters.flash_backward
    assert counters.flash_backward([2, 8, 128, 64], [2, 8, 128, 64], [2, 2, 128, 64], [2, 2, 128, 64]) == \
        2.5 * 2 * (2 * 8) * 128 * 128 * (64 + 64)


def test_torch_overcounts_grouped_convolution_backward():
    x = torch.randn(2, 6, 10, requires_grad=True)
    w = torch.randn(6, 1, 3, requires_grad=True)
    forward = 2 * 2 * 6 * 1 * 8 * 3                               # N · C_out · C_in/groups · positions · taps
    with FlopCounterMode(display=False) as stock:
        F.conv1d(x, w, groups=6).sum().backward()
    with FlopCounterMode(display=False, custom_mapping=counters.EXTRA_FORMULAS) as fixed:
        F.conv1d(x, w, groups=6).sum().backward()
    assert fixed.get_total_flops() == 3 * forward
    assert stock.get_total_flops() == 2 * forward + 6 * forward   # the weight gradient counted 6 × (groups)


def test_grouped_mm_formula():
    # (rows × k) by (groups × k × n): each row meets one group's matrix, however the rows are split.
    assert counters.grouped_mm([10, 8], [3, 8, 6]) == 2 * 10 * 8 * 6
    assert counters.grouped_mm([3, 10, 8], [3, 8, 6]) == 2 * 3 * 10 * 8 * 6


def test_contractions_without_a_formula_are_reported():
    a, b = torch.randn(8, 8, requires_grad=True), torch.randn(8)

    def step():
        loss = torch.mv(a, b).sum() + (a @ a).sum()
        return loss

    model = torch.nn.Linear(1, 1)
    result = counters.count_flops(model, step)
    assert result.ops.uncounted_contractions == {"aten.mv": 1}       # forward; its backward is an outer product
    assert "aten.sum" in result.ops.arithmetic_not_counted
    assert "aten.view" not in result.ops.arithmetic_not_counted


def test_fvcore_counts_multiply_adds_and_is_doubled():
    pytest.importorskip("fvcore")
    model = build_model(make_spec({"attention": "flash"}), device="meta")
    ids = torch.zeros(1, 128, dtype=torch.long, device="meta")
    result = counters.count_fvcore(model, ids)
    # per token and layer: four 64 × 64 projections, QKᵀ and PV over 128 keys, two 64 × 256 MLP matrices;
    # the tied head: 64 × 1000. Two FLOPs per multiply-add.
    per_layer = 4 * 64 * 64 + 2 * 128 * 64 + 2 * 64 * 256
    assert sum(result.forward.values()) == 2 * 128 * (2 * per_layer + 64 * 1000)
    assert math.isclose(result.forward["attention"] / result.forward["mlp"], (4 * 64 + 2 * 128) / (2 * 256))
