"""Parallelism: per-GPU memory under ZeRO/TP/PP, activations per Korthikanti et al. 2022, communication, bubble.

Expected values are written from the papers' formulas in readable units, not taken from the code under test.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

import costplan
from conftest import make_spec
from costplan import kernels, hardware
from costplan.costs import layouts
from costplan.costs.estimate import components, shape_of
from costplan.costs.run import step_of
from costplan.costs.parallel import stage_memory

S, H, A = 128, 64, 4          # the tiny spec's seq_len, d_model and heads


def est(parallelism=None, model=None, training=None, hardware=None):
    top = {} if parallelism is None else {"parallelism": parallelism}
    return costplan.estimate(make_spec(model, {"tokens": 10**6, **(training or {})}, hardware, **top))


# ---------------------------------------------------------------------------------------------- model states
@pytest.mark.parametrize("zero, per_param", [
    # ZeRO (Rajbhandari et al. 2019) §5, Fig. 1, mixed-precision Adam (K = 12), N_d = 64 data-parallel ranks:
    (0, 2 + 2 + 12),               # baseline: 2Ψ + 2Ψ + KΨ
    (1, 2 + 2 + 12 / 64),          # P_os
    (2, 2 + (2 + 12) / 64),        # P_os+g
    (3, (2 + 2 + 12) / 64),        # P_os+g+p
])
def test_zero_stages(zero, per_param):
    e = est({"zero": zero}, model={"vocab_size": 1024}, hardware={"count": 64})
    psi = e.params.total
    states = e.memory.weights + e.memory.gradients + e.memory.optimizer
    assert states == pytest.approx(per_param * psi, abs=3)        # ceil per kind: at most 1 byte each
    if zero == 3:
        assert e.memory.weights == math.ceil(2 * psi / 64)


def test_zero_table_figures():
    # ZeRO Fig. 1 for Ψ = 7.5B, N_d = 64: 120 GB, 31.4 GB, 16.6 GB, 1.9 GB. A Llama-style model near 7.5B
    # parameters reproduces them scaled by its own size.
    model = {"vocab_size": 32000, "d_model": 4096, "n_layers": 36, "n_heads": 32, "d_ff": 11008, "mlp": "swiglu",
             "norm": "rmsnorm", "position": "rope", "tie_embeddings": False, "bias": False, "max_seq_len": 128}
    for zero, gigabytes in ((0, 120), (1, 31.4), (2, 16.6), (3, 1.9)):
        e = est({"zero": zero}, model=model, hardware={"count": 64})
        states = e.memory.weights + e.memory.gradients + e.memory.optimizer
        assert states / 1e9 == pytest.approx(gigabytes * e.params.total / 7.5e9, rel=0.02)


@pytest.mark.parametrize("zero, per_param", [
    # Megatron-Core's distributed-optimizer guide, "bf16 parameters, fp32 gradients": 18 bytes per parameter
    # without the distributed optimizer, 6 + 12/d with it (d = 64 here); ZeRO 2 and 3 shard the fp32 gradients
    # and then the 16-bit weights too.
    (0, 18), (1, 6 + 12 / 64), (2, 2 + 16 / 64), (3, 18 / 64),
])
def test_fp32_gradients_megatron_bytes_per_parameter(zero, per_param):
    e = est({"zero": zero}, model={"vocab_size": 1024}, training={"fp32_gradients": True}, hardware={"count": 64})
    states = e.memory.weights + e.memory.gradients + e.memory.optimizer
    assert states == pytest.approx(per_param * e.params.total, abs=3)
    assert e.assumptions.bytes_per_param["gradients"] == 4


def test_fp32_gradients_change_nothing_where_gradients_are_fp32_already():
    for training in ({"precision": "fp32"}, {"autocast": True, "implementation": "sdpa"}):
        plain = est({"zero": 1}, training=training, hardware={"count": 8})
        fp32 = est({"zero": 1}, training={**training, "fp32_gradients": True}, hardware={"count": 8})
        assert fp32.memory == plain.memory and fp32.time == plain.time


def test_tensor_parallel_splits_what_megatron_splits():
    # Megatron's layout of a GPT-2-style model (the tiny spec: learned positions, biases, LayerNorm) on t ranks:
    # column-parallel weights and biases and the vocabulary-parallel embedding split; whole on every rank: the
    # LayerNorms' weights and biases (2L + 1 norms of 2d), each block's two row-parallel biases (attention's output
    # projection, the MLP's down projection: added after the all-reduce, RowParallelLinear) and the learned
    # position table (max_seq_len × d, a plain Embedding in Megatron-Core's LanguageModelEmbedding).
    d, layers, context = H, 2, 128
    whole = (2 * layers + 1) * 2 * d + layers * 2 * d + context * d
    spec = make_spec({"n_layers": layers}, {"tokens": 10**6}, {"count": 4}, parallelism={"tensor": 4})
    total = costplan.estimate(spec).params.total
    assert stage_memory(spec, components(spec), 0).params == whole + (total - whole) / 4
    # without biases and with rotary positions, only the norms' weights stay whole
    bare = make_spec({"n_layers": layers, "bias": False, "position": "rope", "norm": "rmsnorm"}, {"tokens": 10**6},
                     {"count": 4}, parallelism={"tensor": 4})
    total = costplan.estimate(bare).params.total
    assert stage_memory(bare, components(bare), 0).params == (2 * layers + 1) * d + (total - (2 * layers + 1) * d) / 4


def test_pipeline_stages_partition_the_parameters():
    # Untied: every parameter lives on exactly one stage.
    spec = make_spec({"n_layers": 4, "tie_embeddings": False}, {"tokens": 10**6}, {"count": 4},
                     parallelism={"pipeline": 4})
    shape = shape_of(spec)
    stages = [stage_memory(spec, components(spec, shape, i, 4), i).params for i in range(4)]
    assert sum(stages) == costplan.estimate(spec).params.total
    # A tied head needs its own copy of the token embedding on the last stage (Megatron's shared embeddings).
    tied = make_spec({"n_layers": 4}, {"tokens": 10**6}, {"count": 4}, parallelism={"pipeline": 4})
    stages = [stage_memory(tied, components(tied, shape, i, 4), i).params for i in range(4)]
    assert sum(stages) == costplan.estimate(tied).params.total + 1000 * H


# ---------------------------------------------------------------------------------------------- activations
def per_layer(parallelism, training=None, count=None):
    """Activation bytes one more layer adds on one GPU (p = 1), for the tiny GPT layer in Korthikanti's shape."""
    model = {"position": "none", "d_model": H, "n_heads": A, "max_seq_len": S}
    hw = {"count": count or parallelism.get("tensor", 1)}
    one = est(parallelism, {**model, "n_layers": 2}, training, hw).memory.activations
    two = est(parallelism, {**model, "n_layers": 3}, training, hw).memory.activations
    return two - one


