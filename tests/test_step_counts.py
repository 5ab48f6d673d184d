"""The step model's count of parameter tensors (what the optimizer updates one at a time, costs/ops.py tensors)
against the reference model's own parameters, counted by torch."""
from __future__ import annotations

from pathlib import Path

import pytest

from costplan.costs import step
from costplan.costs.components import shape_of
from costplan.loading import load_spec

torch = pytest.importorskip("torch")

CI = Path(__file__).parents[1] / "specs" / "ci"
# Exact for these. The others hold a few tensors the step model has no operation for: AFT-full's and -local's
# position biases, attention sinks, ALiBi's learned parts (2 to 14 tensors of 13 to 77).
EXACT = ["dense", "dense-selective", "flash", "moe", "moe-capacity", "moe-shared", "aft-simple",
         "block-parallel", "block-parallel-shared-norm", "block-sandwich", "sliding-window", "sparse-fixed",
         "chunked", "attention-pattern", "mla"]


@pytest.mark.parametrize("name", EXACT)
def test_parameter_tensors_are_the_reference_models(name):
    from costplan.profiling.model import build_model

    spec = load_spec(CI / f"{name}.yaml")
    assert step.stage_counts(spec, shape_of(spec))[1] == len(list(build_model(spec, device="meta").parameters()))


def test_fixed_costs_are_the_tiny_step_less_its_rooflines_over_its_counts(monkeypatch, tmp_path):
    """calibrate.fixed_costs with the tiny step's times given. A GPT-2 layer's step of 2 layers counts 93 kernels
    fused (tests/test_step.py counts them by hand) and 118 as eager PyTorch runs them, as check counts the
    reference model's: per layer autograd's two adds summing the gradients of the normed input that q, k and v
    read, and the explicit core's scale and causal mask each way, its output's copy forward and four layout
    copies backward (9); the loss's cast to fp32 and back; the add summing the tied table's two gradients (torch's
    profiler shows one aten::add of the table's shape a step); and 36 parameter tensors."""
    from costplan import yamlio
    from costplan.costs.run import step_of
    from costplan.profiling import calibrate, fixed_costs

    # the update alone, the whole step, the tiny block loop; the step with flash and no biases without per-op
    # checkpointing and with it
    times = iter([0.004, 0.010, 0.00462, 0.005, 0.009])
    monkeypatch.setattr(calibrate, "median_seconds", lambda *args, **kwargs: next(times))
    c = calibrate.Calibration(device="cpu: test", rates={"fp32": {256: 100e9}, "bf16": {256: 50e9}},
                              bandwidth=20e9, interconnect=None, memory_bytes=2**34, mfu=0.5, mfu_source="test",
                              attention=calibrate.Attention("bf16", {64: {128: 20e9}}, {64: {128: 10e9}},
                                                            {64: {128: 16}}), date="2026-12-03",
                              block_gemm=({4096.0: 1e9}, "test"))
    fixed = calibrate.fixed_costs(c, torch.device("cpu"), "bf16")
    hardware = tmp_path / "calibrated.yaml"
    hardware.write_text(yamlio.dumps(calibrate.hardware_entry(c)))
    tiny = load_spec("gpt2-small", [*fixed_costs.FIXED_STEP, "training.precision=bf16", f"hardware.gpu={hardware}"])
    parts = step_of(tiny, shape_of(tiny)).breakdown
    rooflines = parts["matmul"] + parts["attention"] + parts["memory_bound"]
    assert fixed.kernel == pytest.approx((0.010 - 0.004 - rooflines) / 118)
    assert fixed.update == pytest.approx((0.004 - parts["optimizer"]) / 36)
    assert "118 kernels and 36 parameter tensors" in fixed.source
    # the block loop's 8 tiles: flash 2 + 8 · 29 forward, 10 + 8 · 32 backward; materialising 2 + 8 · 30 and
    # 6 + 8 · 22 (costs/eager.py loop_kernels; the profiler counts them below); less its matmuls at the block_gemm
    # curve (1 GFLOP/s): 8 queries of 2 heads of 8 against 8 keys (the first tile) or 16, 2·2·8·8·keys FLOPs a
    # call, 2 + 5 calls a tile flash and 2 + 4 materialising
    matmuls = 13 * 2 * 2 * 8 * 8 * (8 + 7 * 16) / 1e9
    assert fixed.loop == pytest.approx((0.00462 - matmuls) / 924)
    assert "over the 924 kernels they launch" in fixed.loop_source
    assert fixed.source.startswith("measured by costplan calibrate on cpu: test on 2026-12-03: gpt2-small with")
    # per-op checkpointing: the 4 ms more, less the rerun's rooflines and kernels (at the figures above), over the
    # ops its dispatch mode handles (counted against the mode's own calls below)
    plain, checkpointed = (fixed_costs.tiny_checkpointed("bf16", on, str(hardware)) for on in (False, True))
    (p0, c0), (p1, c1) = ((step_of(s, shape_of(s)).breakdown, step.stage_counts(s, shape_of(s)))
                          for s in (plain, checkpointed))
    reruns = (sum(p1[k] - p0[k] for k in ("matmul", "attention", "memory_bound"))
              + (c1.launched - c0.launched) * fixed.kernel + (c1.looped - c0.looped) * fixed.loop)
    assert c1.dispatched > c1.launched - c0.launched > 0 and c0.dispatched == 0
    assert fixed.checkpoint == pytest.approx((0.009 - 0.005 - reruns) / c1.dispatched)
    assert f"over the {c1.dispatched:g} ops its dispatch mode handles" in fixed.checkpoint_source


