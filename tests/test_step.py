"""The step-time model (costs/step.py, costs/ops.py) on a device whose kernel curves are flat, so every part
of a step can be written by hand: FLOPs over (peak × efficiency), bytes over (bandwidth × efficiency)."""
from __future__ import annotations

import glob
import math
import re
from pathlib import Path

import pytest
import yaml

import costplan
from conftest import make_spec
from costplan import hardware, kernels
from costplan.costs import layers, ops
from costplan.costs import step as step_module
from costplan.costs import traffic
from costplan.costs.attention import COST as ATTENTION_COST
from costplan.costs.attention.pairs import causal_pairs
from costplan.costs.device import device
from costplan.costs.estimate import shape_of
from costplan.costs.memory import accumulation_adds

FLAT = {
    "name": "Flat GPU",
    "peak_tflops": {"bf16": 100, "fp8": 200, "fp32": 10},
    "memory_gib": 80, "memory_bandwidth_gbs": 1000, "interconnect_gbs": 200, "node_size": 8, "network_gbs": 20,
    "mfu": 0.5, "usd_per_gpu_hour": 1.0,
    "kernels": {
        "gemm": {"bf16": {"points": [[1, 0.5]], "source": "test"}, "fp8": {"points": [[1, 0.25]], "source": "test"}},
        "attention_forward": {64: {"points": [[1, 0.4]], "source": "test"}},
        "attention_backward": {64: {"points": [[1, 0.2]], "source": "test"}},
        "collective": {"points": [[1, 1.0]], "source": "test"},
        "collective_internode": {"points": [[1, 0.5]], "source": "test"},
    },
}
MEMORY_EFFICIENCY = 0.85      # data/kernels.yaml's default, for a device it does not list
# The H100's OpenXLA GEMM rates were timed in bursts; a training step sustains 755 / 850 of them (H200 MSMF over
# MAMF, stas00/ml-engineering), 0.888 as data/kernels.yaml rounds it.
HOPPER_SUSTAINED = 0.888
# Big enough that every GEMM is compute-bound: d = 1024 (16 heads of 64), GELU d_ff = 4096, 1,024 tokens.
S, D, F, V, L = 1024, 1024, 4096, 1000, 2
MODEL = {"d_model": D, "n_heads": 16, "d_ff": F, "n_layers": L, "vocab_size": V, "max_seq_len": S,
         "attention": {"type": "flash"}}


@pytest.fixture
def flat(tmp_path):
    path = tmp_path / "flat.yaml"
    path.write_text(yaml.safe_dump(FLAT))
    return str(path)


def step(flat, parallelism=None, training=None, count=1, model=None):
    top = {} if parallelism is None else {"parallelism": parallelism}
    spec = make_spec({**MODEL, **(model or {})}, {"tokens": 10**6, **(training or {})},
                     {"gpu": flat, "count": count}, **top)
    return costplan.estimate(spec)


def test_matmuls_attention_and_optimizer_by_hand(flat):
    e = step(flat, {})
    parts = e.time.breakdown
    # per layer: q, k, v, o (4·d² each token), GELU MLP (2·d·f); then the head (d·V); 2 FLOPs per multiply-add
    gemm_forward = 2 * S * (L * (4 * D * D + 2 * D * F) + D * V)
    assert parts["matmul"] == pytest.approx(3 * gemm_forward / (100e12 * 0.5))
    # causal flash core: 4·d FLOPs per computed (query, key) pair; backward 2.5 × forward (Dao 2023 §4.1)
    core = L * 4 * D * causal_pairs(S)
    assert parts["attention"] == pytest.approx(core / (100e12 * 0.4) + 2.5 * core / (100e12 * 0.2))
    # mixed-precision AdamW reads and writes master weights, two moments and the 16-bit weights, reads gradients
    assert parts["optimizer"] == pytest.approx((2 * (12 + 2) + 2) * e.params.total / (1000e9 * MEMORY_EFFICIENCY))
    assert parts["memory_bound"] > 0 and parts["bubble"] == 0
    assert e.time.step_seconds == pytest.approx(sum(parts.values()))
    assert e.time.mfu == pytest.approx(e.flops.training_per_token * S / e.time.step_seconds / 100e12)
    assert e.time.tokens_per_second_per_gpu == pytest.approx(S / e.time.step_seconds)


def burst_timed(tmp_path, sustained=None, attention=False):
    """The flat device whose bf16 GEMM curve (and with `attention` its attention curves) was timed in bursts,
    with a `sustained` share or without."""
    kernels = {**FLAT["kernels"], "gemm": {**FLAT["kernels"]["gemm"],
                                           "bf16": {"points": [[1, 0.5]], "source": "test", "timed": "burst"}}}
    if attention:
        for name in ("attention_forward", "attention_backward"):
            kernels[name] = {64: {**FLAT["kernels"][name][64], "timed": "burst"}}
    if sustained is not None:
        kernels["sustained_share"] = {"value": sustained, "source": "test"}
    path = tmp_path / ("burst-attention.yaml" if attention else "burst.yaml")     # files are read once a path
    path.write_text(yaml.safe_dump({**FLAT, "kernels": kernels}))
    return str(path)


def test_burst_timed_kernels_run_at_the_sustained_share(flat, tmp_path):
    # the by-hand step above with its bf16 GEMMs (0.5 of the peak in bursts) held at 0.8 of that rate, its
    # attention as measured; then its attention curves (0.4 and 0.2) timed in bursts too
    plain, held = step(flat, {}), step(burst_timed(tmp_path, 0.8), {})
    gemm_forward = 2 * S * (L * (4 * D * D + 2 * D * F) + D * V)
    assert held.time.breakdown["matmul"] == pytest.approx(3 * gemm_forward / (100e12 * 0.5 * 0.8))
    assert held.time.breakdown["attention"] == pytest.approx(plain.time.breakdown["attention"])
    both = step(burst_timed(tmp_path, 0.8, attention=True), {})
    core = L * 4 * D * causal_pairs(S)
    assert both.time.breakdown["attention"] == pytest.approx(core / (100e12 * 0.4 * 0.8) +
                                                             2.5 * core / (100e12 * 0.2 * 0.8))
    assert both.time.breakdown["matmul"] == pytest.approx(held.time.breakdown["matmul"])


def test_burst_timed_gemms_without_a_sustained_share_are_an_error(tmp_path, run):
    result = run("estimate", "gpt2-small", "--gpu", burst_timed(tmp_path))
    assert result.exit_code == 2 and result.stderr.startswith("Error:") and "\n" not in result.stderr.strip()
    assert "burst.yaml" in result.stderr and "kernels.sustained_share" in result.stderr


def test_eager_block_loops_run_their_matmuls_at_the_blocks_size(tmp_path):
    # training.fusion eager: a sliding window's core is the reference's loop over blocks, whose matmuls run one
    # block at a time, at the GEMM curve's efficiency for the block's shape, not at the attention curves
    device = {**FLAT, "kernels": {**FLAT["kernels"], "gemm": {"bf16": {"points": [[32, 0.1], [512, 0.5]],
                                                                       "source": "test"}}}}
    path = tmp_path / "steep.yaml"
    path.write_text(yaml.safe_dump(device))
    window = {"attention": {"type": "sliding_window", "window": 64}}
    fused, eager = (step(str(path), {}, training={"fusion": fusion}, model=window) for fusion in ("fused", "eager"))
    # tiles of 64 queries, each the diagonal key tile and the one before (the first alone): 31 tiles of 64 × 64
    pairs = 64 * 64 * (1 + 15 * 2)
    core = L * 4 * D * pairs
    assert fused.time.breakdown["attention"] == pytest.approx(core / (100e12 * 0.4) + 2.5 * core / (100e12 * 0.2))
    # 16 blocks of 64 rows, 124 keys a query on average, head_dim 64, each call batched over the 16 heads (and the
    # one sequence): (16 · 64 · 124 · 64)^(1/3) on the curve, the curves' b·m·n·k of a batched GEMM
    size = (16 * 64 * pairs / S * 64) ** (1 / 3)
    efficiency = 0.1 + (math.log2(size) - 5) / (9 - 5) * 0.4
    assert eager.time.breakdown["attention"] == pytest.approx(3.5 * core / (100e12 * efficiency))


def test_block_loops_run_their_matmuls_at_the_block_gemm_curve_by_call(tmp_path):
    # with a block_gemm curve (calibrate's, by the FLOPs of one call), a block loop's matmuls run at its rate for
    # their call: 16 tiles of 64 queries, 2 products each forward, 5 backward (the flash kernel recomputes the
    # scores); one sequence a step, as the test above
    curve = {"points": [[1e6, 0.01], [1e9, 0.1]], "source": "test"}
    device = {**FLAT, "kernels": {**FLAT["kernels"], "block_gemm": curve}}
    path = tmp_path / "blocks.yaml"
    path.write_text(yaml.safe_dump(device))
    window = {"attention": {"type": "sliding_window", "window": 64}}
    eager = step(str(path), {}, training={"fusion": "eager"}, model=window)
    pairs = 64 * 64 * (1 + 15 * 2)
    forward = 4 * D * pairs         # one layer's

    def seconds(flops: float, calls: int) -> float:
        efficiency = 0.01 + (math.log2(flops / calls) - math.log2(1e6)) / (math.log2(1e9) - math.log2(1e6)) * 0.09
        return flops / (100e12 * efficiency)
    assert eager.time.breakdown["attention"] == pytest.approx(
        L * (seconds(forward, 2 * 16) + seconds(2.5 * forward, 5 * 16)))