STATS = 2 * 2 * 4 * S         # two LayerNorms' fp32 mean and 1/std per token: d_model-wide, never split


@pytest.mark.parametrize("t", [1, 2, 4])
def test_korthikanti_tensor_parallel(t):
    # Korthikanti Table 2, tensor parallel: sbh·(10 + 24/t + 5as/(ht)). Without dropout the replicated 10 loses
    # the two residual-dropout masks (8 remain: two LayerNorm inputs, the QKV and first-MLP inputs), 24/t is
    # unchanged and 5as/(ht) loses the attention-dropout mask and output (2as/(ht) remain).
    expected = S * H * (8 + 24 / t) + 2 * A * S * S / t + STATS
    assert per_layer({"tensor": t}) == pytest.approx(expected, abs=1)


@pytest.mark.parametrize("t", [2, 4])
def test_korthikanti_sequence_parallel(t):
    # Table 2, tensor + sequence parallel: sbh·(34 + 5as/h)/t; without dropout (32·sbh + 2as²b)/t.
    expected = (32 * S * H + 2 * A * S * S + STATS) / t
    assert per_layer({"tensor": t, "sequence_parallel": True}) == pytest.approx(expected, abs=1)


def test_korthikanti_selective_recompute_with_tensor_parallel():
    # Table 2, tensor parallel + selective recompute: sbh·(10 + 24/t); without dropout 8 + 24/t.
    t = 4
    expected = S * H * (8 + 24 / t) + STATS
    assert per_layer({"tensor": t}, {"recompute": "selective"}) == pytest.approx(expected, abs=1)


def test_full_recompute_with_sequence_parallel():
    # Only the layer input is kept, 2·sbh, split over the tensor group by sequence parallelism.
    assert per_layer({"tensor": 4, "sequence_parallel": True}, {"recompute": "full"}) == 2 * S * H / 4


def test_sequence_parallel_is_identity_without_tensor_parallelism():
    assert est({"sequence_parallel": True}).memory == est({}).memory == est().memory


def test_first_pipeline_stage_holds_p_micro_batches():
    # 1F1B: stage i keeps min(m, p − i) micro-batches in flight (Narayanan et al. 2021 §2.2.1).
    spec = make_spec({"n_layers": 4, "vocab_size": 8}, {"tokens": 10**6, "global_batch_size": 8}, {"count": 4},
                     parallelism={"pipeline": 4})
    assert spec.micro_batches == 8
    layer = per_layer({})
    e = costplan.estimate(spec)
    assert e.parallelism.memory_stage == 0
    ids = 8 * S
    assert e.memory.activations == 4 * (layer + ids)   # 4 in flight × (one layer + the token ids)