# aten ops that launch no kernel of their own (views, metadata, dtype no-ops, wrappers around the op that does)
WRAPPERS = {"aten::view", "aten::as_strided", "aten::transpose", "aten::permute", "aten::t", "aten::unsqueeze",
            "aten::squeeze", "aten::slice", "aten::expand", "aten::_reshape_alias", "aten::alias", "aten::empty",
            "aten::empty_strided", "aten::detach", "aten::select", "aten::empty_like", "aten::reshape",
            "aten::_unsafe_view", "aten::view_as", "aten::resolve_conj", "aten::_conj", "aten::result_type",
            "aten::contiguous", "aten::flatten", "aten::to", "aten::_to_copy", "aten::conv1d", "aten::convolution",
            "aten::_convolution", "aten::as_strided_", "aten::resize_", "aten::new_empty_strided", "aten::lift_fresh",
            "aten::narrow", "aten::promote_types"}
GEMMS = {"aten::linear", "aten::matmul", "aten::mm", "aten::addmm", "aten::bmm"}   # timed as Gemm or a core


def _launched(fn, gemms: bool = False) -> int:
    """Kernels torch's profiler sees `fn` launch, GEMMs apart unless `gemms`: ops that are neither wrappers nor
    inside a counted op or a GEMM."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    count = 0
    for event in prof.events():
        if not event.name.startswith("aten::") or event.name in WRAPPERS or (event.name in GEMMS and not gemms):
            continue
        parent = event.cpu_parent
        while parent is not None and parent.name in WRAPPERS:
            parent = parent.cpu_parent
        count += parent is None or not parent.name.startswith("aten::")
    return count


@pytest.mark.parametrize("attention", [{"type": "aft_simple"}, {"type": "aft_full"},
                                       {"type": "aft_conv", "window": 8}])
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_aft_kernels_are_the_reference_blocks(attention, precision):
    # costs/eager.py derives AFT's elementwise kernels from the reference's operations and autograd's formulas;
    # here torch's profiler counts what the reference block launches, forward and backward
    from types import SimpleNamespace

    from costplan.costs import ops
    from costplan.costs.layers import layers
    from costplan.profiling.aft import AFT

    spec = load_spec({"model": {"vocab_size": 64, "d_model": 64, "n_layers": 1, "n_heads": 4, "max_seq_len": 32,
                                "bias": False, "attention": attention},
                      "training": {"precision": precision, "fusion": "eager"}})
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    block = AFT(spec.model.attention, spec.model, 32, dtype=dtype)
    x = torch.randn(2, 32, 64, dtype=dtype, requires_grad=True)
    pos = SimpleNamespace(future=torch.ones(32, 32, dtype=torch.bool).triu(1))
    forward = _launched(lambda: block(x, pos))
    y = block(x, pos)
    grad = torch.randn_like(y)
    backward = _launched(lambda: torch.autograd.grad(y, [x, *block.parameters()], grad))
    (layer,) = layers(spec.model)
    counted = [ops.kernels(op) for op in ops.attention_ops(layer, spec.model, shape_of(spec))
               if isinstance(op, ops.Stream) or (isinstance(op, ops.Core) and op.conv)]
    assert (sum(f for f, _ in counted), sum(b for _, b in counted)) == (forward, backward)


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm", "nonparametric_layernorm"])
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_norm_kernels_are_the_reference_norms(kind, precision):
    # the reference's RMSNorm is one autograd Function (one node each way) whose steps run inside it on a CPU,
    # unrecorded; LayerNorm is torch's kernel, one each way: the profiler counts what each launches
    from costplan.costs import eager
    from costplan.profiling.modules import norm

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    e = torch.tensor([], dtype=dtype).element_size()
    module = norm(kind, 64, dtype=dtype)
    x = torch.randn(2, 16, 64, dtype=dtype, requires_grad=True)
    forward = _launched(lambda: module(x))
    y = module(x)
    grad = torch.randn_like(y)
    backward = _launched(lambda: torch.autograd.grad(y, [x, *module.parameters()], grad))
    inside = eager.norm_function_kernels(kind, e)
    assert (forward, backward) == (inside if inside != (0, 0) else eager.norm_kernels(kind, e))


def _grads(fn, inputs):
    """Kernels of `fn`'s forward and of its backward to `inputs`, GEMMs included."""
    out = fn()
    grad = torch.randn_like(out)
    return _launched(fn, gemms=True), _launched(lambda: torch.autograd.grad(out, inputs, grad), gemms=True)