@pytest.mark.parametrize("model, training, forward, backward", [
    # bf16, the flash kernel: 12 fp32 passes forward (scale, mask, max, difference, exp, sum, division: 2F, 2F, F,
    # 2F, 2F, F, 2F) and two casts (2 + 4 bytes each); backward 15 F and four casts
    ({}, {}, 12 * 4 + 2 * 6, 15 * 4 + 4 * 6),
    # materialising, with ALiBi (its add, 2F) and sinks (P's row sum backward, F), rerun by selective
    # recomputation: forward 12 F, ALiBi, three casts; backward 11 F and four casts, the sinks', the forward again
    ({"position": "alibi", "attention_sinks": True, "attention": {"type": "sliding_window", "window": 64,
                                                                  "kernel": "materialized"}},
     {"recompute": "selective"}, 12 * 4 + 8 + 3 * 6, 11 * 4 + 4 * 6 + 4 + (12 * 4 + 8 + 3 * 6)),
    ({}, {"precision": "fp32"}, 12 * 4, 15 * 4),            # fp32: the casts are no-ops
])
def test_block_loops_move_their_score_tiles(flat, model, training, forward, backward):
    window = {"attention": {"type": "sliding_window", "window": 64}}
    spec = make_spec({**MODEL, **window, **model}, {"tokens": 10**6, "fusion": "eager", **training},
                     {"gpu": flat, "count": 1})
    streams = [op for op in ops.attention_ops(layers.layers(spec.model)[0], spec.model, shape_of(spec))
               if isinstance(op, ops.Stream)]
    (tiles,) = [op for op in streams if op.kind == "block_tiles"]
    scores = 16 * 64 * 64 * (1 + 15 * 2)        # 16 heads of 31 tiles of 64 × 64 (the tests above)
    assert (tiles.bytes, tiles.backward) == (scores * forward, scores * backward)
    assert not [op for op in streams if op.kind == "softmax"]      # the loop's softmax is among them


def test_fp32_gradients_are_read_in_fp32_by_the_update(flat):
    # the same update, its gradients read as 4 bytes: 2 · (12 + 2) + 4 per parameter
    e = step(flat, {}, training={"fp32_gradients": True})
    assert e.time.breakdown["optimizer"] == pytest.approx(
        (2 * (12 + 2) + 4) * e.params.total / (1000e9 * MEMORY_EFFICIENCY))


def test_materialised_attention_runs_at_the_gemm_rate(flat):
    e = step(flat, {}, model={"attention": {"type": "dense"}})
    # QKᵀ and AV over the whole square, forward and a backward of twice that, as batched GEMMs
    assert e.time.breakdown["attention"] == pytest.approx(3 * L * 4 * D * S * S / (100e12 * 0.5))


def test_aft_conv_runs_at_the_depthwise_convolutions_measured_rates(flat, tmp_path):
    model = {"attention": {"type": "aft_conv", "window": 64}}
    # without figures for it, the convolution is an attention core at the GEMM rate
    conv = L * 2 * 2 * S * 64 * D      # two convolutions, 2 FLOPs per tap of each of the S · D outputs
    assert step(flat, {}, model=model).time.breakdown["attention"] == pytest.approx(3 * conv / (100e12 * 0.5))
    path = tmp_path / "conv.yaml"
    figures = {"depthwise_conv_forward": {"value": 0.01, "source": "test"},
               "depthwise_conv_backward": {"value": 0.004, "source": "test"}}
    path.write_text(yaml.safe_dump({**FLAT, "kernels": {**FLAT["kernels"], **figures}}))
    measured = step(str(path), {}, model=model).time.breakdown
    # backward: the input's and the kernel's gradients, each the forward's FLOPs
    assert measured["attention"] == pytest.approx(conv / (100e12 * 0.01) + 2 * conv / (100e12 * 0.004))
    # other attention types keep their rates
    assert step(str(path), {}).time.breakdown["attention"] == step(flat, {}).time.breakdown["attention"]
    # as curves (what calibrate writes), each read at one convolution's FLOPs over the micro-batch (one sequence
    # here): halfway in log2 between a point at half of it and one at twice it
    call = 2 * S * 64 * D
    curves = {"depthwise_conv_forward": {"points": [[call / 2, 0.01], [call * 2, 0.03]], "source": "test"},
              "depthwise_conv_backward": {"points": [[call / 2, 0.002], [call * 2, 0.006]], "source": "test"}}
    by_size = tmp_path / "conv-curves.yaml"
    by_size.write_text(yaml.safe_dump({**FLAT, "kernels": {**FLAT["kernels"], **curves}}))
    assert conv == L * 2 * call
    assert step(str(by_size), {}, model=model).time.breakdown["attention"] == pytest.approx(
        conv / (100e12 * 0.02) + 2 * conv / (100e12 * 0.004))


def test_full_recompute_runs_the_forward_again(flat):
    none, full = step(flat, {}), step(flat, {}, {"recompute": "full"})
    # the blocks' GEMMs run 4 times instead of 3; the head is not recomputed
    blocks = 2 * S * L * (4 * D * D + 2 * D * F)
    assert full.time.breakdown["matmul"] - none.time.breakdown["matmul"] == pytest.approx(blocks / 50e12)
    assert full.time.hfu > none.time.hfu and full.time.mfu < none.time.mfu


def test_per_op_checkpointing_reruns_alternate_matmuls_and_memory_bound_ops(flat):
    none = step(flat, {}, model={"bias": False})
    op = step(flat, {}, {"recompute": "selective_op"}, model={"bias": False})
    # k and o run again (GELU: the down projection, last, is not), at the flat curve's 50%; every memory-bound
    # op of the layers once more forward; attention not at all
    again = 2 * S * L * (D * D + D * D)
    assert op.time.breakdown["matmul"] - none.time.breakdown["matmul"] == pytest.approx(again / 50e12)
    assert op.time.breakdown["attention"] == none.time.breakdown["attention"]
    assert op.time.breakdown["memory_bound"] > none.time.breakdown["memory_bound"]


def test_fp8_runs_block_gemms_at_the_fp8_rate_and_pays_for_casts(flat):
    bf16, fp8 = step(flat, {}), step(flat, {}, {"precision": "fp8"})
    # fp8 at 200 × 0.25 = bf16's 100 × 0.5: the same GEMM time, but fp8 adds its casts as memory-bound work
    assert fp8.time.breakdown["matmul"] == pytest.approx(bf16.time.breakdown["matmul"])
    assert fp8.time.breakdown["memory_bound"] > bf16.time.breakdown["memory_bound"]
    assert fp8.time.breakdown["attention"] == pytest.approx(bf16.time.breakdown["attention"])


@pytest.mark.parametrize("tn_only", [False, True])
def test_fp8_casts_by_hand(flat, tmp_path, tn_only):
    # Forward each block GEMM casts its input (m × k) and weight (k × n), backward the output's gradient (m × n),
    # 3 bytes an element (read 16 bits, write 8), or 4 where fp8 GEMMs take only the TN layout (Hopper, Ada: the
    # cast writes a transposed copy for the backward's GEMMs too, kernels.fp8_cast_bytes); the head stays 16-bit.
    # Per layer of S tokens: q, k, v, o of d × d and the GELU MLP's d × F and F × d; the rest of the memory-bound
    # work is the same in both precisions.
    if tn_only:
        device = {**FLAT, "kernels": {**FLAT["kernels"], "fp8_cast_bytes": {"value": 4, "source": "test"}}}
        flat = str(tmp_path / "tn.yaml")
        Path(flat).write_text(yaml.safe_dump(device))
    bf16, fp8 = step(flat, {}), step(flat, {}, {"precision": "fp8"})
    shapes = [(D, D)] * 4 + [(D, F), (F, D)]
    forward = sum(S * k + k * n for k, n in shapes)
    backward = sum(S * n for _, n in shapes)
    casts = (4 if tn_only else 3) * L * (forward + backward)
    added = fp8.time.breakdown["memory_bound"] - bf16.time.breakdown["memory_bound"]
    assert added == pytest.approx(casts / (1000e9 * MEMORY_EFFICIENCY))


def test_selective_recomputation_reruns_a_materialised_softmax(flat):
    # A materialising core checkpointed under selective recomputation runs its softmax forward again in backward
    # (Korthikanti et al. 2022 §5): the softmax's forward bytes once more, 2 bytes read and written per score of
    # 16 heads × S² (the explicit core materialises every pair), per layer.
    dense = {"attention": {"type": "dense"}}
    none = step(flat, {}, {"recompute": "none"}, model=dense)
    selective = step(flat, {}, {"recompute": "selective"}, model=dense)
    rerun = L * 2 * 16 * S * S * 2
    added = selective.time.breakdown["memory_bound"] - none.time.breakdown["memory_bound"]
    assert added == pytest.approx(rerun / (1000e9 * MEMORY_EFFICIENCY))


def test_qk_norms_are_timed(flat):
    # Per-head norms of the queries and keys (Qwen 3, OLMo 2): fused, each reads and writes its S × d values
    # forward (q and k: 2·S·2d·2 bytes) and twice that backward, per layer.
    plain, normed = (step(flat, {}, model={"qk_norm": kind, "norm": "rmsnorm"}) for kind in ("none", "head"))
    added = normed.time.breakdown["memory_bound"] - plain.time.breakdown["memory_bound"]
    assert added == pytest.approx(L * 3 * 2 * S * 2 * D * 2 / (1000e9 * MEMORY_EFFICIENCY))


def test_tensor_traffic_exposed_or_hidden_behind_gemms(flat):
    exposed = step(flat, {"tensor": 2}, count=2)
    hidden = step(flat, {"tensor": 2, "tensor_overlap": True}, count=2)
    # 4 all-reduces per layer of the s·h activation, 2(t − 1)/t on the wire, at 100 GB/s each way, bus 1.0
    wire = 4 * 2 * 1 / 2 * S * D * 2 * L
    assert exposed.parallelism.communication_bytes["tensor"] == pytest.approx(wire)
    assert exposed.time.breakdown["communication.tensor"] == pytest.approx(wire / 100e9)
    assert hidden.time.breakdown["communication.tensor"] == 0       # far less than the layer's GEMMs
    assert hidden.time.step_seconds < exposed.time.step_seconds


@pytest.mark.parametrize("block", ["parallel", "parallel_shared_norm"])
def test_a_parallel_layer_reduces_attention_and_mlp_together(flat, block):
    # A parallel layer sums attention's and the MLP's row-parallel partial outputs before one all-reduce (GPT-NeoX's
    # gpt_j_residual, vLLM's Falcon): 2 all-reduces per layer of the s·h activation, one each way.
    e = step(flat, {"tensor": 2}, count=2, model={"block": block})
    wire = 2 * 2 * 1 / 2 * S * D * 2 * L
    assert e.parallelism.communication_bytes["tensor"] == pytest.approx(wire)
    assert e.time.breakdown["communication.tensor"] == pytest.approx(wire / 100e9)