@pytest.mark.parametrize("m, expected", [(8, 11 / 2), (12, 11 / 2), (4, 4)])
def test_interleaved_first_stage_holds_more_micro_batches(m, expected):
    # Interleaved 1F1B, p = 4, v = 2: the first stage runs 2(p − 1) + (v − 1)p = 10 chunk forwards before its first
    # backward, 11 with the first steady one, each half its layers: 5.5 micro-batches, Korthikanti et al. 2022's
    # 1 + (p − 1)/(p·v) = 1.375 of the model's 4 stages, however many more micro-batches; with m = p every forward
    # runs first (m·v chunks: m micro-batches, as 1F1B's p)
    spec = make_spec({"n_layers": 8, "vocab_size": 8}, {"tokens": 10**6, "global_batch_size": m}, {"count": 4},
                     parallelism={"pipeline": 4, "virtual_stages": 2})
    assert spec.micro_batches == m
    e = costplan.estimate(spec)
    assert e.parallelism.memory_stage == 0
    one = costplan.estimate(make_spec({"n_layers": 8, "vocab_size": 8}, {"tokens": 10**6, "global_batch_size": m},
                                      {"count": 4}, parallelism={"pipeline": 4, "micro_batches": m}))
    per_micro_batch = one.memory.activations / min(m, 4)        # 1F1B's first stage: min(m, p) in flight
    assert e.memory.activations == pytest.approx(expected * per_micro_batch, abs=1)
    if m == 8:
        model = 4 * per_micro_batch                              # every stage's micro-batch, as stage 0's
        assert e.memory.activations == pytest.approx((1 + 3 / (4 * 2)) * model, abs=1)


# ---------------------------------------------------------------------------------------------- communication
def test_data_parallel_all_reduce_volume_and_time():
    # Ring all-reduce: each GPU sends 2(n−1)/n of the gradient bytes (nccl-tests busbw factor). 16 A100s span
    # two 8-GPU nodes: one ring per NIC, 8 NICs of 25 GB/s each way = 200 GB/s, under NVLink's 300.
    e = est({}, hardware={"count": 16, "gpu": "a100-80gb"})
    psi = e.params.total
    p = e.parallelism
    assert p.communication_bytes["data"] == pytest.approx(2 * 15 / 16 * psi * 2)
    # in 25 MiB buckets (torch DDP's default; this model's gradients fill less than one) at the network's bus
    # efficiency for that message size, but no faster than a ring inside one node at that size (NVLink 3: 300 GB/s
    # each way), whose hops the ring also runs
    curves, bucket = kernels.curves("a100-80gb"), min(25 * 2**20, psi * 2)
    network, nvlink = 200e9 * curves.collective_internode.at(bucket), 300e9 * curves.collective.at(bucket)
    assert nvlink < network         # at this size NVLink's ring is latency-bound, the derived network curve not
    assert p.communication_seconds["data"] == pytest.approx(2 * 15 / 16 * psi * 2 / nvlink)
    inside = est({}, hardware={"count": 8, "gpu": "a100-80gb"}).parallelism
    assert inside.communication_seconds["data"] == pytest.approx(2 * 7 / 8 * psi * 2 / nvlink)


def test_a_gradient_smaller_than_a_bucket_is_one_message_of_its_size():
    # DDP's 25 MiB bucket holds at most the gradients there are: a 2 KiB model's all-reduce had been timed at the
    # bucket's efficiency (31 ns for 4 KB over 8 GPUs), now at its own message's
    e = est({}, model={"vocab_size": 16, "d_model": 8, "n_layers": 1, "n_heads": 1, "max_seq_len": 16},
            hardware={"count": 8, "gpu": "a100-80gb"})
    grad = e.params.total * 2          # 16-bit gradients, all-reduced (ZeRO 0 of the default data layout)
    assert e.parallelism.zero in (0, 1, 2) and grad < 25 * 2**20
    curve = kernels.curves("a100-80gb").collective
    wire = e.parallelism.communication_bytes["data"]
    assert e.parallelism.communication_seconds["data"] == pytest.approx(wire / (300e9 * curve.at(grad)))
    assert curve.at(grad) < curve.at(25 * 2**20) / 10


def test_zero3_moves_one_and_a_half_times_the_data():
    # ZeRO §7: stage 3 costs 3Ψ per step against 2Ψ (two parameter all-gathers + a gradient reduce-scatter).
    two = est({"zero": 2}, hardware={"count": 8}).parallelism.communication_bytes["data"]
    three = est({"zero": 3}, hardware={"count": 8}).parallelism.communication_bytes["data"]
    assert three == pytest.approx(1.5 * two)