LOOPED = [
    ({"type": "sliding_window", "window": 24}, {"n_kv_heads": 2}),
    ({"type": "sliding_window", "window": 20, "kernel": "materialized"},
     {"position": "alibi", "attention_sinks": True}),
    ({"type": "chunked", "chunk": 24}, {}),
    ({"type": "sparse", "pattern": "strided", "block": 8}, {"n_kv_heads": 2, "position": "alibi"}),
    ({"type": "sparse", "pattern": "fixed", "block": 16, "summary": 4, "kernel": "materialized"}, {"n_kv_heads": 2}),
    ({"type": "sparse", "pattern": "fixed", "block": 16, "summary": 4}, {"position": "alibi", "attention_sinks": True}),
    ({"type": "flash"}, {"attention_sinks": True, "n_kv_heads": 1}),
]


@pytest.mark.parametrize("attention,model", LOOPED)
def test_block_loop_kernels_are_the_reference_cores(attention, model):
    # costs/eager.py loop_kernels counts, from the code, what the block-sparse kernel launches; here torch's
    # profiler counts it on the core the reference model builds for the layer, forward and backward
    from costplan.costs import ops
    from costplan.costs.layers import layers
    from costplan.profiling.attention import make_core
    from costplan.profiling.modules import alibi_slopes

    spec = load_spec({"model": {"vocab_size": 64, "d_model": 64, "n_layers": 1, "n_heads": 4, "max_seq_len": 64,
                                "position": "none", **model, "attention": attention},
                      "training": {"fusion": "eager"}})
    m = spec.model
    slopes = torch.tensor(alibi_slopes(m.n_heads)) if m.position == "alibi" else None
    core, _ = make_core(m.attention, m, 64, None, slopes, "cpu")
    q = torch.randn(2, 64, m.n_heads, m.head_dim, dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(2, 64, m.n_kv_heads, m.head_dim, dtype=torch.bfloat16, requires_grad=True) for _ in "kv")
    sinks = torch.ones(m.n_heads, dtype=torch.bfloat16, requires_grad=True) if m.attention_sinks else None
    inputs = [q, k, v] + ([sinks] if sinks is not None else [])
    counted = _grads(lambda: core(q, k, v, None, 0.125, m.n_heads, m.n_kv_heads, sinks), inputs)
    (layer,) = layers(m)
    (looped,) = [ops.looped(op) for op in ops.attention_ops(layer, m, shape_of(spec)) if isinstance(op, ops.Core)]
    assert looped == counted