def test_context_parallel_ring_and_memory(flat):
    one, ring = step(flat, {}), step(flat, {"context": 4}, count=4)
    # each layer passes its K and V chunk (2 · s/4 · d 16-bit values) 3 times around the ring of 4: forward,
    # and K/V plus their gradients backward
    chunk = 2 * (S // 4) * D * 2
    assert ring.parallelism.communication_bytes["context"] == pytest.approx(L * 3 * 3 * chunk)
    assert ring.memory.activations == pytest.approx(one.memory.activations / 4, rel=1e-9)
    # a quarter of the queries per GPU: a quarter of every compute part
    for part in ("matmul", "attention"):
        assert ring.time.breakdown[part] == pytest.approx(one.time.breakdown[part] / 4)


@pytest.mark.parametrize("kv_heads, t, heads_passed", [(16, 2, 8), (4, 2, 2), (4, 4, 1)])
def test_a_ring_passes_its_tensor_ranks_key_value_heads(flat, kv_heads, t, heads_passed):
    # Each tensor rank runs its own ring over its own heads (Megatron's ring attention inside the tensor group):
    # its chunk holds n_kv/t key and value heads of 64. Context 2 over t tensor ranks; forward K/V, backward K/V
    # and their gradients.
    e = step(flat, {"tensor": t, "context": 2}, count=2 * t, model={"n_kv_heads": kv_heads},
             training={"global_batch_size": 1})
    chunk = 2 * (S // 2) * heads_passed * 64 * 2
    assert e.parallelism.communication_bytes["context"] == pytest.approx(L * 3 * 1 * chunk)


def test_an_mla_ring_passes_the_cores_keys_and_values():
    # Transformer Engine's ring attention gets the K and V Megatron-Core's MLASelfAttention hands its core: per
    # head, K of qk_nope + qk_rope (32 + 16) and V of v_head_dim (32) values, 4 heads split over 2 tensor ranks;
    # ci-mla's 128 tokens over 2 context ranks, bf16, 3 passes a layer, 2 layers.
    root = Path(__file__).parents[1] / "specs" / "ci" / "mla.yaml"
    spec = costplan.load_spec(str(root), ["hardware.count=4", "parallelism.tensor=2", "parallelism.context=2",
                                          "training.precision=bf16", "training.micro_batch_size=1"])
    e = costplan.estimate(spec)
    chunk = (128 // 2) * 4 // 2 * ((32 + 16) + 32) * 2
    assert e.parallelism.communication_bytes["context"] == pytest.approx(2 * 3 * chunk)


@pytest.mark.parametrize("nodes", [2, 4])
def test_an_all_to_all_across_nodes_runs_at_one_nic_per_gpu(flat, nodes):
    # NCCL's maintainers (NVIDIA/nccl-tests issues #130 and #267): an all-to-all cannot pool a node's NICs; the
    # share of each GPU's message bound for other nodes, (N − 1)/N on N nodes, crosses its own NIC and sets the
    # time, so the algorithm bandwidth is N/(N − 1) × one GPU's network bandwidth (here 10 GB/s each way at the
    # flat device's network bus efficiency 0.5). A ring all-reduce of the same group pools the node's 8 NICs.
    dev = device(hardware.resolve(flat), "bf16")
    n, message = 8 * nodes, 2**30
    seconds = traffic.collective_seconds(dev, (n - 1) / n * message, message, n, pattern=traffic.ALLTOALL)
    assert message / seconds == pytest.approx(nodes / (nodes - 1) * 10e9 * 0.5)
    ring = traffic.collective_seconds(dev, message, message, n)
    assert message / ring == pytest.approx(8 * 10e9 * 0.5)
    # one point-to-point send between nodes: the sender's NIC, whatever its group's span and stride
    point = traffic.collective_seconds(dev, message, message, n, stride=2, pattern=traffic.POINT)
    assert message / point == pytest.approx(10e9 * 0.5)


def test_a_router_routes_its_ranks_own_tokens_under_sequence_parallelism(flat):
    # The router's d × n_experts weight is whole on every tensor rank, and each rank routes its own S/t tokens
    # (Megatron-Core's router runs on the sequence-parallel input, which it requires with tensor parallelism).
    from costplan.costs import step as step_model
    spec = make_spec({**MODEL, **MOE}, {"tokens": 10**6, "global_batch_size": 1}, {"gpu": flat, "count": 2},
                     parallelism={"tensor": 2, "sequence_parallel": True})
    timer = step_model.Timer(spec, step_model.device(spec.gpu, "bf16"), shape_of(spec))
    (router,) = [g for g in ops.mlp_ops(layers.layers(spec.model)[0], spec.model, shape_of(spec))
                 if isinstance(g, ops.Gemm) and g.d_out == 8]
    assert timer.dims(router) == (S / 2, 1, 1)


def test_only_an_all_reduce_passes_the_ring_ceiling_inside_a_node(flat, tmp_path):
    # Hopper's all-reduce curve is NVLink SHARP's, above what other collectives reach inside the node (370 of
    # 450 GB/s, NCCL's maintainer in NVIDIA/nccl-tests issue #212): with a ceiling of 0.6 on the flat device
    # (curve 1.0), tensor traffic without sequence parallelism (all-reduces) runs at the curve, with it
    # (reduce-scatters and all-gathers) at the ceiling; 4 passes of 2(t − 1)/t of S·d 16-bit values a layer.
    device = {**FLAT, "kernels": {**FLAT["kernels"], "ring_ceiling": {"value": 0.6, "source": "test"}}}
    capped = str(tmp_path / "capped.yaml")
    Path(capped).write_text(yaml.safe_dump(device))
    wire = 4 * 2 * 1 / 2 * S * D * 2 * L
    reduced = step(capped, {"tensor": 2}, count=2)
    assert reduced.time.breakdown["communication.tensor"] == pytest.approx(wire / 100e9)
    scattered = step(capped, {"tensor": 2, "sequence_parallel": True}, count=2)
    assert scattered.time.breakdown["communication.tensor"] == pytest.approx(wire / (100e9 * 0.6))


def test_moe_tensor_traffic_is_attention_and_the_expert_tensor_gather(flat):
    # Under tensor parallelism a MoE block without shared experts has no all-reduce of its own: its routed rows
    # come by all-to-all, and tensor traffic is attention's all-reduce of its S·d output, 2·(t − 1)/t of it each
    # way. With expert tensor degree et = 2 the expert tensor group all-gathers the routed rows after the
    # all-to-all and reduce-scatters the outputs, forward and backward (Megatron-Core's all-to-all dispatcher):
    # 2·(et − 1)/et of the gathered et × (S/2 tokens × top_k 2) rows of d 16-bit values each way, expert traffic
    # beside the all-to-alls. Shared experts add the MLP's all-reduce back; full recomputation a third pass of
    # each. 2 layers.
    attention = 2 * (2 * 1 / 2 * S * D * 2)
    gathered = 2 * (S // 2) * 2 * D * 2
    shared = {"moe": {**MOE["moe"], "n_shared_experts": 1}}
    for expert_tensor, model, training, passes, blocks in ((1, MOE, {}, 2, 1), (2, MOE, {}, 2, 1),
                                                           (1, shared, {}, 2, 2), (2, MOE, {"recompute": "full"},
                                                                                   3, 1)):
        count = 4 * expert_tensor            # one micro-batch of one sequence on each of the count/2 data ranks
        e = step(flat, {"tensor": 2, "sequence_parallel": True, "expert": 4, "expert_tensor": expert_tensor},
                 count=count, model=model, training={"global_batch_size": count // 2, **training})
        comm = e.parallelism.communication_bytes
        assert comm["tensor"] == pytest.approx(L * passes / 2 * blocks * attention)
        all_to_all = 2 * passes * 3 / 4 * (2 * S // 2) * D * 2
        gather = passes * (2 * 1 / 2 * gathered) if expert_tensor == 2 else 0
        assert comm["expert"] == pytest.approx(L * (all_to_all + gather))


def test_context_ranks_share_the_weights_with_the_data_ranks(flat):
    # The 4 context ranks hold the same weights and sum their gradients: ZeRO-3 shards over them as over data
    # ranks (Megatron-Core's data-parallel group with context parallelism, torchtitan's dp_shard_cp), and they
    # gather and reduce-scatter as 4 data ranks would: 3 · (3/4)·Ψ·2 bytes per micro-batch
    ring = step(flat, {"context": 4, "zero": 3}, count=4)
    psi = ring.params.total
    assert ring.memory.weights == math.ceil(2 * psi / 4)
    assert ring.memory.optimizer == math.ceil(12 * psi / 4)
    assert ring.parallelism.communication_bytes["data"] == pytest.approx(3 * 3 / 4 * psi * 2)
    # ZeRO 1 over 2 data × 2 context ranks: the gradients' reduce-scatter and the weights' gather
    mixed = step(flat, {"context": 2, "zero": 1}, count=4)
    assert mixed.memory.optimizer == math.ceil(12 * psi / 4)
    assert mixed.parallelism.communication_bytes["data"] == pytest.approx(2 * 3 / 4 * psi * 2)


def test_zero3_exposes_gathers_beyond_the_compute(tmp_path):
    # 16 GPUs span two nodes of a slow network: 8 NICs of 0.1 GB/s each way per node, at bus efficiency 0.5
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump({**FLAT, "network_gbs": 0.2}))
    e = step(str(path), {"zero": 3}, count=16)
    params = e.params.total
    gather = 15 / 16 * params * 2 / (0.8e9 * 0.5)
    assert e.parallelism.communication_seconds["data"] == pytest.approx(3 * gather)
    assert 0 < e.time.breakdown["communication.data"] <= 3 * gather


def test_mfu_override_uses_the_one_figure(flat):
    spec = make_spec(MODEL, {"tokens": 10**6}, {"gpu": flat, "count": 1, "mfu": 0.25})
    e = costplan.estimate(spec)
    assert e.time.step_seconds == pytest.approx(e.flops.training_per_token * S / (100e12 * 0.25))
    assert e.assumptions.time_model == "hardware.mfu"


def test_a_device_without_kernel_tables_is_an_error(tmp_path, run):
    bare = {k: v for k, v in FLAT.items() if k != "kernels"}
    path = tmp_path / "bare.yaml"
    path.write_text(yaml.safe_dump(bare))
    result = run("estimate", "gpt2-small", "--gpu", str(path))
    assert result.exit_code == 2
    assert "no kernel efficiency tables" in result.stderr and "calibrate" in result.stderr
    assert result.stderr.startswith("Error: gpt2-small: hardware.gpu: ")      # which spec asked, with several
    assert run("estimate", "gpt2-small", "--gpu", str(path), "--mfu", "0.4").exit_code == 0


@pytest.mark.parametrize("parallelism, field", [
    ({"virtual_stages": 2}, "parallelism.virtual_stages"),
    ({"pipeline": 2, "virtual_stages": 3}, "parallelism.virtual_stages"),
    ({"context": 3}, "parallelism"),
])
def test_layouts_the_model_cannot_time_are_errors(parallelism, field):
    count = 3 if parallelism.get("context") == 3 else 2
    with pytest.raises(costplan.SpecError, match=field):
        make_spec({"n_layers": 4}, {"global_batch_size": 8}, {"count": count}, parallelism=parallelism)


def test_context_must_split_the_sequence_in_two_chunks_per_rank():
    with pytest.raises(costplan.SpecError, match="parallelism.context"):
        make_spec({"max_seq_len": 100}, None, {"count": 8}, parallelism={"context": 8})


@pytest.mark.parametrize("path", sorted(glob.glob("specs/ci/*.yaml")))
def test_gemm_ops_carry_the_components_model_flops(path):
    # The op list repeats the components' linear() shapes; their FLOPs must agree exactly, layer by layer.
    spec = costplan.load_spec(path)
    model, shape = spec.model, shape_of(spec)
    s = shape.seq_len
    for layer in set(layers.layers(model)):
        found = ops.layer_ops(layer, model, shape)
        costs = layers.layer_cost(layer, model, shape)
        gemms = {key: sum(op.flops for op in lst if isinstance(op, ops.Gemm)) for key, lst in found.items()}
        block = "moe" if layer.moe is not None else "mlp"
        assert gemms[block] == (costs[block].hw_fwd if layer.moe is not None else costs[block].flops)
        attention = ATTENTION_COST[layer.attention.type](layer.attention, model, shape)
        a = layer.attention
        if a.type == "mla":
            d_qk, d_v = a.qk_nope_head_dim + a.qk_rope_head_dim, a.v_head_dim
            core = 2 * model.n_heads * s * s * (d_qk + d_v)          # every key of the square (convention 3)
            assert gemms["attention"] == attention.flops - core
        elif a.type in ("dense", "flash"):
            assert gemms["attention"] == 2 * s * model.d_model * 2 * (model.q_width + model.kv_width)
        assert all(op.flops >= 0 and op.backward >= 0 for op in found["attention"] if isinstance(op, ops.Core))


@pytest.mark.parametrize("block, norms, residual", [
    ("sequential", 2, 2 * 3),        # two adds, each reading two tensors and writing one
    ("sandwich", 4, 2 * 3),
    ("parallel", 2, 4),              # x + attention + MLP: read three, write one
    ("parallel_shared_norm", 1, 4),
])
def test_norm_and_residual_bytes_by_block(block, norms, residual):
    spec = make_spec({"block": block})
    model, shape = spec.model, shape_of(spec)
    wide = shape.seq_len * model.d_model * shape.act_bytes
    found = {op.kind: op.bytes for op in ops.norm_ops(model, shape)}
    assert found == {"norm": norms * 2 * wide, "residual": residual * wide}


def test_curves_read_linearly_in_log_size_and_hold_flat_beyond_their_ends():
    curve = kernels.Curve(points=[(512, 0.4), (4096, 0.8)], source="test")
    # 4096 is three doublings past 512: halfway in log2 size (about 1448) is halfway in value
    assert curve.at(512 * 2 ** 1.5) == pytest.approx(0.6)
    assert curve.at(1024) == pytest.approx(0.4 + 0.4 / 3)
    assert (curve.at(1), curve.at(10**9)) == (0.4, 0.8)
    with pytest.raises(ValueError, match="ascending"):
        kernels.Curve(points=[(4096, 0.8), (512, 0.4)], source="test")


def test_attention_kernel_choice(run):
    # FlashAttention-2 on Hopper runs well below FlashAttention-3 (Shah et al. 2024, Figure 5): a slower step
    fa3 = costplan.estimate(costplan.load_spec("llama3-8b", ["hardware.gpu=h100-sxm", "hardware.count=1"]))
    fa2 = costplan.estimate(costplan.load_spec("llama3-8b", ["hardware.gpu=h100-sxm", "hardware.count=1",
                                                              "training.attention_kernel=flash2"]))
    assert fa2.time.breakdown["attention"] > 1.5 * fa3.time.breakdown["attention"]
    assert fa2.time.breakdown["matmul"] == pytest.approx(fa3.time.breakdown["matmul"])
    # the A100's tables are FlashAttention-2's: flash3 has none there
    result = run("estimate", "llama3-8b", "--gpu", "a100-80gb", "--gpus", "1", "--set",
                 "training.attention_kernel=flash3")
    assert result.exit_code == 2
    # one line naming the spec, as the other problems of a spec do (it had named none)
    assert result.stderr.splitlines() == ["Error: llama3-8b: training.attention_kernel: hardware a100-80gb has no "
                                          "flash3 attention tables (its curves measure flash2)"]


@pytest.mark.parametrize("gpu, kernel, head_dim, seq_len, tflops, peak", [
    # bar labels of Dao 2023 (FlashAttention-2), Figure 4(d) (A100) and Figure 7(c) (H100): causal fwd+bwd
    ("a100-80gb", "flash1", 128, 8192, 80, 312), ("a100-80gb", "flash1_triton", 128, 2048, 68, 312),
    ("a100-40gb", "flash1_triton", 64, 16384, 80, 312), ("h100-sxm", "flash1", 64, 4096, 138, 989),
])
def test_older_attention_kernels_run_at_their_published_rates(gpu, kernel, head_dim, seq_len, tflops, peak):
    curves = kernels.curves(gpu)
    for backward in (False, True):       # only fwd+bwd is published: both curves carry it
        assert curves.attention(backward, head_dim, kernel).at(seq_len) == pytest.approx(tflops / peak, abs=6e-4)


def test_an_older_attention_kernel_slows_the_step_and_needs_tables(run):
    # the Triton FlashAttention of flash-attn 1.x, at the rates of the Triton kernel that FlashAttention-2's Figure 4(d)
    # measured, runs at 40-50% of FlashAttention-2's rate on an A100
    base = ["hardware.gpu=a100-80gb", "hardware.count=1"]
    fa2 = costplan.estimate(costplan.load_spec("llama3-8b", base))
    triton = costplan.estimate(costplan.load_spec("llama3-8b", [*base, "training.attention_kernel=flash1_triton"]))
    assert 2 < triton.time.breakdown["attention"] / fa2.time.breakdown["attention"] < 2.6
    assert triton.time.breakdown["matmul"] == pytest.approx(fa2.time.breakdown["matmul"])
    result = run("estimate", "llama3-8b", "--gpu", "h200", "--gpus", "1", "--set",
                 "training.attention_kernel=flash1_triton")
    assert result.exit_code == 2
    assert "training.attention_kernel" in result.stderr and "flash1_triton" in result.stderr


# ---------------------------------------------------------------------------------------------- uneven stages
def test_uneven_stages_slice_consecutive_layers_of_a_pattern():
    # 10 layers over 4 stages, first 1 and last 3: the middle two take (10 − 1 − 3) / 2 = 3 each (Megatron-Core's
    # rule). The pattern alternates sliding-window and full attention from layer 0, so stage 1 (layers 1-3) is
    # full, sliding, full.
    pattern = [{"type": "sliding_window", "window": 256}, {"type": "flash"}]
    spec = make_spec({**MODEL, "n_layers": 10, "attention": pattern}, hardware={"count": 4},
                     parallelism={"pipeline": 4, "first_stage_layers": 1, "last_stage_layers": 3})
    stages = layers.pipeline_stages(spec)
    assert stages == (1, 3, 3, 3)
    kinds = [[layer.attention.type for layer in layers.stage_layers(spec.model, i, stages)] for i in range(4)]
    assert kinds == [["sliding_window"], ["flash", "sliding_window", "flash"],
                     ["sliding_window", "flash", "sliding_window"], ["flash", "sliding_window", "flash"]]
    # the embedding and the loss each counted as a layer: 12 over 4, so 2, 3, 3, 2
    counted = make_spec({**MODEL, "n_layers": 10}, hardware={"count": 4},
                        parallelism={"pipeline": 4, "account_for_embedding": True, "account_for_loss": True})
    assert layers.pipeline_stages(counted) == (2, 3, 3, 2)
    # an even split stays the count of stages
    assert layers.pipeline_stages(make_spec({"n_layers": 8}, hardware={"count": 4},
                                            parallelism={"pipeline": 4})) == 4


def test_stage_layers_give_each_stage_its_depth(flat):
    # parallelism.stage_layers: torchtitan's split of 10 layers over 4 ranks interleaved twice (8 stages of 1, 2, 2,
    # 1, 1, 1, 1, 1 layers; rank r holds stages r and r + 4: 2, 3, 3, 2), which Megatron-Core's first/last rule
    # cannot say (a rank's layers not a multiple of its chunks); the depths of Megatron's 1/3/3/3 time the same
    given = make_spec({**MODEL, "n_layers": 10}, hardware={"count": 4},
                      parallelism={"pipeline": 4, "stage_layers": [2, 3, 3, 2]})
    assert layers.pipeline_stages(given) == (2, 3, 3, 2)
    ways = ({"stage_layers": [1, 3, 3, 3]}, {"first_stage_layers": 1, "last_stage_layers": 3})
    timed = [step(flat, {"pipeline": 4, "micro_batches": 4, **way}, count=4, model={"n_layers": 10}) for way in ways]
    assert timed[0].time.step_seconds == timed[1].time.step_seconds
    assert timed[0].memory.total_per_gpu == timed[1].memory.total_per_gpu
    interleaved = step(flat, {"pipeline": 4, "micro_batches": 4, "virtual_stages": 2, "stage_layers": [3, 2, 3, 2]},
                       count=4, model={"n_layers": 10})
    assert interleaved.time.breakdown["bubble"] > 0
    with pytest.raises(costplan.SpecError, match="first_stage_layers: 3 is not a multiple of virtual_stages"):
        make_spec({**MODEL, "n_layers": 10}, hardware={"count": 4},
                  parallelism={"pipeline": 4, "virtual_stages": 2, "first_stage_layers": 3, "last_stage_layers": 3})


@pytest.mark.parametrize("given, message", [
    ([2, 3, 3], "3 stages given for pipeline 4"),
    ([2, 3, 3, 3], "2 + 3 + 3 + 3 = 11 layers, not model.n_layers (10)"),
    ([1, 3, 3, 3], "stage 0 holds 1 layer, fewer than virtual_stages (2)"),
])
def test_stage_layers_that_do_not_split_the_model_are_errors(given, message):
    with pytest.raises(costplan.SpecError, match=re.escape(f"parallelism.stage_layers: {message}")):
        make_spec({**MODEL, "n_layers": 10}, {"global_batch_size": 8}, {"count": 4},
                  parallelism={"pipeline": 4, "virtual_stages": 2, "stage_layers": given})
    with pytest.raises(costplan.SpecError, match="parallelism.stage_layers: set with first_stage_layers"):
        make_spec({**MODEL, "n_layers": 10}, hardware={"count": 4},
                  parallelism={"pipeline": 4, "first_stage_layers": 1, "stage_layers": [1, 3, 3, 3]})


def test_uneven_stages_hold_their_own_parameters():
    from costplan.costs.parallel import stage_memories
    from costplan.costs.run import stages_of

    spec = make_spec({**MODEL, "n_layers": 10}, hardware={"count": 4},
                     parallelism={"pipeline": 4, "first_stage_layers": 1, "last_stage_layers": 3, "micro_batches": 4})
    # one GPT-2 layer with biases: q, k, v, o (4d² + 4d), the GELU MLP (2df + f + d), two layernorms (4d)
    layer = 4 * D * D + 2 * D * F + 9 * D + F
    memories = stage_memories(spec, stages_of(spec, shape_of(spec)))
    params = [m.params for m in memories]
    # the first stage: the token and learned position embeddings and one layer; the last: three layers, the final
    # norm and its own copy of the tied embedding for the head (Megatron's shared word embeddings)
    assert params == pytest.approx([V * D + S * D + layer, 3 * layer, 3 * layer, 3 * layer + 2 * D + V * D])
    # under 1F1B stage i holds min(m, p − i) micro-batches: the two middle stages have the same three layers and
    # hold 3 and 2, so 3/2 the activations; the first holds 4 of its single layer (and the embedding's few)
    activations = [m.activations for m in memories]
    assert activations[1] == pytest.approx(1.5 * activations[2], rel=1e-6)
    assert activations[0] < activations[2] < activations[1]


@pytest.mark.parametrize("first, last, slowest_layers, head", [
    (4, 2, 4, False),    # 4, 2, 2, 2: the first stage's four layers (its embedding is a lookup, no GEMM)
    (1, 3, 3, True),     # 1, 3, 3, 3: the last stage, three layers and the head
])
def test_the_slowest_uneven_stage_paces_the_pipeline(flat, first, last, slowest_layers, head):
    m = 2
    e = step(flat, {"pipeline": 4, "first_stage_layers": first, "last_stage_layers": last, "micro_batches": m},
             count=4, model={"n_layers": 10})
    parts = e.time.breakdown
    # every micro-batch waits for the slowest stage: its GEMMs, forward and twice that backward, m times
    gemm_forward = 2 * S * (slowest_layers * (4 * D * D + 2 * D * F) + (D * V if head else 0))
    assert parts["matmul"] == pytest.approx(m * 3 * gemm_forward / (100e12 * 0.5))
    # 1F1B idles (p − 1) of the slowest stage's micro-batch times
    per_micro_batch = sum(parts[key] for key in ("matmul", "attention", "memory_bound")) / m
    assert parts["bubble"] == pytest.approx(3 * per_micro_batch)


def shared(tmp_path, share, **fields):
    """The flat device whose collectives hold `share` of its SMs while they run."""
    path = tmp_path / f"shared-{share}.yaml"
    device = {**FLAT, **fields}
    device["kernels"] = {**FLAT["kernels"], "overlap_sm_share": {"value": share, "source": "test"}}
    path.write_text(yaml.safe_dump(device))
    return str(path)


@pytest.mark.parametrize("comm, compute, expected", [
    (1.0, 4.0, 0.25),   # hidden: the compute runs at 3/4 for the collective's 1 s, so 0.25 s later
    (1.0, 0.9, 0.15),   # 0.9 s of work at 3/4 for 1 s (0.75 done) then 0.15 s at full rate: 1.15 s, 0.1 beyond
    (2.0, 1.0, 0.0),    # the compute ends at 4/3 s under the 2 s collective: only its excess shows
    (1.0, 0.0, 0.0),    # exposed traffic slows no compute
])
def test_overlap_slowdown_by_hand(comm, compute, expected):
    assert traffic.overlap_slowdown(comm, compute, 0.25) == pytest.approx(expected)


def test_hidden_tensor_traffic_slows_the_gemms_by_the_sm_share(flat, tmp_path):
    layout = {"tensor": 2, "tensor_overlap": True}
    full, slowed = step(flat, layout, count=2), step(shared(tmp_path, 0.25), layout, count=2)
    wire = 4 * 2 * 1 / 2 * S * D * 2 * L        # as above: 4 all-reduces per layer, at 100 GB/s each way
    # far less than the layer's GEMMs, so hidden, but the GEMMs lose a quarter of the SMs for all of it
    assert slowed.time.breakdown["communication.tensor"] == 0
    assert slowed.time.breakdown["overlap.tensor"] == pytest.approx(0.25 * wire / 100e9)
    assert slowed.time.step_seconds - full.time.step_seconds == pytest.approx(0.25 * wire / 100e9)
    assert "overlap.tensor" not in full.time.breakdown
    # exposed tensor traffic overlaps nothing: unchanged by the share
    assert step(shared(tmp_path, 0.25), {"tensor": 2}, count=2).time.step_seconds == pytest.approx(
        step(flat, {"tensor": 2}, count=2).time.step_seconds)


def test_zero3_gathers_far_beyond_the_compute_are_not_slowed_further(tmp_path):
    # the slow network of test_zero3_exposes_gathers_beyond_the_compute: the compute ends under the gathers
    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump({**FLAT, "network_gbs": 0.2}))
    plain = step(str(slow), {"zero": 3}, count=16)
    slowed = step(shared(tmp_path, 0.25, network_gbs=0.2), {"zero": 3}, count=16)
    assert slowed.time.step_seconds == pytest.approx(plain.time.step_seconds)
    assert "overlap.data" not in slowed.time.breakdown


def test_mfu_override_ignores_the_sm_share(tmp_path):
    spec = make_spec(MODEL, {"tokens": 10**6}, {"gpu": shared(tmp_path, 0.25), "count": 8, "mfu": 0.25},
                     parallelism={"zero": 3})
    e = costplan.estimate(spec)
    assert e.time.step_seconds == pytest.approx(e.flops.training_per_token * S / (100e12 * 0.25))


def test_an_sm_share_of_one_or_more_is_an_error(tmp_path, run):
    result = run("estimate", "gpt2-small", "--gpu", shared(tmp_path, 1.5))
    assert result.exit_code == 2 and result.stderr.startswith("Error:") and "overlap_sm_share" in result.stderr


def _h100_bf16(x):
    """The H100's bf16 curve by hand (data/kernels.yaml: (3251, 0.773), (5161, 0.811), held beyond), linear in
    log2, at the HOPPER_SUSTAINED share of those burst rates."""
    import math
    if x >= 5161:
        return 0.811 * HOPPER_SUSTAINED
    return (0.773 + (0.811 - 0.773) * math.log2(x / 3251) / math.log2(5161 / 3251)) * HOPPER_SUSTAINED


def test_a_layers_routed_experts_are_one_grouped_gemm_read_as_a_batched_gemm_with_its_weights_loaded_first():
    # A layer's 128 experts of 512 rows by 2048 × 768 are one grouped kernel of all their FLOPs, read on the curve
    # as a batched GEMM of the kernel's volume, (128·512·2048·768)^(1/3) = 4,711, not at one expert's 930; its
    # weights' bytes (bf16, at the step's memory rate: 3.35 TB/s × 0.84) add to the larger of its compute and its
    # rows' bytes (ops.gemm_time).
    from costplan.costs import step as step_model
    from costplan.costs.components import shape_of
    spec = make_spec(hardware={"gpu": "h100-sxm"}, training={"tokens": 10**6, "micro_batch_size": 1})
    timer = step_model.Timer(spec, step_model.device(spec.gpu, "bf16"), shape_of(spec))
    size = (128 * 512 * 2048 * 768) ** (1 / 3)
    compute = 2 * 512 * 2048 * 768 * 128 / (989e12 * _h100_bf16(size))
    rate = 3.35e12 * 0.84
    weights, rows = 2048 * 768 * 128 * 2 / rate, 512 * (2048 + 768) * 128 * 2 / rate
    seconds, _, _ = timer.gemm(ops.Gemm(512, 2048, 768, count=128, expert=True))
    assert compute > rows and seconds == pytest.approx(weights + compute, rel=1e-12)
    # the same matrices as one dense GEMM keep the roofline: the larger of compute and all bytes
    dense = ops.Gemm(512, 2048, 768 * 128)
    assert timer.gemm(dense)[0] == pytest.approx(
        max(2 * 512 * 2048 * 768 * 128 / (989e12 * _h100_bf16((512 * 2048 * 768 * 128) ** (1 / 3))),
            weights + 512 * (2048 + 768 * 128) * 2 / rate), rel=1e-12)


def test_the_reference_models_expert_loop_is_one_gemm_an_expert():
    # training.fusion eager times the step as the reference model runs it (profile, check): a Python loop over the
    # experts (profiling/moe.py), each GEMM at its own (512·2048·768)^(1/3) = 930 on the H100's bf16 curve,
    # between its points (813, 0.144) and (1024, 0.249), on the roofline
    import math

    from costplan.costs import step as step_model
    from costplan.costs.components import shape_of
    spec = make_spec(hardware={"gpu": "h100-sxm"}, training={"tokens": 10**6, "micro_batch_size": 1,
                                                             "fusion": "eager"})
    timer = step_model.Timer(spec, step_model.device(spec.gpu, "bf16"), shape_of(spec))
    one = (512 * 2048 * 768) ** (1 / 3)
    efficiency = (0.144 + (0.249 - 0.144) * math.log2(one / 813) / math.log2(1024 / 813)) * HOPPER_SUSTAINED
    seconds, _, _ = timer.gemm(ops.Gemm(512, 2048, 768, count=128, expert=True))
    assert seconds == pytest.approx(2 * 512 * 2048 * 768 * 128 / (989e12 * efficiency), rel=1e-12)


def test_expert_gemms_fold_their_rows_and_split_by_the_expert_tensor_degree():
    # t = 2 with sequence parallelism, e = 4 expert ranks of whole experts (et = 1): a sequence sends each expert
    # 512 rows, of which a GPU holds half its tokens' (512/2), and each of its 128/4 experts gathers them from 4
    # ranks: 1,024 rows of a 2048 × 768 matrix it holds whole; its 32 experts are one grouped kernel of
    # (32·1024·2048·768)^(1/3) = 3,718 on the H100's bf16 curve, their weights loaded first.
    from costplan.costs import step as step_model
    from costplan.costs.components import shape_of
    spec = make_spec({"moe": {"n_experts": 128, "top_k": 8, "d_ff_expert": 768}},
                     {"tokens": 10**6, "micro_batch_size": 1}, {"gpu": "h100-sxm", "count": 8},
                     parallelism={"tensor": 2, "sequence_parallel": True, "expert": 4, "expert_tensor": 1})
    timer = step_model.Timer(spec, step_model.device(spec.gpu, "bf16"), shape_of(spec))
    size = (32 * 1024 * 2048 * 768) ** (1 / 3)
    weights = 2048 * 768 * 32 * 2 / (3.35e12 * 0.84)
    seconds, _, _ = timer.gemm(ops.Gemm(512, 2048, 768, count=128, expert=True))
    assert seconds == pytest.approx(weights + 2 * 1024 * 2048 * 768 * 32 / (989e12 * _h100_bf16(size)), rel=1e-12)


MOE = {"moe": {"n_experts": 8, "top_k": 2, "d_ff_expert": 1024}}


@pytest.mark.parametrize("expert_tensor, share", [(None, 1), (1, 1 / 2)])
def test_the_routings_rows_are_moved_where_the_expert_tensor_group_holds_them(flat, expert_tensor, share):
    # t = 2 with sequence parallelism: the dispatch's and combine's rows (4 passes of 2 routed rows a token, d
    # values of 2 bytes) are gathered by the expert tensor group, all of a micro-batch's rows on each GPU when
    # et = t, half of them when et = 1; the router's fp32 probabilities (8 a token, written and read) are split
    parallelism = {"tensor": 2, "sequence_parallel": True, "expert": 4, "expert_tensor": expert_tensor}
    spec = make_spec({**MODEL, **MOE}, {"tokens": 10**6}, {"gpu": flat, "count": 8},
                     parallelism={k: v for k, v in parallelism.items() if v is not None})
    timer = step_module.Timer(spec, step_module.device(spec.gpu, "bf16"), shape_of(spec))
    streams = {op.kind: op for op in ops.mlp_ops(layers.layers(spec.model)[0], spec.model, shape_of(spec))
               if isinstance(op, ops.Stream)}
    rate = 1000e9 * MEMORY_EFFICIENCY
    assert timer.stream(streams["routing"]) == pytest.approx(share * 4 * (2 * S) * D * 2 / rate)
    assert timer.stream(streams["router"]) == pytest.approx(2 * S * 8 * 4 / 2 / rate)


def test_the_update_steps_each_gpus_share_of_the_routed_experts(flat):
    # 8 GPUs, 4 expert ranks, ZeRO-1: the dense parameters' states sharded over 8 ranks, each expert's over the
    # 2 ranks holding it, so each GPU steps 1/8 of every parameter (ZeRO §5 with DeepSpeed-MoE's expert groups)
    e = step(flat, {"expert": 4, "zero": 1}, count=8, model=MOE)
    assert e.time.breakdown["optimizer"] == pytest.approx((2 * (12 + 2) + 2) * e.params.total / 8
                                                          / (1000e9 * MEMORY_EFFICIENCY))


def test_routed_gradients_are_reduced_over_expert_data_ranks_across_nodes(flat):
    # 16 GPUs on two nodes of 8, 4 expert ranks, ZeRO-1: the dense gradients reduce-scatter and the weights gather
    # over all 16 ranks (8 NICs a node: 80 of the 100 GB/s link each way, at the network's bus efficiency 0.5);
    # each GPU's quarter of the experts over the 4 ranks holding it, 4 apart, spanning both nodes (2 NICs a node:
    # 20 GB/s, 0.5). 16-bit gradients and weights.
    e = step(flat, {"expert": 4, "zero": 1}, count=16, model=MOE, training={"global_batch_size": 16})
    routed = L * 8 * (2 * D * 1024 + 1024 + D)
    dense = e.params.total - routed
    half = 15 / 16 * dense * 2 / (80e9 * 0.5) + 3 / 4 * routed / 4 * 2 / (20e9 * 0.5)
    assert e.parallelism.communication_seconds["data"] == pytest.approx(2 * half)


def test_fully_sharded_experts_gather_over_the_ranks_holding_them(flat):
    # ZeRO-3 on 8 GPUs with 4 expert ranks: each layer's dense weights are gathered over all 8 ranks (7/8 of them
    # arrive), each GPU's quarter of the experts over the 2 ranks holding it (1/2 arrives); forward and backward
    # gather, backward reduce-scatters the gradients too, all in 16 bits. The routed experts: 2 layers of 8
    # GELU experts of 2·1024·1024 weights and 1024 + 1024 biases.
    e = step(flat, {"expert": 4, "zero": 3}, count=8, model=MOE)
    routed = L * 8 * (2 * D * 1024 + 1024 + D)
    dense = e.params.total - routed
    one_pass = 2 * (7 / 8 * dense + 1 / 2 * routed / 4)
    assert e.parallelism.communication_bytes["data"] == pytest.approx(3 * one_pass)


@pytest.mark.parametrize("expert_tensor, off_node, link", [
    (1, 1, 100e9),     # 8 expert ranks side by side: one node, 100 GB/s each way at bus efficiency 1.0
    # et = t = 2 apart: the 8 ranks span two nodes, 4 on each; what goes to the other node, 4 of the 7 peers'
    # shares, leaves through the GPU's own NIC, 10 GB/s at the network's bus efficiency 0.5 (an all-to-all cannot
    # pool a node's NICs: NVIDIA/nccl-tests issues #130 and #267)
    (None, 4 / 7, 10e9 * 0.5),
])
def test_expert_all_to_all_spans_the_expert_tensor_and_expert_ranks(flat, expert_tensor, off_node, link):
    parallelism = {"tensor": 2, "sequence_parallel": True, "expert": 8, "expert_tensor": expert_tensor}
    e = step(flat, {k: v for k, v in parallelism.items() if v is not None}, count=16, model=MOE,
             training={"global_batch_size": 8})
    # 4 all-to-alls a layer (dispatch and combine, each way) of the GPU's S/2 tokens' 2 routed rows of d values;
    # with et = 2 its expert tensor pair, side by side in a node (100 GB/s, bus 1.0), all-gathers those rows and
    # reduce-scatters their outputs forward and backward: 2 · (1/2 · 2) of its S/2 · 2 rows, gathered twice
    wire = 4 * 7 / 8 * (2 * S / 2) * D * 2 * L
    gather = 0 if expert_tensor == 1 else 2 * (2 * 1 / 2 * 2 * (2 * S / 2) * D * 2) * L
    assert e.parallelism.communication_bytes["expert"] == pytest.approx(wire + gather)
    assert e.time.breakdown["communication.expert"] == pytest.approx(wire * off_node / link + gather / 100e9)


def fixed(tmp_path, kernel=None, update=None, host="cpu: test"):
    """The flat device with a fixed cost per kernel and per parameter tensor's update (seconds), calibrated on
    `host`: a CPU's, which runs each op to its end, unless told otherwise."""
    path = tmp_path / f"fixed-{kernel}-{update}-{host.split(':')[0]}.yaml"
    device = {**FLAT, "kernels": dict(FLAT["kernels"]), "calibrated_on": host}
    for name, value in (("kernel_seconds", kernel), ("update_seconds", update)):
        if value is not None:
            device["kernels"][name] = {"value": value, "source": "test"}
    path.write_text(yaml.safe_dump(device))
    return str(path)


# GPT-2 style (learned positions, LayerNorm, GELU, biases, tied head), dense materialised attention, by hand:
# a layer launches q, k, v, o and the two MLP GEMMs (6 forward, 18 backward: dgrad, wgrad and the bias's sum),
# QKᵀ and AV (2, 4), the softmax (1, 1), two LayerNorms (2, 2), GELU (1, 1) and two residual adds (2 forward,
# none backward): 14 + 26 = 40. Once: the token and position lookups (2, 2), the head GEMM (1, 2), the loss
# (2, 2), the final norm (1, 1): 13. Parameter tensors: a layer's six weights and six biases and two norms'
# weights and biases (16), the two embedding tables and the final norm's weight and bias (4); the head is the
# token table.
GPT2_STYLE = {"attention": {"type": "dense"}, "mlp": "gelu", "norm": "layernorm", "position": "learned"}


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_kernels_and_parameter_tensors_counted_by_hand(flat, layers):
    spec = make_spec({**MODEL, **GPT2_STYLE, "n_layers": layers}, {"tokens": 10**6}, {"gpu": flat, "count": 1})
    assert step_module.stage_counts(spec, shape_of(spec)) == (40 * layers + 13, 16 * layers + 4, 0, 0)


def test_fixed_costs_are_counted_only_where_measured(flat, tmp_path):
    assert "overhead" not in step(flat, {}, model=GPT2_STYLE).time.breakdown
    costly = step(fixed(tmp_path, kernel=1e-4, update=1e-3), {}, model=GPT2_STYLE)
    assert costly.time.breakdown["overhead"] == pytest.approx((40 * L + 13) * 1e-4 + (16 * L + 4) * 1e-3)
    assert costly.time.step_seconds == pytest.approx(step(fixed(tmp_path), {}, model=GPT2_STYLE).time.step_seconds
                                                     + costly.time.breakdown["overhead"])
    only_updates = step(fixed(tmp_path, update=1e-3), {}, model=GPT2_STYLE)
    assert only_updates.time.breakdown["overhead"] == pytest.approx((16 * L + 4) * 1e-3)


@pytest.mark.parametrize("kernel, update", [(1e-9, 1e-9), (1e-3, 1e-9), (1e-9, 1e-2), (1e-3, 1e-2)])
def test_a_gpu_host_works_while_its_kernels_run(flat, tmp_path, kernel, update):
    # A GPU's host queues each kernel and goes on: a micro-batch takes the longer of its kernels' time and the
    # host's fixed costs, the update the longer of its bytes' time and its tensors' costs. One micro-batch here.
    host, updates = (40 * L + 13) * kernel, (16 * L + 4) * update
    for calibrated_on, overlap in (("cuda: test", max), ("cpu: test", lambda a, b: a + b)):    # a CPU: the sum
        plain = step(fixed(tmp_path, host=calibrated_on), {}, model=GPT2_STYLE).time.breakdown
        kernels = sum(plain[part] for part in ("matmul", "attention", "memory_bound"))
        costly = step(fixed(tmp_path, kernel, update, host=calibrated_on), {}, model=GPT2_STYLE).time
        assert costly.step_seconds == pytest.approx(overlap(kernels, host) + overlap(plain["optimizer"], updates))
        assert sum(costly.breakdown.values()) == pytest.approx(costly.step_seconds)
        assert costly.breakdown["overhead"] == pytest.approx(costly.step_seconds - kernels - plain["optimizer"])


def test_kernel_costs_repeat_per_micro_batch_and_in_the_bubble(flat, tmp_path):
    layout = {"pipeline": 2, "micro_batches": 4}
    plain = step(fixed(tmp_path), layout, count=2, model=GPT2_STYLE).time.breakdown
    costly = step(fixed(tmp_path, kernel=1e-3), layout, count=2, model=GPT2_STYLE).time.breakdown
    # the slowest stage is the last (the head's GEMM): its layer (40), the head GEMM (3), the loss (4) and the
    # final norm (2), launched again by each of the 4 micro-batches; the bubble is one more micro-batch's time
    assert costly["overhead"] == pytest.approx(4 * 49e-3)
    assert costly["bubble"] - plain["bubble"] == pytest.approx(49e-3)


# Llama style, read as eager PyTorch runs it in bf16, with the reference's kernels (costs/eager.py): a layer
# launches q, k, v, o, gate, up and down (7 forward, 14 backward), the flash core (1, 1), rotary by halves for q
# and k (10, 14), no repeat_kv (SDPA takes grouped heads), two RMSNorms (the reference's autograd Function, one
# node each way), two residual adds (2, 0), SiLU and the product (2, 3), and autograd's adds summing the
# gradients of the normed inputs read by q, k, v (0, 2) and by gate and up (0, 1): 24 + 37. Once: the lookup
# (1, 1), the head (1, 2), the loss (3, 3), the final norm (1, 1). Inside each norm's Function, unrecorded: 9
# kernels forward, 14 backward.
LLAMA_STYLE = {"mlp": "swiglu", "norm": "rmsnorm", "position": "rope", "n_kv_heads": 4, "tie_embeddings": False,
               "bias": False}


def test_eager_kernels_counted_by_hand(flat):
    spec = make_spec({**MODEL, **LLAMA_STYLE}, {"tokens": 10**6, "fusion": "eager"}, {"gpu": flat, "count": 1})
    # 7 weights and 2 norm weights a layer; the embedding, the untied head and the final norm
    assert step_module.stage_counts(spec, shape_of(spec)) == (L * (24 + 37) + 2 + 3 + 6 + 2, L * 9 + 3,
                                                              (2 * L + 1) * (9 + 14), 0)


def test_per_op_checkpointing_dispatches_each_op_of_a_layers_forward(flat):
    training = {"tokens": 10**6, "fusion": "eager"}
    plain, checkpointed = (step_module.stage_counts(spec, shape_of(spec)) for spec in (
        make_spec({**MODEL, **LLAMA_STYLE, "attention": "flash"}, {**training, **more}, {"gpu": flat, "count": 1})
        for more in ({}, {"recompute": "selective_op"})))
    # its dispatch mode sees each op of a layer's forward, views included: the 7 projections with their weights'
    # transposes and their inputs' and outputs' reshapes (28), SDPA with q, k, v and the output reshaped and
    # transposed (9), rotary's negation, cat, two products and add with the two halves and the two tables'
    # broadcasts for q and k (18), two RMSNorms' dtype promotion and 9 kernels (20), two residual adds, SiLU and
    # the product (4): 79
    assert checkpointed.launched > plain.launched and plain.dispatched == 0
    assert checkpointed.dispatched == L * 79


def test_memory_bound_kernels_run_at_their_measured_rate(flat, tmp_path):
    path = tmp_path / "slow-streams.yaml"
    device = {**FLAT, "kernels": {**FLAT["kernels"], "memory_bound": {"value": 0.5, "source": "test"}}}
    path.write_text(yaml.safe_dump(device))
    plain, slow = step(flat, {}).time.breakdown, step(str(path), {}).time.breakdown
    # the streams take twice as long; GEMMs (their memory side) and the optimizer keep the copy's bandwidth
    assert slow["memory_bound"] == pytest.approx(2 * plain["memory_bound"])
    assert slow["matmul"] == plain["matmul"] and slow["optimizer"] == plain["optimizer"]


@pytest.mark.parametrize("capacity, plan", [(None, 7), (1.25, 25)])
def test_eager_moe_routing_counted_by_hand_and_priced_as_plain_code(flat, capacity, plan):
    # The reference's MoE layer in bf16 (profiling/moe.py), 4 experts, by hand: the router (1, 2) and each expert's
    # gate, up and down (12, 24), SiLU and the product per expert (8, 12), each expert's input gradients from
    # gate and up summed (0, 4); the routing: softmax, top-k, the row and weight gathers (a zeros row, cat and
    # index each), the outputs' cat, the gate product, the scatter-add into zeros (12) and the plan forward (7
    # dropless, 25 with capacity buffers), the casts to fp32 and back (2); backward 10, a slice_backward and an
    # add per expert less one add plus the output's slice (8), the casts' (3). The routing's kernels are priced at
    # the block loop's cost per kernel, the others at a module kernel's.
    moe = {"n_experts": 4, "top_k": 2, "d_ff_expert": 512, **({"capacity_factor": capacity} if capacity else {})}
    training = {"tokens": 10**6, "fusion": "eager"}
    dense, routed = (step_module.stage_counts(spec, shape_of(spec)) for spec in (
        make_spec({**MODEL, **LLAMA_STYLE, **more}, training, {"gpu": flat, "count": 1})
        for more in ({}, {"moe": moe})))
    # the dense MLP it replaces: gate, up, down (3, 6), SiLU and the product (2, 3), the gradient sum (0, 1)
    mlp, experts, routing = 3 + 6 + 2 + 3 + 1, 1 + 2 + 12 + 24 + 8 + 12 + 4, (12 + plan + 2) + (10 + 8 + 3)
    assert routed.launched - dense.launched == L * (experts - mlp)
    assert routed.looped - dense.looped == L * routing


@pytest.mark.parametrize("capacity", [None, 1.25])
def test_a_gemm_at_a_new_shape_costs_a_long_run_nothing(flat, tmp_path, capacity):
    # A dropless expert's rows follow the routing, but a long run meets its row counts again: the figure an
    # earlier calibration wrote for a GEMM at a new shape loads and is not charged
    path = tmp_path / "shapes.yaml"
    device = {**FLAT, "kernels": {**FLAT["kernels"], "new_shape_seconds": {"value": 1e-3, "source": "test"}}}
    path.write_text(yaml.safe_dump(device))
    moe = {"n_experts": 4, "top_k": 2, "d_ff_expert": 512, **({"capacity_factor": capacity} if capacity else {})}
    model = {**MODEL, **LLAMA_STYLE, "moe": moe}
    older, plain = (costplan.estimate(make_spec(model, {"tokens": 10**6}, {"gpu": gpu, "count": 1}))
                    for gpu in (str(path), flat))
    assert "overhead" not in older.time.breakdown
    assert older.time.step_seconds == plain.time.step_seconds


@pytest.mark.parametrize("optimizer, moments, passes", [("adamw", 2, 0), ("lion", 1, 56), ("sgd_momentum", 1, 12),
                                                        ("adafactor", 0, 44)])
def test_an_unfused_update_moves_its_passes_bytes_when_eager(flat, optimizer, moments, passes):
    # One pass of a mixed-precision update reads and writes the fp32 master and moments and the bf16 weight and
    # reads the bf16 gradient: 2·(4 + 4·moments + 2) + 2 bytes a parameter. Eager, as the reference steps it,
    # Lion's eight fp32 operations move 4·(4 + 5 + 2 + 8) = 76 bytes (master read and written twice, its moment
    # read once and twice read and written, the gradient read twice, five temporaries written and read eight
    # times) where one pass moves 20: 56 more; SGD with momentum 32 against 20 (12 more); Adafactor on a matrix
    # 56 against 12 (44 more). Fused AdamW is one pass either way.
    fused = step(flat, {}, {"optimizer": optimizer}).time.breakdown["optimizer"]
    eager = step(flat, {}, {"optimizer": optimizer, "fusion": "eager"})
    one_pass = 2 * (4 + 4 * moments + 2) + 2
    assert fused == pytest.approx(one_pass * eager.params.total / (1000e9 * MEMORY_EFFICIENCY))
    assert eager.time.breakdown["optimizer"] == pytest.approx((one_pass + passes) * eager.params.total
                                                              / (1000e9 * MEMORY_EFFICIENCY))


def test_a_block_loops_average_block_counts_only_parts_that_have_blocks():
    from costplan.costs.attention.blocks import Part, block_parts, block_rows

    # the fixed pattern's two halves of the heads: 4 diagonal blocks of 32 rows, and the summary's one tile of 128
    assert block_rows([Part(causal=4), Part(indexed=1)], 128) == 2 * 128 / 5
    # trained at 16 of its 64 positions (blocks of 32, the last 4 summary cells): no summary cell at or before any
    # query, so the second half of the heads computes nothing and the average block is the diagonal one, 16 rows
    fixed = make_spec({"max_seq_len": 64, "attention": {"type": "sparse", "pattern": "fixed", "block": 32,
                                                        "summary": 4}}).model
    parts = block_parts(fixed.attention, fixed, 16)
    assert parts == [Part(causal=1), Part(indexed=0)] and block_rows(parts, 16) == 16


def test_a_convolution_rate_above_the_matmul_peak_loads(flat, tmp_path):
    # a calibration at tiny matmul sizes can measure the peak low; the convolution's rate over it is a measurement,
    # as its single figure was, not an efficiency capped at MAX_EFFICIENCY
    path = tmp_path / "fast-conv.yaml"
    rates = {"depthwise_conv_forward": {"points": [[1e6, 2.0], [1e7, 3.0]], "source": "test"},
             "depthwise_conv_backward": {"value": 2.5, "source": "test"}}
    path.write_text(yaml.safe_dump({**FLAT, "kernels": {**FLAT["kernels"], **rates}}))
    assert step(str(path), {}, model={"attention": {"type": "aft_conv", "window": 64}}).time.step_seconds > 0


def test_fsdp2_copies_its_gathered_weights_on_the_compute_stream(flat):
    # parallelism.per_parameter_sharding (FSDP2): a layer's weights are copied out of their all-gather in its
    # forward and again in its backward, the embedding's and the head's (and the final norm's) once, each read
    # and written in bf16 at the memory-bound rate; the flat device has no measured memory-bound rate, so that is
    # the bandwidth at data/kernels.yaml's default efficiency
    plain, fsdp2 = (step(flat, {"zero": 3, "per_parameter_sharding": copies}, count=8) for copies in (False, True))
    by_part = plain.params.by_component
    # the root's: the embedding (tied to the head) with learned positions, the final LayerNorm's weight and bias
    root = by_part["embedding"] + by_part["head"] + 2 * D
    assert plain.params.total == fsdp2.params.total
    copied = 2 * plain.params.total - root                      # 2 × layers + root
    extra = fsdp2.time.breakdown["memory_bound"] - plain.time.breakdown["memory_bound"]
    assert extra == pytest.approx(copied * 2 * 2 / (1000e9 * MEMORY_EFFICIENCY))
    # once a step under ZeRO 1 (weights kept gathered through the micro-batches), whatever their count
    training = {"global_batch_size": 32, "micro_batch_size": 1}
    once = [step(flat, {"zero": 1, "per_parameter_sharding": copies}, count=8, training=training)
            for copies in (False, True)]
    extra = once[1].time.breakdown["memory_bound"] - once[0].time.breakdown["memory_bound"]
    assert extra == pytest.approx(plain.params.total * 2 * 2 / (1000e9 * MEMORY_EFFICIENCY))
    # one data rank gathers nothing
    alone = [step(flat, {"zero": 3, "per_parameter_sharding": copies}) for copies in (False, True)]
    assert alone[0].time.step_seconds == alone[1].time.step_seconds


def test_per_parameter_sharding_without_zero_is_an_error(flat):
    from costplan.errors import CostplanError

    with pytest.raises(CostplanError, match="parallelism.per_parameter_sharding: shards the weights"):
        step(flat, {"per_parameter_sharding": True}, count=8)


def test_compiled_blocks_fuse_the_layers_and_leave_the_head_eager(flat):
    # training.fusion blocks (torchtitan's torch.compile: each block compiled on its own, the final norm and the
    # fp32 loss eager): a layer's memory-bound time is the fused one, what lies outside the layers the eager one
    def memory_bound(fusion, layers, optimizer="adamw"):
        e = step(flat, training={"fusion": fusion, "optimizer": optimizer}, model={"n_layers": layers})
        return e.time.breakdown["memory_bound"], e.time.breakdown["optimizer"]

    per_layer = {f: memory_bound(f, 2)[0] - memory_bound(f, 1)[0] for f in ("fused", "eager", "blocks")}
    outside = {f: memory_bound(f, 1)[0] - per_layer[f] for f in per_layer}
    assert per_layer["blocks"] == pytest.approx(per_layer["fused"])
    assert per_layer["eager"] != pytest.approx(per_layer["fused"])
    assert outside["blocks"] == pytest.approx(outside["eager"]) and outside["eager"] > outside["fused"]
    # the optimizer is not compiled either: an unfused update's extra passes, as eager
    assert memory_bound("blocks", 1, "lion")[1] == pytest.approx(memory_bound("eager", 1, "lion")[1])
    assert memory_bound("blocks", 1, "lion")[1] > memory_bound("fused", 1, "lion")[1]


# ------------------------------------------------------------------ training.grad_accumulation
def test_adds_and_their_bytes_by_hand():
    # autograd keeps the first micro-batch's gradient and adds each later one: read two, write one, in the
    # gradients' dtype; into an fp32 buffer (fp32_gradients) every micro-batch adds: the 16-bit gradient and the
    # buffer read, the buffer written (2 + 4 + 4)
    assert accumulation_adds("bf16", False, False, 4) == (3, 3 * 2)
    assert accumulation_adds("bf16", False, True, 4) == (4, 2 + 4 + 4)
    assert accumulation_adds("fp32", False, False, 4) == (3, 3 * 4)
    assert accumulation_adds("bf16", True, True, 4) == (3, 3 * 4)      # autocast: fp32 gradients already
    assert accumulation_adds("bf16", False, False, 1) == (0, 6)


@pytest.mark.parametrize("parallelism, fp32_gradients, held_share, adds, moved", [
    ({"data": 2, "zero": 1}, False, 1, 3, 6),        # each GPU holds every gradient
    ({"data": 2, "zero": 1}, True, 1, 4, 10),
    ({"data": 2, "zero": 3}, False, 1 / 2, 3, 6),    # its shard: the rest were reduce-scattered away
])
def test_separate_adds_cost_a_pass_over_the_held_gradients(flat, parallelism, fp32_gradients, held_share, adds, moved):
    training = {"tokens": 10**6, "micro_batch_size": 1, "global_batch_size": 8, "fp32_gradients": fp32_gradients}

    def estimate(how):
        spec = make_spec(MODEL, {**training, "grad_accumulation": how}, {"gpu": flat, "count": 2},
                         parallelism=parallelism)
        return costplan.estimate(spec)

    fused, added = estimate("fused"), estimate("add")
    assert added.parallelism.micro_batches == 4
    extra = added.time.breakdown["memory_bound"] - fused.time.breakdown["memory_bound"]
    assert extra == pytest.approx(adds * moved * held_share * added.params.total / (1000e9 * MEMORY_EFFICIENCY))
    assert added.time.step_seconds - fused.time.step_seconds == pytest.approx(extra)


def test_mla_down_projections_run_whole_on_every_tensor_rank():
    # Megatron-Core's TE spec duplicates MLA's down-projections: under sequence parallelism each tensor rank
    # projects its own tokens (as many FLOPs as a split matrix), without it every token; other models' GEMMs
    # take as long either way
    ci = Path(__file__).parents[1] / "specs" / "ci"

    def matmul(name, sp):
        spec = costplan.load_spec(str(ci / name), ["hardware.count=2", "parallelism.tensor=2", "hardware.gpu=h100-sxm",
                                                   f"parallelism.sequence_parallel={sp}", "training.precision=bf16"])
        return costplan.estimate(spec).time.breakdown["matmul"]
    assert matmul("mla.yaml", False) > matmul("mla.yaml", True)
    assert matmul("flash.yaml", False) == pytest.approx(matmul("flash.yaml", True), rel=1e-12)


def test_expert_overlap_hides_the_all_to_alls_behind_another_micro_batch():
    # Mixtral 8x7B on 64 H100s, its experts over 8 ranks, 8 micro-batches a step: with expert_overlap each layer's
    # all-to-alls (well under the layer's compute here) run beside another micro-batch's pass through the layer
    # (Megatron-Core's overlap_moe_expert_parallel_comm) in the passes its combined 1F1B pairs: every forward
    # with the previous micro-batch's backward but the first forward and the last backward, 7 of 8; what is left
    # there is the SMs NCCL's kernels hold meanwhile, 24 of the H100's 132, for the traffic's seconds
    base = ["hardware.gpu=h100-sxm", "hardware.count=64", "parallelism.expert=8", "parallelism.zero=1",
            "training.global_batch_size=512"]
    exposed = costplan.estimate(costplan.load_spec("mixtral-8x7b", base))
    hidden = costplan.estimate(costplan.load_spec("mixtral-8x7b", [*base, "parallelism.expert_overlap=true"]))
    assert exposed.parallelism.micro_batches == 8 and hidden.parallelism.expert_overlap
    wire = exposed.parallelism.communication_seconds["expert"]
    assert hidden.parallelism.communication_seconds["expert"] == wire > 0
    assert exposed.time.breakdown["communication.expert"] == pytest.approx(wire)
    share, paired = 0.182, 7 / 8        # 24 / 132, as data/kernels.yaml rounds it
    assert hidden.time.breakdown["communication.expert"] == pytest.approx((1 - paired) * wire)
    assert hidden.time.breakdown["overlap.expert"] == pytest.approx(paired * share * wire)
    assert hidden.time.step_seconds == pytest.approx(exposed.time.step_seconds - paired * (1 - share) * wire)
    assert "expert all-to-alls behind another micro-batch's compute" in hidden.parallelism.overlaps
    # one micro-batch a step has no other to pair with: its all-to-alls stay exposed
    one = [*base[:-1], "training.global_batch_size=64"]
    single = costplan.estimate(costplan.load_spec("mixtral-8x7b", [*one, "parallelism.expert_overlap=true"]))
    assert single.parallelism.micro_batches == 1
    assert single.time == costplan.estimate(costplan.load_spec("mixtral-8x7b", one)).time
    from costplan import report, tables
    assert "expert all-to-alls overlapped" not in report.render(tables.estimates([single]), "table")
    assert "expert all-to-alls overlapped" in report.render(tables.estimates([hidden]), "table")
    # nothing to hide without experts split over ranks; a pipeline pairs micro-batches only interleaved, as
    # Megatron-Core requires; and Megatron-Core refuses full recomputation with it
    for spec, sets, said in (("llama2-7b", [], "hides a MoE layer's all-to-alls"),
                             ("mixtral-8x7b", ["hardware.count=8", "parallelism.expert=1"], "needs experts split"),
                             ("mixtral-8x7b", [*base, "parallelism.pipeline=2"], "set virtual_stages > 1"),
                             ("mixtral-8x7b", [*base, "training.recompute=full"], "refuses full recomputation")):
        with pytest.raises(costplan.SpecError, match=f"parallelism.expert_overlap: .*{said}"):
            costplan.load_spec(spec, [*sets, "parallelism.expert_overlap=true"])


@pytest.mark.parametrize("p, v, m, stage, share", [
    # Megatron-Core's interleaved schedule (schedules.py) warms up with (p − rank − 1)·2 + (v − 1)·p forwards of
    # its m·v chunks; the combined 1F1B runs one more alone (the first forward, as without a pipeline), and as
    # many backwards cool down alone: the rest pair a forward with a backward
    (1, 1, 8, 0, 7 / 8),
    (1, 1, 1, 0, 0.0),
    (4, 2, 8, 0, (16 - 11) / 16),
    (4, 2, 8, 3, (16 - 5) / 16),
    (2, 2, 2, 0, 0.0),          # 4 chunks, 5 to warm up: none paired
])
def test_expert_overlap_pairs_the_schedules_steady_state(p, v, m, stage, share):
    from costplan.costs.traffic import paired_share
    assert paired_share(p, v, m, stage) == pytest.approx(share)