@pytest.mark.parametrize("zero, moved", [
    # Ψ(n−1)/n per unit: an all-reduce is a reduce-scatter and an all-gather of the gradients (2 × 4 bytes);
    # ZeRO 1-2 reduce-scatter fp32 gradients and gather 16-bit weights (4 + 2); ZeRO-3 gathers the weights twice
    # and reduce-scatters the gradients (2 + 2 + 4).
    (0, 8), (1, 6), (2, 6), (3, 8),
])
def test_fp32_gradients_travel_in_fp32(zero, moved):
    e = est({"zero": zero}, training={"fp32_gradients": True}, hardware={"count": 8})
    assert e.parallelism.communication_bytes["data"] == pytest.approx(moved * 7 / 8 * e.params.total)


def test_tensor_parallel_all_reduces():
    # Megatron §3.2: 2 all-reduces forward + 2 backward per layer of b·s·h 16-bit elements, 2(t−1)/t each.
    t, layers = 4, 2
    e = est({"tensor": t}, hardware={"count": t})
    assert e.parallelism.communication_bytes["tensor"] == pytest.approx(4 * 2 * 3 / 4 * S * H * 2 * layers)
    full = est({"tensor": t}, training={"recompute": "full"}, hardware={"count": t})
    assert full.parallelism.communication_bytes["tensor"] == pytest.approx(6 * 2 * 3 / 4 * S * H * 2 * layers)


def test_pipeline_point_to_point():
    # One b·s·h activation forward and its gradient backward per micro-batch; ÷t with sequence parallelism.
    e = est({"pipeline": 2, "micro_batches": 3}, hardware={"count": 2})
    assert e.parallelism.communication_bytes["pipeline"] == 2 * S * H * 2 * 3


def test_catalogue_bandwidth_is_bidirectional():
    gpu = hardware.catalogue()["h100-sxm"]
    assert gpu.link_bytes_per_s(8) == 450e9          # NVLink 4: 900 GB/s total, 450 each way
    assert gpu.link_bytes_per_s(16) == 400e9         # 8 NICs of 400 Gb/s per node, one ring each
    assert gpu.link_bytes_per_s(16, stride=8) == 50e9   # one rank (one NIC) per node: 50 GB/s each way
    assert gpu.link_bytes_per_s(16, stride=2) == 200e9


# ---------------------------------------------------------------------------------------------- time
def test_one_gpu_without_a_section_is_the_empty_section():
    assert est({}).time.step_seconds == pytest.approx(est().time.step_seconds, rel=1e-12)


@pytest.mark.parametrize("p, m, v", [(2, 1, 1), (4, 4, 1), (4, 12, 1), (4, 8, 2)])
def test_pipeline_bubble(p, m, v):
    # Narayanan et al. 2021 §2.2: 1F1B idles (p − 1) micro-batch times per step, interleaving v chunks (p − 1)/v.
    e = est({"pipeline": p, "micro_batches": m, "virtual_stages": v}, model={"n_layers": 8},
            hardware={"count": p})
    parts = e.time.breakdown
    per_micro_batch = sum(value for key, value in parts.items()
                          if key in ("matmul", "attention", "memory_bound", "communication.tensor")) / m
    assert parts["bubble"] == pytest.approx(per_micro_batch * (p - 1) / v)
    assert e.time.step_seconds == pytest.approx(sum(parts.values()))


def test_exposed_data_parallel_traffic():
    # A slow network and a tiny model: gradient traffic exceeds the last micro-batch's backward; the excess shows.
    gpu = {"gpu": "l4", "count": 16}
    e = est({}, hardware=gpu)
    exposed = e.time.breakdown["communication.data"]
    assert 0 < exposed < e.parallelism.communication_seconds["data"]
    assert e.time.gpu_hours > est(hardware={"gpu": "l4", "count": 1}).time.gpu_hours


def test_section_absent_takes_the_fastest_fitting_layout_of_the_grid():
    spec = make_spec(hardware={"count": 64})
    e = costplan.estimate(spec)
    assert e.parallelism.source.startswith("the fastest that fits") and e.memory.fits
    shape = shape_of(spec)
    # per sequence: without a global batch each layout's batch is its own (micro-batch × data ranks)
    variants = [layouts.variant(spec, spec.hardware.gpu, 64, layout) for layout in layouts.grid(spec)]
    fastest = min(step_of(v, shape).seconds / v.global_batch_size for v in variants)
    assert e.time.step_seconds / e.assumptions.global_batch_size == pytest.approx(fastest)


# ---------------------------------------------------------------------------------------------- experts
MIXTRAL = ["hardware.count=64", "training.global_batch_size=64"]
# Mixtral 8x7B by hand (Jiang et al. 2024; reference notes §4): 8 SwiGLU experts of 3·4096·14336 in each of
# 32 layers are routed; the 46,702,792,704 total less those is what every expert rank keeps.
ROUTED = 8 * 32 * 3 * 4096 * 14336
DENSE = 46_702_792_704 - ROUTED