def test_mla_core_kernels_are_the_reference_loops():
    from costplan.costs import ops
    from costplan.costs.layers import layers
    from costplan.profiling.blocks import block_attention
    from costplan.profiling.mla import LatentAttentionModule

    attention = {"type": "mla", "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16}
    spec = load_spec({"model": {"vocab_size": 64, "d_model": 64, "n_layers": 1, "n_heads": 4, "max_seq_len": 160,
                                "attention": attention}, "training": {"fusion": "eager", "seq_len": 160}})
    module = LatentAttentionModule(spec.model.attention, spec.model, 160)
    q, k = (torch.randn(1, 160, 4, 24, dtype=torch.bfloat16, requires_grad=True) for _ in "qk")
    v = torch.randn(1, 160, 4, 16, dtype=torch.bfloat16, requires_grad=True)
    counted = _grads(lambda: block_attention(q, k, v, module.parts, 0.2, False), [q, k, v])
    (layer,) = layers(spec.model)
    (looped,) = [ops.looped(op) for op in ops.attention_ops(layer, spec.model, shape_of(spec))
                 if isinstance(op, ops.Core)]
    assert looped == counted


@pytest.mark.parametrize("window,seq_len,max_seq_len", [(16, 48, 96), (12, 48, 48), (40, 48, 48), (48, 48, 48),
                                                        (48, 48, 96)])
def test_aft_local_band_kernels_are_the_reference_blocks(window, seq_len, max_seq_len):
    # its tiles: two kernels each forward and eleven backward, less those the whole bias's slices skip
    from types import SimpleNamespace

    from costplan.costs import ops
    from costplan.costs.layers import layers
    from costplan.profiling.aft import AFT

    spec = load_spec({"model": {"vocab_size": 64, "d_model": 64, "n_layers": 1, "n_heads": 4,
                                "max_seq_len": max_seq_len, "bias": False,
                                "attention": {"type": "aft_local", "window": window}},
                      "training": {"fusion": "eager", "seq_len": seq_len}})
    block = AFT(spec.model.attention, spec.model, seq_len, dtype=torch.bfloat16)
    x = torch.randn(2, seq_len, 64, dtype=torch.bfloat16, requires_grad=True)
    future = torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1)
    position = torch.arange(seq_len)
    pos = SimpleNamespace(future=future, outside=future | (position[None, :] <= position[:, None] - window))
    forward, backward = _grads(lambda: block(x, pos), [x, *block.parameters()])
    (layer,) = layers(spec.model)
    counted = [ops.kernels(op) for op in ops.attention_ops(layer, spec.model, shape_of(spec))]
    assert (sum(f for f, _ in counted), sum(b for _, b in counted)) == (forward, backward)


def test_the_tiny_block_loop_launches_the_kernels_it_is_divided_by():
    from costplan.profiling import fixed_costs

    loop = fixed_costs.FixedLoop(torch.device("cpu"), "bf16")
    assert _launched(loop.seconds, gemms=True) == fixed_costs.loop_kernels() == 924


@pytest.mark.parametrize("model,training", [
    ({}, {}), ({"position": "alibi"}, {}), ({"n_kv_heads": 2}, {}), ({"attention_sinks": True}, {}),
    ({}, {"recompute": "selective"}), ({"n_kv_heads": 1, "position": "alibi"}, {"recompute": "selective"}),
    ({"n_kv_heads": 2, "attention_sinks": True, "position": "alibi"}, {"recompute": "selective"}),
    ({"position": "rope"}, {}), ({"position": "rope", "n_kv_heads": 2}, {}),
    ({"position": "rope", "n_kv_heads": 2, "attention": {"type": "flash"}}, {}),
    ({"position": "rope", "attention": {"type": "flash"}}, {"precision": "fp32"}),
    ({"bias": True}, {}), ({"bias": True, "position": "rope", "attention": {"type": "flash"}}, {}),  # bias sums
])
def test_explicit_attention_kernels_are_the_reference_modules(model, training):
    # the whole attention module of the reference (projections, explicit core, its scale, mask and layout copies,
    # rotary by halves, the gradient sums of its input; or SDPA's flash core with grouped K/V heads as they are),
    # forward and backward, against every attention op's kernels
    from costplan.costs import ops
    from costplan.costs.layers import layers
    from costplan.profiling.model import build_model

    spec = load_spec({"model": {"vocab_size": 64, "d_model": 64, "n_layers": 1, "n_heads": 4, "max_seq_len": 64,
                                "bias": False, "attention": {"type": "dense"}} | model,
                      "training": {"fusion": "eager", "seq_len": 64, **training}})
    reference = build_model(spec, device="cpu")
    attention = reference.layers[0].attention
    x = torch.randn(2, 64, 64, dtype=next(attention.parameters()).dtype, requires_grad=True)
    counted = _grads(lambda: attention(x, reference.positions(64)), [x, *attention.parameters()])
    (layer,) = layers(spec.model)
    modelled = [ops.kernels(op) for op in ops.attention_ops(layer, spec.model, shape_of(spec))]
    assert (sum(f for f, _ in modelled), sum(b for _, b in modelled)) == counted


