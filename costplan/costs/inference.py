"""Serving time, throughput and cost: a roofline per phase with kernel-level efficiencies.

One replica of the model runs on `tensor` GPUs (Megatron-style tensor parallelism: heads and MLP widths split,
two all-reduces of the d_model-wide activations per layer); serving.gpus GPUs hold gpus / tensor replicas, one
replica when it is not set (hardware.count is the training cluster, not the serving fleet).
Per GPU of a replica, a phase (a forward pass) is the sum of its kernels' times, each max(compute, memory) of
its own, since they run one after another (costs/serving_ops.py), + all-reduces:
- each weight GEMM: FLOPs / (peak × the GEMM efficiency at its size, the device's `gemm` curve) against its
  weights' and activations' bytes / (HBM bandwidth × memory efficiency), at the peak of the compute precision
  (fp8 weights run fp8 GEMMs where the device has them; int8 and int4 weights are dequantized to 16 bits, as
  weight-only kernels do), 16-bit weights at the efficiency of a streaming kernel, int8 or int4 weights at
  that of their kernels where data/kernels.yaml measures one;
- the attention kernels: core FLOPs / (peak × attention efficiency) against the cache they read, at the fp8
  peak only over an fp8 cache of fp8 weights (TensorRT-LLM's fp8 context FMHA), else the 16-bit one;
- norms, residual adds, activations, rotary, routing, the embedding lookup and the weights outside GEMMs:
  bytes at the streaming efficiency;
- all-reduce = 2 per layer (a parallel layer's too: vLLM's GPT-J, GPT-NeoX and Phi reduce attention's and the
  MLP's outputs apart; only its Falcon sums them first) × (latency + bytes × 2(t − 1)/t / (link bandwidth × bus
  efficiency)), the latency of an all-reduce inside a node, or across nodes (InfiniBand) when the group spans
  more than one.
Efficiencies come from kernel measurements (data/kernels.yaml), never from end-to-end serving results.

Prefill (time to first token): one request's prompt alone, attention FLOPs as a causal kernel executes them;
weights are read once. A busy replica prefills waiting prompts together, serving.prefill_tokens to a pass (an
engine's max_num_tokens), their tokens in the same GEMMs: throughput and the input price charge each prompt its
share of such a pass. Decode, per step: the whole batch's weights read once (for MoE the routed experts the
batch's tokens touch: E·(1 − (1 − k/E)^B) of E per MoE layer in expectation under uniform routing), each
sequence's cache read, every token's FLOPs; taken at the mean of the decode steps' cached tokens, prompt +
(output − 2)/2 (costs/serving.py decode_cached), each step reading those and its own, but a chunked layer's,
whose new token reads its chunk so far, averaged over the steps (chunk_decode). The prefill samples the first
output token, so a request of o output tokens runs o − 1 decode steps (vLLM, TensorRT-LLM); time per output
token = one step (none with one output token); under load, + (batch − prompts a pass) × a prompt's share of a
pass / (o − 1). Prefill and decode do not overlap: a request costs its share of a prefill pass plus (o − 1) ×
step / batch of the replica's time, which splits the GPU-time between input tokens (prefill) and output tokens
(decode) for the prices per million tokens.

Memory per GPU: the weights / t, `reserve` of the device's memory for activations, CUDA graphs and the
allocator (vLLM's default keeps 10%), and batch × the cache of one sequence at its end, prompt + output − 1 tokens,
divided over the GPUs that split it (the KV heads of GQA and AFT's states; MLA's shared latent is whole on each).
A tensor degree that is a multiple of the KV heads gives each GPU a copy of one head, its cache and its key/value
projections (vLLM's QKVParallelLinear), as with multi-query attention on any degree above 1; MLA's
down-projections are whole on every GPU (ReplicatedLinear).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from costplan import kernels
from costplan.costs import Shape
from costplan.costs import serving as sizes
from costplan.costs import serving_ops as ops
from costplan.costs.serving_ops import expected_experts
from costplan.costs.serving_result import (NO_DECODE, Efficiency, ServingAssumptions, ServingCost, ServingEstimate,
                                           ServingLatency, ServingMemory, ServingThroughput, request_usd)
from costplan.costs.attention.softmax import qk_norms
from costplan.costs.parallel import TENSOR_REPLICATED
from costplan.costs.time import SECONDS_PER_HOUR
from costplan.validation import MAX_COUNT
from costplan.errors import SpecError
from costplan.hardware import GPU
from costplan.spec import Spec
from costplan.spec_rules import split_rules

ALLREDUCES_PER_LAYER = 2      # after attention and after the MLP (Megatron-LM §3)
ACTIVATION_BYTES = 2          # 16-bit activations on the wire
ONE_TOKEN = Shape(1, sizes.SIXTEEN_BIT)


NOT_MODELLED = ("queueing and scheduling delays, prefill interrupting decode (chunked prefill), a fixed cost per "
                "kernel launch, gathering MoE experts' weights, speculative decoding, prefix caching, pipeline and "
                "expert parallelism")
QUANTIZED_NOTE = {
    "bf16": "no weight: every weight in {sixteen}",     # the cache's format is kv_cache's
    "fp8": "attention, MLP and expert matrices in fp8 with an fp32 scale each; embeddings, head, norms, "
           "routers in 16 bits",
    "int8": "attention, MLP and expert matrices in int8 with a 16-bit scale per output row; embeddings, head, "
            "norms, routers in 16 bits",
    "int4": "attention, MLP and expert matrices in int4 with a 16-bit scale per {group}; embeddings, head, "
            "norms, routers in 16 bits",
}


def kv_heads_split(spec: Spec, tensor: int) -> int:
    """GPUs the key/value heads split over: the tensor degree, or where it is a multiple of the heads (spec
    validation allows no other), the heads, each GPU keeping a copy of one (vLLM's QKVParallelLinear)."""
    return min(tensor, spec.model.n_kv_heads or tensor)


def kv_split(spec: Spec, tensor: int) -> int:
    """GPUs of a replica that the cache of one sequence is divided over: tensor parallelism splits the KV heads
    (kv_heads_split) and AFT's per-channel state, but every GPU keeps MLA's whole latent, which all of its heads
    read."""
    return 1 if "mla" in spec.model.attention_types else kv_heads_split(spec, tensor)


def _bytes_per_matrix_weight(parts: sizes.Parts, weights: int) -> float:
    """Stored bytes of a quantized matrix weight, its scales' share included (16 bits where nothing is)."""
    q = sizes.quantized(parts)
    rest = (_params(parts) - q.matrix_params) * sizes.SIXTEEN_BIT
    return (weights - rest) / q.matrix_params if q.matrix_params else sizes.SIXTEEN_BIT


def mla_absorbed_copy(spec: Spec, tensor: int) -> int:
    """Bytes per GPU of the 16-bit copy vLLM makes of MLA's key/value up-projection (W_UK, W_UV) when the
    weights are quantized: its decode multiplies them in 16 bits ("we currently do not have quantized bmm's",
    MLACommonImpl.process_weights_after_loading) and keeps the quantized matrix for prefill. Unquantized, they
    are views of it."""
    a = spec.model.attention           # MLA joins no per-layer pattern: every layer's
    if spec.serving.weights == "bf16" or "mla" not in spec.model.attention_types:
        return 0
    heads = spec.model.n_heads // tensor
    return spec.model.n_layers * a.kv_lora_rank * heads * (a.qk_nope_head_dim + a.v_head_dim) * sizes.SIXTEEN_BIT


def weights_per_gpu(spec: Spec, parts: sizes.Parts, tensor: int, weights: int) -> int:
    """A replica GPU's bytes of weights: a tensor-th of them, but key/value projections copied beyond n_kv_heads
    GPUs hold an n_kv_heads-th of theirs, and MLA's down-projections and MoE routers are whole on every GPU
    (vLLM's ReplicatedLinear: the latent they make is every head's; every rank routes its tokens), and so are the
    norms, biases and scales of _whole_on_every_rank; with quantized weights, MLA's up-projection a second time in
    16 bits (mla_absorbed_copy)."""
    copy = mla_absorbed_copy(spec, tensor)
    if tensor == 1:
        return weights + copy
    per_weight = _bytes_per_matrix_weight(parts, weights)
    extra = float(copy) + _whole_on_every_rank(spec, parts) * (1 - 1 / tensor)
    for kind, held in (("kv", kv_heads_split(spec, tensor)), ("replicated", 1)):
        if held < tensor:
            quantized, sixteen = ops.copied_weights(spec.model, kind)
            extra += (quantized * per_weight + sixteen * sizes.SIXTEEN_BIT) * (1 / held - 1 / tensor)
    return math.ceil(weights / tensor + extra)


def _whole_on_every_rank(spec: Spec, parts: sizes.Parts) -> int:
    """Bytes vLLM holds whole on every GPU of a tensor-parallel replica beside the copied projections: what
    training keeps whole (the norms, Cost.tensor_whole: a learned position or AFT bias table, the row-parallel
    biases, the routers' biases, MLA's latents' norms, per-head q and k norms) less the replicated projections
    counted with them, in 16 bits, and what only serving keeps whole: the routed experts' biases, q and k norms
    over every head (OLMo 2's: vLLM gathers q and k to apply them); and the scales that do not split: an fp8
    matrix's one, a row-parallel matrix's per output row (int8, int4 without groups)."""
    model, s = spec.model, spec.serving
    whole = parts(ONE_TOKEN)
    quantized, sixteen = ops.copied_weights(model, "replicated")
    expert_biases, rows = ops.row_parallel_whole(model)
    kept = (sum(whole[k].params for k in TENSOR_REPLICATED if k in whole) + sum(c.tensor_whole for c in whole.values())
            - quantized - sixteen + expert_biases)
    if model.qk_norm == "full":
        kept += qk_norms(model, ONE_TOKEN).params * model.n_layers
    if s.weights == "fp8":
        scales = sizes.quantized(parts).matrices * sizes.FP8_SCALE_BYTES
    elif s.weights == "int8" or (s.weights == "int4" and s.group_size is None):
        scales = rows * sizes.INT_SCALE_BYTES
    else:
        scales = 0
    return kept * sizes.SIXTEEN_BIT + scales


def compute_precision(gpu: GPU, weights: str) -> str:
    """fp8 weights run fp8 GEMMs where the device has them; everything else runs in 16 bits."""
    order = (["fp8"] if weights == "fp8" else []) + ["bf16", "fp16", "fp32"]
    return next(p for p in order if gpu.peak_flops(p) is not None)


@dataclass(frozen=True)
class Replica:
    """What a phase's time depends on, resolved once for a spec and a tensor degree."""

    spec: Spec
    tensor: int
    peak: float                  # FLOP/s of the weight GEMMs' compute precision
    attention_peak: float        # ... of the attention kernels (attention_precision)
    bandwidth: float
    link: float | None
    eff: kernels.Efficiencies
    weights: int                 # bytes of the whole model
    others: float                # bytes of the weights outside GEMMs and embedding tables (norms, biases),
                                 # read once a pass
    kernels: ops.Kernels         # what one GPU's kernels reach
    allreduce_latency: float     # seconds of one small all-reduce among the replica's GPUs

    def allreduce_seconds(self, tokens: int) -> float:
        if self.tensor == 1:
            return 0.0
        t, e = self.tensor, self.eff
        message = tokens * self.spec.model.d_model * ACTIVATION_BYTES
        one = self.allreduce_latency + message * 2 * (t - 1) / t / (self.link * e.allreduce_bus.value)
        # attention's and the MLP's (or fused MoE's) row-parallel outputs, each reduced, in a parallel layer too:
        # vLLM's GPT-J, GPT-NeoX and Phi reduce each RowParallelLinear (its Falcon alone sums them first)
        return ALLREDUCES_PER_LAYER * self.spec.model.n_layers * one

    def phase(self, tokens: int, head_rows: int, core: float, cache: float,
              attention_efficiency: float | None = None) -> tuple[float, str]:
        """Seconds of one forward pass of `tokens` tokens, whose LM head computes `head_rows` rows, on each GPU
        of the replica, and what bounds it: its GEMMs and memory-bound work each on its own roofline
        (costs/serving_ops.py), the attention kernels' core FLOPs at `attention_efficiency` (the `attention`
        figure unless given) against the cache they read (replica totals), the other weights read once, and
        the all-reduces."""
        e, t = self.eff, self.tensor
        work = ops.forward(self.spec.model, tokens, head_rows, self.kernels)
        reach = attention_efficiency or e.attention.value
        attention = core / reach / (t * self.attention_peak), cache / e.memory.value / (t * self.bandwidth)
        others = self.others / (t * self.bandwidth * e.memory.value)
        compute = work.compute + (attention[0] if attention[0] >= attention[1] else 0.0)
        memory = work.memory + others + (attention[1] if attention[0] < attention[1] else 0.0)
        seconds = work.seconds + max(attention) + others + self.allreduce_seconds(tokens)
        return seconds, "compute" if compute >= memory else "memory"


def _replica(spec: Spec, parts: sizes.Parts, tensor: int, weights: int) -> Replica:
    s, gpu, m = spec.serving, spec.gpu, spec.model
    eff = kernels.efficiencies(gpu.key)
    link = gpu.link_bytes_per_s(tensor) if tensor > 1 else None
    per_weight = _bytes_per_matrix_weight(parts, weights)
    every, quantized = ops.gemm_weights(m)
    gemm_bytes = quantized * per_weight + (every - quantized) * sizes.SIXTEEN_BIT
    # An untied embedding lookup gathers its tokens' rows (a memory-bound operation); a tied table is the head's.
    table = parts(ONE_TOKEN)["embedding"].params * sizes.SIXTEEN_BIT if not m.tie_embeddings else 0
    precision = compute_precision(gpu, s.weights)
    peak = gpu.peak_flops(precision)
    bandwidth = gpu.memory_bandwidth_gbs * 1e9
    attention_peak = gpu.peak_flops(attention_precision(gpu, s.weights, s.kv_cache))
    return Replica(spec=spec, tensor=tensor, peak=peak, attention_peak=attention_peak, bandwidth=bandwidth, link=link,
                   eff=eff, weights=weights,
                   others=max(0.0, weights - gemm_bytes - table),
                   kernels=ops.Kernels(peak=peak, curve=gemm_curve(gpu, precision), flat=eff.matmul.value,
                                       bandwidth=bandwidth, memory=eff.memory.value,
                                       weight_memory=eff.weight_memory(s.weights).value,
                                       quantized_bytes=per_weight, tensor=tensor,
                                       kv_tensor=kv_heads_split(spec, tensor)),
                   allreduce_latency=eff.allreduce_latency(tensor, gpu.node_size).value * 1e-6)


def gemm_curve(gpu: GPU, precision: str) -> kernels.Curve | None:
    """The device's GEMM efficiency curve at the compute precision, or None where it has none (then every GEMM
    runs at the `matmul` figure)."""
    curves = gpu.curves()
    return curves.gemm.get(precision) if curves is not None else None


def attention_precision(gpu: GPU, weights: str, kv_cache: str) -> str:
    """The attention kernels run in fp8 only over an fp8 cache of an fp8 model (TensorRT-LLM's fp8 context
    FMHA needs both); fp8 weights over a bf16 cache leave them bf16 FlashAttention kernels."""
    return compute_precision(gpu, "fp8" if weights == kv_cache == "fp8" else "bf16")


def _params(parts: sizes.Parts) -> int:
    return sum(c.params for c in parts(ONE_TOKEN).values())


def _aligned_choices(spec: Spec) -> tuple[list[int], list[int]]:
    """The tensor degrees serve() may use, and those it skips because a GPU's share of a matrix would cut an int4
    group (_misaligned); an error where every one would."""
    s, choices = spec.serving, _tensor_choices(spec)
    if s.weights != "int4" or s.group_size is None:
        return choices, []
    aligned = [t for t in choices if not _misaligned(spec, t)]
    if not aligned:
        at = f", each GPU's share at serving.tensor {choices[0]}" if choices[0] > 1 else ""
        raise SpecError(spec.label, [f"serving.group_size: {s.group_size} does not divide the input width of "
                                    f"every quantized matrix{at} ({_misaligned(spec, choices[0])}); give one that "
                                    "does, or null for a scale per row"])
    return aligned, [t for t in choices if t not in aligned]


def _misaligned(spec: Spec, tensor: int) -> str:
    """The input widths, as one GPU of `tensor` holds them, that serving.group_size does not divide (GPTQ's and
    AWQ's kernels quantize whole groups along each row of a GPU's share, and vLLM refuses a tensor degree that
    cuts one); empty where it divides them all."""
    group = spec.serving.group_size
    return ", ".join(f"{w:g}" for w in ops.quantized_widths(spec.model, tensor) if w % group)


def _tensor_choices(spec: Spec) -> list[int]:
    """serving.tensor, or for auto the powers of two up to a node that split the model (and divide
    serving.gpus when it is set)."""
    s, count = spec.serving, spec.serving.gpus
    if s.tensor != "auto":
        return [s.tensor]
    limit = spec.gpu.node_size if count is None else min(count, spec.gpu.node_size)
    choices = [2**i for i in range(limit.bit_length())
               if 2**i <= limit and (count is None or count % 2**i == 0)]
    return [t for t in choices if not split_rules(spec.model.__dict__.get, t, None, replicate_kv=True)] or [1]


def _memory(spec: Spec, parts: sizes.Parts, tensor: int, weights: int) -> ServingMemory:
    s, gpu = spec.serving, spec.gpu
    tokens = sizes.cached_tokens(s.prompt_tokens, s.output_tokens)
    per_seq = sizes.kv_cache_bytes(parts, tokens, s.kv_cache)
    per_seq_gpu = -(-per_seq // kv_split(spec, tensor))
    weights_gpu = weights_per_gpu(spec, parts, tensor, weights)
    reserve = round(s.reserve * gpu.memory_bytes)
    free = gpu.memory_bytes - reserve - weights_gpu
    # the most sequences a replica holds, at most the largest batch a spec may give (serving.batch, MAX_COUNT):
    # a tiny model's or a stateless one's memory bounds none that a run would hold
    if per_seq_gpu == 0:
        max_batch = 0 if free < 0 else MAX_COUNT
    else:
        max_batch = min(MAX_COUNT, max(0, free // per_seq_gpu))
    batch = s.batch or max(1, max_batch)     # serve() puts the batch it chose in total_per_gpu
    return ServingMemory(
        weights=weights, weights_per_gpu=weights_gpu,
        kv_cache_per_token=sizes.kv_cache_bytes_per_token(parts, s.kv_cache), kv_cache_tokens=tokens,
        kv_cache_per_sequence=per_seq,
        kv_cache_per_sequence_per_gpu=per_seq_gpu, reserve=reserve,
        total_per_gpu=weights_gpu + batch * per_seq_gpu + reserve, gpu_memory=gpu.memory_bytes,
        gpu_memory_stated=gpu.stated_memory_bytes, max_batch=max_batch)


def _setup(spec: Spec) -> tuple[sizes.Parts, ServingMemory, Replica, list[int]]:
    """The cost model's parts (walked once per shape for the whole estimate), the memory per GPU and the replica
    at the tensor degree serve() uses (the fewest GPUs that hold serving.batch, or one sequence), and the degrees
    it skipped (_aligned_choices)."""
    s = spec.serving
    choices, skipped = _aligned_choices(spec)
    parts = sizes.Parts(spec)
    weights = sizes.weight_bytes(parts, s.weights, s.group_size)
    held = s.batch or 1     # the weights and one sequence, or the batch asked for
    tensor = next((t for t in choices if _memory(spec, parts, t, weights).max_batch >= held), choices[-1])
    return parts, _memory(spec, parts, tensor, weights), _replica(spec, parts, tensor, weights), skipped


def prefill_seconds(spec: Spec, sequences: int) -> float:
    """Seconds to prefill `sequences` prompts of serving.prompt_tokens in one pass (a static batch's context
    phase: their tokens in the same GEMMs, the weights read once) on the replica serve() picks."""
    parts, _, replica, _ = _setup(spec)
    return _prefill(parts, replica, spec.serving.prompt_tokens, sequences)[0]


def serve(spec: Spec) -> ServingEstimate:
    """Memory, latency, throughput and cost of serving the spec at its `serving` settings."""
    s, gpu, hw = spec.serving, spec.gpu, spec.hardware
    if s.prompt_tokens is None:     # the default prompt is the context the output leaves: none left
        fewer = "; give fewer output tokens" if spec.model.max_seq_len > 1 else ""
        raise SpecError(spec.label, [f"serving.output_tokens: {s.output_tokens} leaves no room for a prompt in "
                                    f"model.max_seq_len ({spec.model.max_seq_len}){fewer}"])
    parts, memory, replica, skipped = _setup(spec)
    tensor = replica.tensor
    p, o = s.prompt_tokens, s.output_tokens
    steps = o - 1       # decode steps: the prefill's logits give the first output token
    cached = sizes.decode_cached(p, o)
    fits = memory.max_batch >= 1 and (s.batch is None or s.batch <= memory.max_batch)

    ttft, prefill_bound = _prefill(parts, replica, p)

    core, cache = decode_attention(parts, p, o, s.kv_cache)
    cache *= tensor / kv_split(spec, tensor)

    def step(batch: int) -> tuple[float, str]:
        """One decode step of `batch` sequences: one token of each through every operation, every cache."""
        return replica.phase(batch, batch, batch * core, batch * cache)

    def prefill_share(batch: int) -> float:
        """A request's share of the prefill pass a busy replica serving `batch` sequences runs."""
        per_pass = prompts_per_pass(s.prefill_tokens, p, batch)
        return ttft if per_pass == 1 else _prefill(parts, replica, p, per_pass)[0] / per_pass

    def loaded(batch: int) -> float:
        """Time per output token under load, between a request's tokens: a step, and the other requests' prefill
        passes the replica runs between steps. A request holds its place batch / requests/s (Little's law),
        batch × (its share of a pass) + (o − 1) steps, of which its own pass (the prompts a pass holds, times the
        share) comes before its first token: the o − 1 gaps after it hold the rest, (batch − prompts a pass) ×
        share / (o − 1) each beside the step; a lone request's gap is the step (vLLM's inter-token latency)."""
        return step(batch)[0] + (batch - prompts_per_pass(s.prefill_tokens, p, batch)) * prefill_share(batch) / steps

    batch, rule = _batch(s, memory.max_batch, loaded if steps else None)
    memory = memory.model_copy(update={"total_per_gpu": memory.weights_per_gpu + batch *
                                       memory.kv_cache_per_sequence_per_gpu + memory.reserve})
    tpot, decode_bound = step(batch)
    tpot_loaded = loaded(batch) if steps else None
    if not steps:       # one output token, the prefill's: no decode step runs
        tpot, decode_bound = None, NO_DECODE
    meets = fits and ((s.tpot_ms is None or tpot_loaded is None or tpot_loaded <= s.tpot_ms / 1000)
                      and (s.ttft_ms is None or ttft <= s.ttft_ms / 1000))      # a replica that does not fit meets none
    gpus = s.gpus or tensor                         # one replica unless serving.gpus asks for more
    replicas = gpus // tensor
    price = hw.usd_per_gpu_hour if hw.usd_per_gpu_hour is not None else gpu.usd_per_gpu_hour
    usd_per_gpu_second = price / SECONDS_PER_HOUR
    per_pass = prompts_per_pass(s.prefill_tokens, p, batch)
    prefill = prefill_share(batch)
    decode = steps * tpot / batch if steps else 0.0     # a request's replica-seconds of decode steps
    request = prefill + decode                      # replica-seconds per request
    per_replica = 1 / request
    moe = spec.model.moe
    eff = replica.eff
    sixteen = compute_precision(gpu, "bf16")       # what 16-bit weights run as here (fp16 on a V100)
    assumptions = ServingAssumptions(
        gpu=gpu.key, gpu_name=gpu.name, gpus=gpus, tensor=tensor, replicas=replicas, prompt_tokens=p,
        output_tokens=o, decode_context=cached, decode_chunks_averaged="chunked" in spec.model.attention_types,
        prefill_prompts_per_pass=per_pass, weights=s.weights,
        group_size=s.group_size if s.weights == "int4" else None, tensor_skipped=skipped,
        quantized=QUANTIZED_NOTE[s.weights].format(
            group=f"{s.group_size} input weights" if s.group_size else "output row",
            sixteen=sixteen if sixteen != "fp32" else "16 bits, computed in fp32 (no 16-bit peak on this device)"),
        kv_cache=s.kv_cache, kv_cache_split=kv_split(spec, tensor),
        compute_precision=compute_precision(gpu, s.weights), sixteen_bit=sixteen, peak_flops_per_gpu=replica.peak,
        memory_bandwidth_bytes_per_s=replica.bandwidth, link_bytes_per_s=replica.link,
        reserve_fraction=s.reserve, batch_rule=rule,
        latency_targets={k: v for k, v in (("tpot_ms", s.tpot_ms), ("ttft_ms", s.ttft_ms)) if v is not None},
        efficiency_device=eff.device, latency_device=eff.latency_device,
        efficiencies=_efficiencies(eff, s.weights, tensor, gpu.node_size),
        gemm_curve=replica.kernels.curve.source if replica.kernels.curve is not None else None,
        moe_experts_read_per_step=expected_experts(moe.n_experts, moe.top_k, batch) if moe else None,
        not_modelled=NOT_MODELLED,
        price_source="hardware.usd_per_gpu_hour" if hw.usd_per_gpu_hour is not None else gpu.price_said,
    )
    gpus_for_rate = math.ceil(s.rate * request) * tensor if fits and s.rate else None
    if gpus_for_rate is not None and gpus_for_rate > MAX_COUNT:     # past any cluster, and any count a spec takes
        raise SpecError(spec.label, [f"serving.rate: {s.rate:g} requests/s needs {gpus_for_rate:.3g} GPUs, more than "
                                    f"the {MAX_COUNT:,} costplan plans for (hardware.count's limit)"])
    return ServingEstimate(
        name=spec.name, fits=fits, meets_targets=meets, memory=memory,
        latency=ServingLatency(ttft_seconds=ttft if fits else None, tpot_seconds=tpot if fits else None,
                               tpot_under_load_seconds=tpot_loaded if fits else None,
                               prefill_bound=prefill_bound, decode_bound=decode_bound),
        throughput=ServingThroughput(
            batch=batch,
            tokens_per_second_per_gpu=o * per_replica / tensor if fits else None,
            requests_per_second=per_replica * replicas if fits else None,
            requests_per_second_per_replica=per_replica if fits else None),
        cost=ServingCost(
            usd_per_million_input_tokens=tensor * prefill / p * 1e6 * usd_per_gpu_second if fits else None,
            usd_per_million_output_tokens=tensor * decode / o * 1e6 * usd_per_gpu_second if fits else None,
            usd_per_gpu_hour=price,
            gpus_for_rate=gpus_for_rate),
        assumptions=assumptions,
    )


# How much less a larger automatic tensor degree must cost a request before serve points at it: below this the two
# are one price within what the model can tell apart.
CHEAPER_DEGREE = 0.9


def cheaper_degree(spec: Spec, est: ServingEstimate) -> ServingEstimate | None:
    """Where serving.tensor is automatic (the fewest GPUs per replica that hold the batch), the estimate at the
    larger degree the node allows that serves a request cheapest, where that is under CHEAPER_DEGREE of this one's
    cost and meets the spec's latency targets: more GPUs per replica hold more of the cache, so a larger batch a
    GPU. None otherwise."""
    if spec.serving.tensor != "auto" or not est.fits:
        return None
    best, cost = None, request_usd(est) * CHEAPER_DEGREE
    for tensor in _aligned_choices(spec)[0]:
        if tensor <= est.assumptions.tensor:
            continue
        # serving.rate left out: a request's cost does not depend on it, and the GPUs it asks for are this
        # estimate's to check, not the other degree's
        tried = spec.serving.model_copy(update={"tensor": tensor, "rate": None})
        other = serve(spec.model_copy(update={"serving": tried}))
        if other.fits and other.meets_targets and request_usd(other) < cost:
            best, cost = other, request_usd(other)
    return best


def _efficiencies(eff: kernels.Efficiencies, weights: str, tensor: int, node_size: int) -> dict[str, Efficiency]:
    """Every figure of the device's table, and the two this estimate applied: the HBM efficiency of its
    weight format's kernels (weight_memory) and the all-reduce latency of its tensor group (allreduce_latency)."""
    figures = {name: getattr(eff, name) for name in kernels.FIELDS}
    figures |= {"weight_memory": eff.weight_memory(weights),
                "allreduce_latency": eff.allreduce_latency(tensor, node_size)}
    return {name: Efficiency(value=f.value, source=f.source) for name, f in figures.items()}


def _prefill(parts: sizes.Parts, replica: Replica, prompt: int, sequences: int = 1) -> tuple[float, str]:
    """`sequences` prompts in one pass (one alone for TTFT): their tokens share each GEMM, each prompt's last
    token computes logits, and each prompt's attention core runs as a causal kernel executes it (the prompt's
    executed FLOPs less its GEMMs'), at the efficiency a FlashAttention kernel reaches at its length."""
    model = parts.spec.model
    core = sizes.prefill_executed_flops(parts, prompt) - ops.gemm_flops(model, prompt, 1)
    reach = ops.prefill_attention_efficiency(model, prompt, parts.spec.gpu.curves(), replica.eff.attention.value)
    return replica.phase(prompt * sequences, sequences, sequences * max(0, core), 0.0, reach)


def prompts_per_pass(prefill_tokens: int, prompt: int, batch: int) -> int:
    """Prompts a busy replica prefills in one pass: as many whole prompts as the pass takes tokens, at least one
    (a longer prompt is one pass of its own) and at most the batch it serves."""
    return max(1, min(batch, prefill_tokens // prompt))


def decode_attention(parts: sizes.Parts, prompt: int, output: int, kv_cache: str) -> tuple[float, float]:
    """A decode step's attention per sequence, on average over the o − 1 steps: the core's FLOPs (one query
    over its visible keys: the token's FLOPs less its GEMMs') and the cache bytes it reads, whole (before the
    GPUs split it), at the steps' mean cached tokens but chunked layers' (costs/serving.py chunk_decode)."""
    cached = sizes.decode_cached(prompt, output)
    chunk_read, chunk_flops = sizes.chunk_decode(parts, sizes.decode_steps(prompt, output), cached, kv_cache)
    core = sizes.decode_flops(parts, cached) - ops.gemm_flops(parts.spec.model, 1, 1) + chunk_flops
    # the step reads the cached tokens and its own, written before the attention reads them
    return core, sizes.kv_cache_bytes(parts, cached + 1, kv_cache) + chunk_read


def _batch(s, max_batch: int, tpot) -> tuple[int, str]:
    """The batch served: serving.batch, else the largest that fits and meets the time-per-token target under load,
    found by bisection (throughput grows with the batch, so the largest is the best); `tpot` None: no decode step
    runs. The bisection takes the time to grow with the batch, as it does but for small dips where a larger batch's
    GEMMs reach a better efficiency (the device's curves) or its tokens touch the same experts: a target within
    such a dip can be met by a batch above the one found too."""
    if s.batch is not None:
        return s.batch, "serving.batch"
    if max_batch < 1:
        return 1, "nothing fits"
    if s.tpot_ms is None:
        return max_batch, "the most sequences that fit in memory"
    if tpot is None:
        return max_batch, ("the most sequences that fit in memory (one output token: no decode step to hold to "
                           "serving.tpot_ms)")
    target = s.tpot_ms / 1000
    if tpot(1) > target:
        return 1, "the time-per-token target is missed even at batch 1"
    low, high = 1, max_batch
    while low < high:                # the largest batch whose step meets the target
        mid = (low + high + 1) // 2
        low, high = (mid, high) if tpot(mid) <= target else (low, mid - 1)
    return low, "the most sequences that fit and meet the time-per-token target"