def mixtral(*overrides):
    return costplan.estimate(costplan.load_spec("mixtral-8x7b", [*MIXTRAL, *overrides]))


def test_expert_parallel_splits_routed_experts():
    e = mixtral("parallelism.expert=8")
    assert e.memory.weights == 2 * (DENSE + ROUTED // 8)
    # ZeRO-1 shards dense states over 64 ranks and each expert's over the 64/8 ranks that hold it: 12 bytes
    # per parameter of the whole model / 64 either way.
    assert mixtral("parallelism.expert=8", "parallelism.zero=1").memory.optimizer == 12 * (DENSE + ROUTED) // 64


def test_expert_all_to_all_volume():
    # Per MoE layer and micro-batch: dispatch + combine, forward + backward = 4 all-to-alls of s·top_k rows of
    # d_model 16-bit values, (e − 1)/e of which leave the GPU. One micro-batch of one 32k sequence per step.
    e = mixtral("parallelism.expert=8")
    assert e.parallelism.communication_bytes["expert"] == 4 * 7 / 8 * 32768 * 2 * 4096 * 2 * 32
    assert mixtral().parallelism.source != "parallelism"


def test_expert_tensor_degree_splits_each_routed_expert():
    # Megatron-Core's MoE parallel folding: with t = 2, the 64 GPUs regroup for the experts as et × e × 64/(et·e).
    # et = 1 keeps each of a GPU's experts whole (ROUTED/8 a GPU), the default et = t halves them (ROUTED/16).
    layout = ("parallelism.tensor=2", "parallelism.sequence_parallel=true", "parallelism.expert=8",
              "parallelism.zero=1")
    whole, split = mixtral(*layout, "parallelism.expert_tensor=1"), mixtral(*layout)
    assert whole.memory.weights - split.memory.weights == 2 * (ROUTED // 8 - ROUTED // 16)
    assert (whole.parallelism.expert_tensor, split.parallelism.expert_tensor) == (1, 2)
    # ZeRO-1 shards each piece over the ranks holding it, 64/8 and 64/16: the same optimizer bytes either way
    assert whole.memory.optimizer == split.memory.optimizer


def test_routed_rows_are_held_whole_by_the_expert_tensor_group():
    # Megatron-Core gathers each expert's rows over its expert tensor group: with t = 2 and et = 2 a GPU holds
    # every routed row of its micro-batch's sequence, with et = 1 half of them. Mixtral's 32 layers route
    # 32768 · 2 rows a sequence, each saving its gathered input and output (2 · 4096 bf16 values), an fp32 gate
    # weight and two int64 indices (costs/moe.py); the experts' inner tensors are split either way.
    layout = ("parallelism.tensor=2", "parallelism.sequence_parallel=true", "parallelism.expert=8",
              "training.recompute=none")
    gathered, whole = mixtral(*layout), mixtral(*layout, "parallelism.expert_tensor=1")
    per_row = 2 * 4096 * 2 + 4 + 2 * 8
    assert gathered.memory.activations - whole.memory.activations == pytest.approx(
        32 * 32768 * 2 * per_row / 2, abs=1)


def test_expert_ranks_fold_into_tensor_and_data_ranks():
    # t = 8 × p = 2 on 64 GPUs leaves d = 4: 8 expert ranks of whole experts fold into the 8 × 4 tensor and data
    # ranks of a stage; split by the default et = t = 8 they would need 64 of them.
    layout = ["parallelism.tensor=8", "parallelism.pipeline=2", "parallelism.expert=8",
              "parallelism.sequence_parallel=true"]
    folded = mixtral(*layout, "parallelism.expert_tensor=1")
    assert (folded.parallelism.expert, folded.parallelism.expert_tensor, folded.parallelism.data) == (8, 1, 4)
    with pytest.raises(costplan.SpecError, match=r"parallelism\.expert: 8 does not divide the data-parallel "
                                                 r"degree \(4\)"):
        mixtral(*layout)
    with pytest.raises(costplan.SpecError, match=r"parallelism\.expert_tensor: expert \(8\) × expert_tensor \(8\) "
                                                 r"= 64 does not divide tensor × context × data \(8 × 1 × 4 = 32\)"):
        mixtral(*layout, "parallelism.expert_tensor=8")


@pytest.mark.parametrize("overrides, field, message", [
    (["parallelism.expert_tensor=3"], "expert_tensor", "3 does not divide model.moe.d_ff_expert (14336)"),
    # the tensor degree's own problem is named as the tensor degree's, whatever the experts' equal degree
    (["hardware.count=48", "parallelism.tensor=3", "parallelism.expert_tensor=3"], "tensor",
     "3 does not divide model.n_heads (32)"),
    (["model.moe=null", "parallelism.expert_tensor=2"], "expert_tensor", "2 needs a mixture-of-experts model"),
])
def test_expert_tensor_must_split_the_experts_whole(overrides, field, message):
    with pytest.raises(costplan.SpecError, match=rf"parallelism\.{field}: {re.escape(message)}"):
        mixtral("parallelism.tensor=1", *overrides)


def test_moe_scaling_law_uses_active_parameters():
    e = mixtral()
    assert e.scaling.params == e.params.active == 12_879_925_248 and e.scaling.params_convention == "active"


@pytest.mark.parametrize("preset", ["gpt2-small", "llama3-8b", "mistral-7b", "mixtral-8x7b", "deepseek-v3"])
def test_d_model_wide_activations_are_part_of_each_component(preset):
    # Tensor parallelism divides activations − act_d_model: that must never go negative, for any variant.
    for recompute in ("none", "selective", "full"):
        spec = costplan.load_spec(preset, [f"training.recompute={recompute}", "model.max_seq_len=256",
                                           "training.seq_len=256"])
        for key, cost in components(spec).items():
            assert 0 <= cost.act_d_model <= cost.activations, (preset, recompute, key)
            assert 0 <= cost.act_routed_rows <= cost.activations - cost.act_d_model, (preset, recompute, key)


def test_interleaved_sends_behind_the_model_chunks():
    # pipeline_overlap (Megatron's overlap_p2p_comm): each send and receive of interleaved 1F1B runs beside the
    # next model chunk's forward or backward; on the H100 a chunk of two layers outlasts its 8 MiB transfer, so
    # nothing is exposed but the share of the SMs NCCL holds while it runs (24 channels of 132 SMs,
    # data/kernels.yaml)
    layout = {"pipeline": 2, "micro_batches": 4, "virtual_stages": 2}
    model = {"n_layers": 8, "d_model": 2048, "n_heads": 16, "max_seq_len": 2048}
    exposed = est(layout, model=model, hardware={"gpu": "h100-sxm", "count": 2})
    hidden = est({**layout, "pipeline_overlap": True}, model=model, hardware={"gpu": "h100-sxm", "count": 2})
    seconds = exposed.parallelism.communication_seconds["pipeline"]
    assert seconds == hidden.parallelism.communication_seconds["pipeline"] > 0
    assert exposed.time.breakdown["communication.pipeline"] == pytest.approx(seconds)
    assert hidden.time.breakdown["communication.pipeline"] == 0
    assert hidden.time.breakdown["overlap.pipeline"] == pytest.approx(0.182 * seconds)     # 24 / 132, rounded
    assert "pipeline sends behind the model chunks" in hidden.parallelism.overlaps
    from costplan.tables.estimate import parallel_rows
    assert "pipeline sends overlapped" in parallel_rows(hidden)[0].note
    assert "pipeline sends overlapped" not in parallel_rows(exposed)[0].note
    with pytest.raises(costplan.SpecError, match="parallelism.pipeline_overlap: hides interleaved"):
        est({"pipeline": 2, "micro_batches": 4, "pipeline_overlap": True}, model=model, hardware={"count": 2})


@pytest.mark.parametrize("m", [1, 4])
def test_zero2_reduces_every_micro_batch_zero1_once_a_step(m):
    # A rank that keeps only a shard of the gradients (ZeRO 2: DeepSpeed's stage 2 hooks, FSDP's SHARD_GRAD_OP)
    # reduce-scatters each micro-batch's into it; ZeRO 1 accumulates them whole and reduce-scatters once. Both
    # gather the updated 16-bit weights once: Ψ(n−1)/n × (m × 4 + 2) bytes against (4 + 2) with fp32 gradients.
    def data(zero):
        e = est({"zero": zero}, training={"fp32_gradients": True, "global_batch_size": 8 * m},
                hardware={"count": 8})
        assert e.parallelism.micro_batches == m
        return e.parallelism.communication_bytes["data"], e.params.total, e.time.step_seconds
    (one, psi, one_step), (two, _, two_step) = data(1), data(2)
    assert one == pytest.approx(6 * 7 / 8 * psi)
    assert two == pytest.approx((4 * m + 2) * 7 / 8 * psi)
    assert (two_step > one_step) if m > 1 else (two_step == one_step)


def unsplit_weights(ci_spec: str) -> float:
    """Bytes of a CI spec's bf16 weights that no tensor rank splits: with weights W(t) = a + b/t per GPU,
    a = 2·W(2) − W(1)."""
    root = Path(__file__).parents[1] / "specs" / "ci" / ci_spec

    def weights(t):
        spec = costplan.load_spec(str(root), [f"hardware.count={t}", f"parallelism.tensor={t}",
                                              f"parallelism.sequence_parallel={t > 1}", "training.precision=bf16"])
        return costplan.estimate(spec).memory.weights
    return 2 * weights(2) - weights(1)


def test_mla_down_projections_stay_whole_on_every_tensor_rank():
    # Megatron-Core's TE spec builds MLA's q and kv down-projections duplicated (TELinear parallel_mode
    # "duplicated"), their norms with them; the rest of the model splits over t. What no rank splits: per layer
    # d·d_c' + d_c' (W_DQ, its RMSNorm) and d·(d_c + r) + d_c (W_DKV, the c_kv RMSNorm), and the model's 2L + 1
    # RMSNorms of d, 2 bytes each.
    d, layers, d_c, d_q, r = 256, 2, 64, 96, 16
    whole = layers * (d * d_q + d_q + d * (d_c + r) + d_c) + (2 * layers + 1) * d
    assert unsplit_weights("mla.yaml") == 2 * whole


def test_zero3_holds_the_root_and_two_layers_gathered_through_backward():
    # FSDP2 keeps the root module (embedding and head) gathered from forward to the end of backward, the last
    # layer too (torchtitan does not reshard it after forward), and prefetches the next layer's all-gather: with
    # bf16 weights, 2 bytes × 2·V·d for the root and × two of the stage's L layers (the final norm's d spread
    # over them)
    d, vocab, layers, ff = 64, 1000, 4, 128
    model = {"n_layers": layers, "position": "rope", "tie_embeddings": False, "norm": "rmsnorm", "mlp": "swiglu",
             "d_ff": ff, "bias": False}
    training = {"tokens": 10**6, "precision": "bf16", "global_batch_size": 8}
    e = costplan.estimate(make_spec(model, training=training, hardware={"count": 8}, parallelism={"zero": 3}))
    layer = 4 * d * d + 3 * d * ff + 2 * d
    assert e.memory.gathered_root == 2 * 2 * vocab * d
    assert e.memory.gathered_layers == 2 * 2 * (layers * layer + d) / layers
    moments = {"backward": e.memory.activations + e.memory.workspace + e.memory.gathered_root
               + e.memory.gathered_layers, "end of backward": e.memory.tied_gradients + e.memory.gathered_root,
               "optimizer step": e.memory.update}
    states = e.memory.weights + e.memory.gradients + e.memory.optimizer
    assert e.memory.total_per_gpu == states + max(moments.values()) == states + moments[e.memory.peak_at]
    # the optimizer step's transient is ZeRO 2's: sharding the weights does not change the update
    two = costplan.estimate(make_spec(model, training=training, hardware={"count": 8}, parallelism={"zero": 2}))
    assert two.memory.update == e.memory.update and two.memory.gathered_root == two.memory.gathered_layers == 0


def test_zero3_gathers_only_what_it_sharded():
    # 8 experts on 8 expert ranks: each GPU holds its expert whole (nothing of it to gather); on one expert rank
    # the routed weights are sharded over the 8 data ranks and gathered like the rest: 2 of the L layers' worth
    d, layers, ff, experts = 64, 4, 128, 8
    model = {"n_layers": layers, "position": "rope", "tie_embeddings": False, "norm": "rmsnorm", "mlp": "swiglu",
             "bias": False, "moe": {"n_experts": experts, "top_k": 2, "d_ff_expert": ff}}

    def gathered(expert):
        spec = make_spec(model, training={"tokens": 10**6, "precision": "bf16", "global_batch_size": 8},
                         hardware={"count": 8}, parallelism={"zero": 3, "expert": expert})
        return costplan.estimate(spec).memory.gathered_layers
    routed = layers * experts * 3 * d * ff
    assert gathered(1) - gathered(8) == pytest.approx(2 * 2 * routed / layers)


def test_mla_latents_are_whole_on_every_tensor_rank_unless_sequence_parallel():
    # The duplicated down projections give every tensor rank the whole sequence's latents, unless sequence
    # parallelism has each project its own s/t rows (Megatron-Core's MLASelfAttention, whose column-parallel up
    # projections gather them). What sequence parallelism takes off one more layer, (1 − 1/t) of its per-token
    # tensors, by hand for ci-mla (bf16, s = 128, micro-batch 2): the two RMSNorms' inputs and the two blocks'
    # normed inputs (4·d), [c_kv, k_rope] (d_c + r), the normed c_kv (d_c), c_q and the normed c_q (2·d_c'),
    # at 2 bytes, and four RMSNorms' fp32 1/rms per token.
    root = Path(__file__).parents[1] / "specs" / "ci" / "mla.yaml"

    def activations(layers, sequence_parallel):
        spec = costplan.load_spec(str(root), ["hardware.count=2", "parallelism.tensor=2", f"model.n_layers={layers}",
                                              f"parallelism.sequence_parallel={sequence_parallel}",
                                              "training.precision=bf16"])
        return costplan.estimate(spec).memory.activations

    s, d, d_c, d_q, r, micro = 128, 256, 64, 96, 16, 2
    per_token = s * (2 * (4 * d + d_c + r + d_c + 2 * d_q) + 4 * 4)
    taken = [activations(layers, False) - activations(layers, True) for layers in (2, 3)]
    assert taken[1] - taken[0] == micro * per_token / 2


def test_aft_position_bias_stays_whole_on_every_tensor_rank():
    # AFT-full's learned pairwise bias (max_seq_len² a layer, shared by every channel) is a position table, kept
    # whole like GPT-2's: the CI spec's 2 layers of 128², in bf16, beyond what AFT-simple (no bias) keeps whole
    assert unsplit_weights("aft-full.yaml") - unsplit_weights("aft-simple.yaml") == 2 * 2 * 128 ** 2


def test_per_head_qk_norms_stay_whole_on_every_tensor_rank():
    # a q or k norm over head_dim has one weight that every head shares (Megatron-Core's q_layernorm and
    # k_layernorm of hidden_size_per_attention_head): whole on each rank, beside the 2L block norms, the final and
    # the embedding's; the CI spec's 6 layers of two RMSNorms of 64, 2 bytes each
    d, layers, head_dim = 256, 6, 64
    assert unsplit_weights("flash-full-recompute.yaml") == 2 * ((2 * layers + 2) * d + layers * 2 * head_dim)


def test_a_moe_router_stays_whole_on_every_tensor_rank():
    # Megatron-Core's TopKRouter keeps its n_experts × d weight whole on every tensor rank (vLLM's gate is a
    # ReplicatedLinear too). What no rank splits: ci-moe's 2 routers of 256 × 4 and the model's 2L + 1 RMSNorms
    # of 256, 2 bytes each.
    d, layers, experts = 256, 2, 4
    assert unsplit_weights("moe.yaml") == 2 * (layers * d * experts + (2 * layers + 1) * d)


def test_zero_2_and_3_are_refused_under_a_pipeline():
    # No framework shards gradients (or weights) over the data ranks between a pipeline's micro-batches:
    # DeepSpeed's pipeline engine refuses ZeRO stages 2 and 3, Megatron-Core's distributed optimizer is ZeRO 1,
    # torchtitan's FSDP2 keeps a pipelined stage's weights gathered and its gradients whole; ZeRO 1 is the model.
    for zero in (2, 3):
        with pytest.raises(costplan.SpecError, match="parallelism.zero: .* with pipeline 4.*set zero 1"):
            costplan.load_spec("llama3-70b", ["hardware.count=64", "parallelism.tensor=8", "parallelism.pipeline=4",
                                              f"parallelism.zero={zero}"])
    costplan.load_spec("llama3-70b", ["hardware.count=64", "parallelism.tensor=8", "parallelism.pipeline=4",
                                      "parallelism.zero=1"])
    assert all(layout["zero"] < 2 for layout in layouts.grid(costplan.load_spec("llama3-70b"))
               if layout["pipeline"] > 1)


@pytest.mark.parametrize("settings, steps", [([], 1), (["parallelism.micro_batches=3"], 3),
                                              (["training.global_batch_size=12"], 3)])
def test_interleaving_needs_micro_batches_in_multiples_of_the_pipeline(settings, steps):
    # An interleaved schedule runs a micro-batch through a rank's chunks in turn, p micro-batches to a round
    # (Megatron-Core refuses other counts); one micro-batch cannot overlap its own chunks, so a step without a
    # batch or a count (one micro-batch) is refused as well, rather than timed with a bubble it cannot have.
    base = ["hardware.count=8", "parallelism.tensor=1", "parallelism.pipeline=2", "parallelism.virtual_stages=2",
            "parallelism.zero=1"]
    with pytest.raises(costplan.SpecError, match=rf"parallelism.virtual_stages: interleaving needs micro-batches "
                                                 rf"\({steps}\) in multiples of pipeline \(2\)"):
        costplan.load_spec("llama3-8b", base + settings)
    for fine in (["parallelism.micro_batches=4"], ["training.global_batch_size=16"]):
        assert costplan.load_spec("llama3-8b", base + fine).micro_batches == 4


def test_context_ranks_hold_autocasts_weight_copies_whole():
    # Under autocast each matmul saves its weight's 16-bit copy once a micro-batch; the context ranks split the
    # sequence, not the weights, so each holds those copies whole and splits the rest: A(2) = (A(1) − Y)/2 + Y,
    # Y = 2 bytes × the tiny GPT's matrices: 2 layers of 4·d² attention and 2·d·4d MLP, and the head's V·d.
    training = {"autocast": True, "implementation": "sdpa", "micro_batch_size": 1}
    one = est({}, training=training).memory.activations
    two = est({"context": 2}, training=training, hardware={"count": 2}).memory.activations
    copies = 2 * (2 * (4 * H * H + 2 * H * 4 * H) + 1000 * H)
    assert two == pytest.approx((one - copies) / 2 + copies)