@pytest.mark.parametrize("model", [
    {},                                                                          # GPT-2 style, as calibrate's
    {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "n_kv_heads": 2},   # Llama style, as torchtitan's
])
def test_ops_per_op_checkpointing_dispatches_are_the_reference_layers(monkeypatch, model):
    # torch's selective checkpointing asks its policy about every op of a layer's forward, views included: count
    # those calls in one training step of the reference and compare with the ops the step model says it sees
    import torch.utils.checkpoint as checkpointing

    from costplan.profiling import model as reference
    from costplan.profiling.step import Trainer, batch

    calls = []
    contexts = checkpointing.create_selective_checkpoint_contexts

    def counting(policy, *args, **kwargs):
        def counted(ctx, func, *a, **k):
            calls.append(ctx.is_recompute)
            return policy(ctx, func, *a, **k)
        return contexts(counted, *args, **kwargs)

    monkeypatch.setattr(reference, "create_selective_checkpoint_contexts", counting)
    spec = load_spec({"model": {"vocab_size": 64, "d_model": 64, "n_layers": 2, "n_heads": 4, "max_seq_len": 32,
                                "bias": False, "attention": {"type": "flash"}, **model},
                      "training": {"fusion": "eager", "seq_len": 32, "micro_batch_size": 1,
                                   "recompute": "selective_op"}})
    trainer = Trainer(reference.build_model(spec, device="cpu"), spec)
    trainer.step(batch(spec, 1, "cpu"))
    assert calls and not any(calls)      # the rerun's mode serves the cache without asking the policy
    assert step.stage_counts(spec, shape_of(spec)).dispatched == len(calls)


@pytest.mark.parametrize("moe, mlp, precision", [
    ({"n_experts": 4, "top_k": 2, "d_ff_expert": 32}, "swiglu", "bf16"),
    ({"n_experts": 4, "top_k": 2, "d_ff_expert": 32}, "gelu", "fp32"),
    ({"n_experts": 8, "top_k": 2, "d_ff_expert": 32, "capacity_factor": 1.25, "n_shared_experts": 2}, "swiglu",
     "bf16"),
    ({"n_experts": 8, "top_k": 2, "d_ff_expert": 32, "capacity_factor": 1.25, "n_shared_experts": 2}, "swiglu",
     "fp32"),
    ({"n_experts": 4, "top_k": 1, "d_ff_expert": 32, "n_shared_experts": 1, "shared_expert_gate": True}, "swiglu",
     "bf16"),
])
def test_moe_kernels_are_the_reference_block(moe, mlp, precision):
    # the reference's mixture of experts with real routing (every expert gets rows), forward and backward to its
    # input and weights, GEMMs included: the router, the dropless or capacity plan, the loop over experts, the
    # combine, the shared expert and its gate, against the layer's MLP ops
    from costplan.costs import ops
    from costplan.costs.layers import layers
    from costplan.profiling.moe import MoE

    spec = load_spec({"model": {"vocab_size": 64, "d_model": 64, "n_layers": 1, "n_heads": 4, "max_seq_len": 64,
                                "bias": False, "mlp": mlp, "moe": moe},
                      "training": {"precision": precision, "fusion": "eager", "seq_len": 64}})
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    torch.manual_seed(0)
    block = MoE(spec.model.moe, spec.model, dtype=dtype)
    x = torch.randn(2, 64, 64, dtype=dtype, requires_grad=True)
    counted = _grads(lambda: block(x), [x, *block.parameters()])
    (layer,) = layers(spec.model)
    modelled = [ops.kernels(op) for op in ops.mlp_ops(layer, spec.model, shape_of(spec))]
    assert (sum(f for f, _ in modelled), sum(b for _, b in modelled)) == counted


@pytest.mark.parametrize("seconds, runs", [(None, 100), (0.0, 20), (1e6, 100)])
def test_the_fixed_costs_take_their_share_of_a_calibrations_budget(monkeypatch, seconds, runs):
    """calibrate gives the fixed costs a tenth of its budget: as many runs of the tiny step as fit, from 20 (a
    median over fewer says little) to 100."""
    from costplan.profiling import calibrate

    asked = []
    monkeypatch.setattr(calibrate, "median_seconds", lambda fn, between, device, n: asked.append(n) or 0.01)
    c = calibrate.Calibration(device="cpu: test", rates={"fp32": {256: 100e9}, "bf16": {256: 50e9}},
                              bandwidth=20e9, interconnect=None, memory_bytes=2**34, mfu=0.5, mfu_source="test",
                              attention=calibrate.Attention("bf16", {64: {128: 20e9}}, {64: {128: 10e9}},
                                                            {64: {128: 16}}), date="2026-12-05")
    fixed = calibrate.fixed_costs(c, torch.device("cpu"), "bf16", seconds)
    assert set(asked) == {runs} and f"median of {runs} runs" in fixed.source
