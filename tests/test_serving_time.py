"""The serving roofline: memory per GPU, the largest batch, prefill and decode times, cost, by hand."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

import costplan
from costplan.costs import inference, serving
from costplan.costs.attention.pairs import causal_pairs
from costplan.costs.serving_result import ServingEstimate

CI = Path(__file__).parents[1] / "specs" / "ci"

GIB = 2**30
# Llama 2 7B (see test_serving.py): 32 layers, d 4096, vocab 32000, 6,476,005,376 weights in its layers.
L, D, V = 32, 4096, 32000
LAYER_WEIGHTS = 6_476_005_376
WEIGHT_BYTES = 2 * 6_738_415_616
KV_PER_TOKEN = 512 * 1024
# A100 80GB: 312 TFLOP/s bf16, 2039 GB/s, 79.14 GiB of its 80 for PyTorch ("total capacity of 79.14 GiB" in an
# out-of-memory message); data/kernels.yaml: HBM 0.88, its bf16 GEMM curve: 0.383 of the
# peak up to size 1024, 0.711 at 2048, 0.731 at 4096, linear in log2(size) between; FlashAttention-2's forward at
# head dim 128: 0.317 up to 512 keys per query (a causal kernel's doubled).
PEAK, BW, MEMORY = 312e12, 2039e9, int(79.14 * GIB)
HBM, FLASH_SHORT = 0.88, 0.317
F = 11008
NORM_BYTES = 2 * (2 * L + 1) * D       # 65 RMSNorm weights: read once a pass, outside the GEMMs


def a100_gemm_efficiency(size: float) -> float:
    if size <= 1024:
        return 0.383
    if size <= 2048:
        return 0.383 + (math.log2(size) - 10) * (0.711 - 0.383)
    assert size <= 4096
    return 0.711 + (math.log2(size) - 11) * (0.731 - 0.711)


def llama_gemms(rows: int, head_rows: int) -> list[tuple[int, int, int, int]]:
    """(layers, rows, d_in, d_out) of each of Llama 2 7B's weight GEMMs in a pass: q, k, v, o; gate, up, down;
    the LM head."""
    return ([(L, rows, D, D)] * 4 + [(L, rows, D, F)] * 2 + [(L, rows, F, D)] + [(1, head_rows, D, V)])


def llama_streams(rows: int, head_rows: int, t: int = 1) -> float:
    """Bytes of Llama 2 7B's memory-bound work on one of t GPUs: per layer two RMSNorms (read and write d), two
    residual adds (read two, write one), rotary on q and k (read and write), SwiGLU (read gate and up, write one),
    the last two split by t; the final norm on the head's rows and the embedding lookup (read and write d)."""
    layer = rows * (2 * 2 * D + 2 * 3 * D + (2 * 2 * D + 3 * F) / t) * 2
    return L * layer + 2 * head_rows * D * 2 + 2 * rows * D * 2


def gemm_times(rows: int, head_rows: int, t: int = 1, weight_bytes: float = 2, weight_hbm: float = HBM
               ) -> tuple[float, float, float]:
    """Compute and memory seconds of those GEMMs on one of t GPUs, and the sum of each one's larger: each split by
    t (the column- or row-parallel width), its weights at weight_bytes (the head's at 2) and its activations,
    rows × (d_in + d_out / t), 16-bit."""
    compute = memory = own = 0.0
    for layers, m, d_in, d_out in llama_gemms(rows, head_rows):
        quantized = d_out != V
        flops = 2 * m * d_in * d_out / t
        c = flops / (PEAK * a100_gemm_efficiency((m * d_in * d_out / t) ** (1 / 3)))
        w = d_in * d_out / t * (weight_bytes if quantized else 2) / (weight_hbm if quantized else HBM)
        mem = (w + m * (d_in + d_out / t) * 2 / HBM) / BW
        compute, memory, own = compute + layers * c, memory + layers * mem, own + layers * max(c, mem)
    return compute, memory, own


def llama(*sets: str) -> ServingEstimate:
    return inference.serve(costplan.load_spec("llama2-7b", ["hardware.gpu=a100-80gb", "hardware.count=1",
                                                            *sets]))


def test_expected_experts_one_token_reads_k_many_tokens_read_all():
    assert inference.expected_experts(256, 8, 1) == pytest.approx(8)
    assert inference.expected_experts(8, 2, 1) == pytest.approx(2)
    assert inference.expected_experts(256, 8, 10_000) == pytest.approx(256)
    # two tokens: each expert is missed by both with probability (1 − k/E)²
    assert inference.expected_experts(8, 2, 2) == pytest.approx(8 * (1 - 0.75**2))


def test_max_batch_is_what_is_left_after_weights_and_reserve():
    est = llama("serving.prompt_tokens=1000", "serving.output_tokens=24")
    per_sequence = 1023 * KV_PER_TOKEN      # the last of the 24 output tokens is sampled, never cached
    reserve = round(0.1 * MEMORY)
    assert est.memory.kv_cache_per_sequence == per_sequence
    assert est.memory.max_batch == (MEMORY - reserve - WEIGHT_BYTES) // per_sequence
    assert est.throughput.batch == est.memory.max_batch
    assert est.memory.total_per_gpu == WEIGHT_BYTES + est.memory.max_batch * per_sequence + reserve


def test_decode_at_batch_1_reads_the_weights_and_one_cache():
    est = llama("serving.batch=1", "serving.prompt_tokens=1000", "serving.output_tokens=200")
    context = 1100        # keys a step reads on average: the 199 steps feed positions 1000 .. 1198, each reading x + 1
    compute, memory, _ = gemm_times(1, 1)
    assert compute < memory                           # every kernel memory-bound, as decode at batch 1 is
    # every GEMM's weights once, the norms' weights, the memory-bound work and the cache; the untied input
    # embedding is not read whole: its lookup gathers the new token's row
    read = memory + (NORM_BYTES + llama_streams(1, 1) + context * KV_PER_TOKEN) / (BW * HBM)
    assert read == pytest.approx((WEIGHT_BYTES - 2 * V * D + context * KV_PER_TOKEN) / (BW * HBM), rel=1e-3)
    assert est.latency.decode_bound == "memory"
    assert est.latency.tpot_seconds == pytest.approx(read, rel=1e-12)


def test_a_decode_step_sums_each_kernels_own_bound():
    # At batch 128 each GEMM is compute-bound (128 rows: q at size (128·4096·4096)^(1/3) = 1290.2, 49.2% of the peak)
    # while the attention kernels read 128 caches: the step takes both, not the larger of the two totals.
    b, context = 128, 112                             # the 23 steps read 101 .. 123 keys, 112 on average
    est = llama(f"serving.batch={b}", "serving.prompt_tokens=100", "serving.output_tokens=24")
    assert a100_gemm_efficiency((b * D * D) ** (1 / 3)) == pytest.approx(0.492, abs=1e-3)
    for layers, m, d_in, d_out in llama_gemms(b, b)[:-1]:      # the layers' GEMMs; the head's is memory-bound
        assert 2 * m * d_in * d_out / (PEAK * a100_gemm_efficiency((m * d_in * d_out) ** (1 / 3))) > (
            2 * d_in * d_out + 2 * m * (d_in + d_out)) / (BW * HBM)
    compute, memory, gemms = gemm_times(b, b)
    cache = b * context * KV_PER_TOKEN / (BW * HBM)
    other = (NORM_BYTES + llama_streams(b, b)) / (BW * HBM)
    assert est.latency.tpot_seconds == pytest.approx(gemms + cache + other, rel=1e-12)
    assert est.latency.tpot_seconds > 1.1 * max(compute, memory + cache + other)   # the old aggregate roofline


def test_prefill_of_one_tile_by_hand():
    p = 128
    est = llama(f"serving.prompt_tokens={p}", "serving.batch=1")
    assert causal_pairs(p) == p * p                   # one 128-query tile computes its whole square
    gemms = 0.0                                       # each GEMM at its own bound; logits for the last token only
    for layers, m, d_in, d_out in llama_gemms(p, 1):
        size = (m * d_in * d_out) ** (1 / 3)          # 1290.2 for q, k, v, o; 1795.3 for the MLP; 508 the head
        compute = 2 * m * d_in * d_out / (PEAK * a100_gemm_efficiency(size))
        gemms += layers * max(compute, (2 * d_in * d_out + 2 * m * (d_in + d_out)) / (BW * HBM))
    core = L * 4 * D * p * p / (PEAK * FLASH_SHORT)      # 256 keys per query for the causal curve
    assert a100_gemm_efficiency(128 ** (1 / 3) * 4096 ** (2 / 3)) == pytest.approx(0.4923, abs=1e-4)
    expected = gemms + core + (NORM_BYTES + llama_streams(p, 1)) / (BW * HBM)
    assert est.latency.ttft_seconds == pytest.approx(expected, rel=1e-12)


def test_a_static_batch_prefills_its_prompts_together():
    # Eight 128-token prompts in one pass: 1024 rows per GEMM, each weight read once.
    spec = costplan.load_spec("llama2-7b", ["hardware.gpu=a100-80gb", "serving.prompt_tokens=128"])
    assert inference.prefill_seconds(spec, 1) == inference.serve(spec).latency.ttft_seconds
    gemms = 0.0
    for layers, m, d_in, d_out in llama_gemms(8 * 128, 8):
        compute = 2 * m * d_in * d_out / (PEAK * a100_gemm_efficiency((m * d_in * d_out) ** (1 / 3)))
        gemms += layers * max(compute, (2 * d_in * d_out + 2 * m * (d_in + d_out)) / (BW * HBM))
    core = 8 * L * 4 * D * 128 * 128 / (PEAK * FLASH_SHORT)
    expected = gemms + core + (NORM_BYTES + llama_streams(1024, 8)) / (BW * HBM)
    assert inference.prefill_seconds(spec, 8) == pytest.approx(expected, rel=1e-12)


def llama_spec(*sets: str):
    return costplan.load_spec("llama2-7b", ["hardware.gpu=a100-80gb", "hardware.count=1", *sets])


def test_costs_split_gpu_time_between_prefill_and_decode():
    # Llama 2 7B's default 1024-token prompts, 8 to a prefill pass of 8192 tokens (the batch is 8 too): each
    # request is charged an eighth of that pass, and its output tokens their share of its o − 1 decode steps (the
    # prefill gives the first): input and output prices together are the request's GPU-time.
    sets = ("serving.batch=8", "hardware.usd_per_gpu_hour=3.6")
    est = llama(*sets)
    p, o = est.assumptions.prompt_tokens, est.assumptions.output_tokens
    assert (p, est.assumptions.prefill_prompts_per_pass) == (1024, 8)
    prefill = inference.prefill_seconds(llama_spec(*sets), 8) / 8
    per_second = 3.6 / 3600
    assert est.cost.usd_per_million_input_tokens == pytest.approx(prefill / p * 1e6 * per_second, rel=1e-12)
    decode = (o - 1) * est.latency.tpot_seconds / 8
    assert est.cost.usd_per_million_output_tokens == pytest.approx(decode / o * 1e6 * per_second)
    request = prefill + decode
    assert est.throughput.requests_per_second == pytest.approx(1 / request)
    assert est.throughput.tokens_per_second_per_gpu == pytest.approx(o / request)
    assert (p * est.cost.usd_per_million_input_tokens + o * est.cost.usd_per_million_output_tokens) / 1e6 == \
        pytest.approx(request * per_second)


@pytest.mark.parametrize("prefill_tokens, prompt, batch, expected", [
    (8192, 1024, 365, 8), (8192, 1000, 365, 8), (8192, 128, 40, 40), (8192, 20000, 12, 1), (100, 128, 64, 1)])
def test_prompts_per_prefill_pass(prefill_tokens, prompt, batch, expected):
    # whole prompts only, at least one (a longer prompt is a pass of its own), never more than the batch served
    assert inference.prompts_per_pass(prefill_tokens, prompt, batch) == expected


def test_one_prompt_a_pass_charges_each_prompt_its_whole_prefill():
    est = llama("serving.batch=8", "serving.prompt_tokens=128", "serving.prefill_tokens=128")
    assert est.assumptions.prefill_prompts_per_pass == 1
    request = est.latency.ttft_seconds + (est.assumptions.output_tokens - 1) * est.latency.tpot_seconds / 8
    assert est.throughput.requests_per_second == pytest.approx(1 / request)


def test_a_request_runs_one_decode_step_fewer_than_its_output_tokens():
    # vLLM's serving benchmark defines TPOT as (end-to-end latency − TTFT) / (output tokens − 1): the prefill
    # samples the first token, each decode step one more. A lone request (batch 1, one prompt a pass) then takes
    # TTFT + (o − 1) · TPOT, and its replica serves o tokens in that time.
    for o in (2, 16, 256):
        est = llama("serving.batch=1", f"serving.output_tokens={o}")
        lat = est.latency
        assert est.assumptions.prefill_prompts_per_pass == 1
        assert est.throughput.tokens_per_second_per_gpu == pytest.approx(
            o / (lat.ttft_seconds + (o - 1) * lat.tpot_seconds), rel=1e-12)


def test_one_output_token_runs_no_decode_step():
    # the prefill's token is the whole output: a request is its share of a prefill pass, no time per output token
    # exists to report or to hold to a target, and the output tokens cost nothing beyond the input's prefill
    est = llama("serving.output_tokens=1")
    lat = est.latency
    assert (lat.tpot_seconds, lat.tpot_under_load_seconds, lat.decode_bound) == (None, None, "none")
    per_pass = est.assumptions.prefill_prompts_per_pass
    prefill = inference.prefill_seconds(llama_spec("serving.output_tokens=1"), per_pass) / per_pass
    assert est.throughput.requests_per_second == pytest.approx(1 / prefill, rel=1e-12)
    assert est.cost.usd_per_million_output_tokens == 0
    held = llama("serving.output_tokens=1", "serving.tpot_ms=0.001")
    assert held.meets_targets and held.throughput.batch == held.memory.max_batch
    assert "no decode step" in held.assumptions.batch_rule


def test_short_prompts_share_a_prefill_pass():
    # 8 prompts of 128 tokens in one pass (timed by hand in the test above): 1024 rows per GEMM, 0.73 of the
    # A100's peak against 0.49 at 128 rows, and the weights read once; each prompt is charged an eighth of it.
    sets = ("serving.batch=8", "serving.prompt_tokens=128")
    alone = llama(*sets, "serving.prefill_tokens=128")
    shared = llama(*sets)
    assert shared.assumptions.prefill_prompts_per_pass == 8
    pass_seconds = inference.prefill_seconds(llama_spec(*sets), 8)
    price = shared.cost.usd_per_gpu_hour / 3600
    assert shared.cost.usd_per_million_input_tokens == pytest.approx(pass_seconds / 8 / 128 * 1e6 * price, rel=1e-12)
    assert pass_seconds / 8 < alone.latency.ttft_seconds     # 7.9 ms a prompt against 9.7 ms alone
    # the time to first token is still one prompt alone; under load a token waits for less prefill
    assert (shared.latency.ttft_seconds, shared.latency.tpot_seconds) == (alone.latency.ttft_seconds,
                                                                          alone.latency.tpot_seconds)
    assert shared.latency.tpot_under_load_seconds < alone.latency.tpot_under_load_seconds


def test_gpus_for_a_rate_are_whole_replicas():
    est = llama("serving.batch=8", "serving.rate=50")
    request = 1 / est.throughput.requests_per_second_per_replica
    assert est.cost.gpus_for_rate == math.ceil(50 * request)


def test_largest_batch_within_the_time_per_token_target():
    # the target holds the time per output token a busy replica gives, its prefill passes between steps included
    free = llama()
    target = free.latency.tpot_under_load_seconds * 0.5
    est = llama(f"serving.tpot_ms={target * 1000}")
    batch = est.throughput.batch
    assert 1 < batch < free.memory.max_batch and est.latency.tpot_under_load_seconds <= target
    assert llama(f"serving.batch={batch + 1}").latency.tpot_under_load_seconds > target
    assert est.latency.tpot_seconds < target


def test_time_per_token_under_load_is_littles_law():
    # A replica holding B sequences completes X requests a second, so each stays B / X seconds (Little's law):
    # its own prefill pass, whose end gives its first token, then the o − 1 gaps between its tokens (what a
    # serving benchmark's inter-token latency, (end-to-end − TTFT) / (o − 1), averages).
    for sets in ((), ("serving.prompt_tokens=128",), ("serving.batch=8",)):
        est = llama(*sets)
        b, o, per_pass = est.throughput.batch, est.assumptions.output_tokens, est.assumptions.prefill_prompts_per_pass
        x = est.throughput.requests_per_second_per_replica
        own_pass = inference.prefill_seconds(llama_spec(*sets), per_pass)
        assert est.latency.tpot_under_load_seconds == pytest.approx((b / x - own_pass) / (o - 1), rel=1e-9)
        # 8 sequences prefilled in one pass decode together, with no other prefill between their steps
        assert (est.latency.tpot_under_load_seconds > est.latency.tpot_seconds) == (b > per_pass)


def test_a_lone_requests_tokens_come_a_step_apart():
    # at batch 1 no other request's prefill runs while one decodes: under load its gaps are the steps, however
    # short its output (the prefill passes' whole time had been charged to its one or few gaps)
    for o in (2, 3, 256):
        lat = llama("serving.batch=1", f"serving.output_tokens={o}").latency
        assert lat.tpot_under_load_seconds == lat.tpot_seconds


def test_tensor_parallel_adds_two_all_reduces_per_layer():
    two = llama("serving.batch=4", "serving.tensor=2", "serving.gpus=2")
    # memory-bound: each GEMM's weights halved, the cache, norms' weights and split work halved, the d-wide
    # norms and residual adds whole; then 2·L all-reduces of 4 tokens × d × 2 bytes, each moving 2(t − 1)/t of it
    # at 300 GB/s per direction × 0.8, plus 10 µs
    # the 255 steps feed positions 1024 .. 1278: each reads its cached tokens and its own, 1,152 on average
    keys = 1024 + 256 // 2
    assert two.assumptions.decode_context == keys - 1
    compute, memory, _ = gemm_times(4, 4, t=2)
    assert compute < memory
    rest = (NORM_BYTES / 2 + llama_streams(4, 4, t=2) + 4 * keys * KV_PER_TOKEN / 2) / (BW * HBM)
    message = 4 * D * 2
    allreduce = 2 * L * (10e-6 + message * 2 * (1 / 2) / (300e9 * 0.8))
    assert two.latency.tpot_seconds == pytest.approx(memory + rest + allreduce, rel=1e-12)
    # every rank holds the 65 RMSNorm weights of 4096 whole (vLLM's RMSNorm is not split)
    assert two.memory.weights_per_gpu == WEIGHT_BYTES // 2 + (2 * 32 + 1) * 4096 * 2 // 2
    assert two.assumptions.kv_cache_split == 2


@pytest.mark.parametrize("block", ["sequential", "sandwich", "parallel", "parallel_shared_norm"])
def test_every_layer_structure_all_reduces_attention_and_mlp_apart_in_serving(block):
    # vLLM's parallel-block models (GPT-J, GPT-NeoX, Phi) reduce each RowParallelLinear's output, as a sequential
    # layer does (only its Falcon sums the two first; training in GPT-NeoX does too: the step model's count):
    # 2 all-reduces a layer of 4 tokens × d × 2 bytes, 2(t − 1)/t of it at 300 GB/s per direction × 0.8, plus 10 µs
    spec = costplan.load_spec("llama2-7b", ["hardware.gpu=a100-80gb", "serving.tensor=2", "serving.gpus=2",
                                            f"model.block={block}"])
    _, _, replica, _ = inference._setup(spec)
    one = 10e-6 + 4 * D * 2 * 2 * (1 / 2) / (300e9 * 0.8)
    assert replica.allreduce_seconds(4) == pytest.approx(2 * L * one, rel=1e-12)


def test_auto_tensor_takes_the_fewest_gpus_that_hold_the_model():
    est = inference.serve(costplan.load_spec("llama2-70b", ["serving.gpus=8"]))   # 128 GiB of bf16 weights
    assert est.assumptions.tensor == 2 and est.assumptions.replicas == 4
    assert est.throughput.requests_per_second == pytest.approx(4 * est.throughput.requests_per_second_per_replica)


def test_serving_defaults_to_one_replica_not_the_training_cluster():
    # The presets' hardware.count is a training cluster (thousands of GPUs); serving one model takes one replica.
    spec = costplan.load_spec("llama2-70b")
    assert spec.hardware.count > 8
    est = inference.serve(spec)
    assert (est.assumptions.replicas, est.assumptions.gpus) == (1, est.assumptions.tensor)
    assert est.throughput.requests_per_second == pytest.approx(est.throughput.requests_per_second_per_replica)
    assert inference.serve(costplan.load_spec("llama2-70b", ["serving.gpus=6", "serving.tensor=2"])
                           ).assumptions.replicas == 3


def test_mla_cache_is_whole_on_every_gpu_and_gqa_heads_are_split():
    v3 = inference.serve(costplan.load_spec("deepseek-v3", ["hardware.count=8", "hardware.gpu=h200",
                                                            "serving.weights=fp8"]))
    assert v3.assumptions.kv_cache_split == 1
    assert v3.memory.kv_cache_per_sequence_per_gpu == v3.memory.kv_cache_per_sequence
    llama70 = inference.serve(costplan.load_spec("llama2-70b", ["hardware.count=8", "serving.tensor=8"]))
    assert llama70.memory.kv_cache_per_sequence_per_gpu == llama70.memory.kv_cache_per_sequence // 8


def test_a_tensor_degree_above_the_kv_heads_copies_them_as_vllm_does():
    # Qwen3-30B-A3B: 48 layers, d_model 2048, 4 KV heads of 128. vLLM serves it on 8 GPUs by giving each GPU one
    # KV head (two copies of each), so each GPU holds a quarter of the cache and of the K/V projections.
    est = inference.serve(costplan.load_spec("qwen3-30b-a3b", ["serving.tensor=8", "serving.batch=1"]))
    one = inference.serve(costplan.load_spec("qwen3-30b-a3b", ["serving.tensor=1", "hardware.gpu=h200",
                                                               "serving.batch=1"]))
    m = est.memory
    assert est.assumptions.kv_cache_split == 4
    assert m.kv_cache_per_sequence_per_gpu == m.kv_cache_per_sequence // 4
    kv_projections = 48 * 2 * 2048 * (4 * 128) * 2                 # bytes of every layer's K and V matrices
    routers = 48 * 2048 * 128 * 2              # every layer's router, whole on each GPU (vLLM's ReplicatedLinear)
    norms = (2 * 48 + 1) * 2048 * 2            # and the RMSNorms around each block and the final one,
    norms += 48 * 2 * 128 * 2                  # and each layer's q and k norms over head_dim (Qwen3)
    assert m.weights_per_gpu == math.ceil(one.memory.weights_per_gpu / 8 + kv_projections * (1 / 4 - 1 / 8)
                                          + (routers + norms) * (1 - 1 / 8))
    # training keeps Megatron's rule: the degree divides the KV heads
    with pytest.raises(costplan.SpecError, match="parallelism.tensor: 8 does not divide model.n_kv_heads"):
        costplan.load_spec("qwen3-30b-a3b", ["hardware.count=8", "parallelism.tensor=8"])
    with pytest.raises(costplan.SpecError, match="serving.tensor: 3 does not divide model.n_kv_heads .4. nor"):
        costplan.load_spec("qwen3-30b-a3b", ["serving.tensor=3"])


def test_moe_decode_reads_only_the_experts_its_tokens_touch():
    spec = costplan.load_spec("mixtral-8x7b", ["hardware.gpu=h200", "serving.batch=1"])
    est = inference.serve(spec)
    assert est.assumptions.moe_experts_read_per_step == pytest.approx(2)
    batched = inference.serve(costplan.load_spec("mixtral-8x7b", ["hardware.gpu=h200", "serving.batch=64"]))
    assert batched.assumptions.moe_experts_read_per_step == pytest.approx(8 * (1 - 0.75**64))


def test_a_model_that_does_not_fit_has_no_times():
    est = inference.serve(costplan.load_spec("deepseek-v3", ["hardware.count=8", "serving.weights=fp8"]))
    assert not est.fits and est.memory.max_batch == 0
    assert est.latency.tpot_seconds is None and est.cost.usd_per_million_output_tokens is None


def test_moe_decode_at_batch_1_reads_top_k_of_the_routed_experts():
    # Mixtral 8x7B: 46,702,792,704 parameters, of which 32 layers × 8 experts × 3 × 4096 × 14336 routed
    # (Jiang et al. 2024); on one H200 (4800 GB/s, its streams at 84%: data/kernels.yaml) at batch 1 a step reads
    # the rest and 2 of 8 experts per layer, and the cache at 1024 + 256/2 tokens of 128 KiB. The 2 experts are one
    # grouped kernel per projection: their weights' loads, then their compute (one row each, on the H200's bf16
    # curve as batched GEMMs of 4 and 2 groups), which outlasts their rows' bytes (ops.gemm_time).
    import math
    total, routed = 46_702_792_704, 32 * 8 * 3 * 4096 * 14336
    est = inference.serve(costplan.load_spec("mixtral-8x7b", ["hardware.gpu=h200", "serving.batch=1"]))
    vocab, d, f, kv = 32000, 4096, 14336, 1024        # the untied embedding: one row looked up
    weights = 2 * (total - routed) - 2 * vocab * d + 2 * routed * 2 / 8
    # each GEMM's activations (q, k, v, o, router, 2 experts' gate, up, down; the head), 16-bit
    gemm_rows = 2 * d + 2 * (d + kv) + 2 * d + (d + 8) + 2 * (2 * (d + f) + (f + d))
    # per layer: 2 RMSNorms, 2 residual adds, rotary on q and k, SwiGLU on 2 rows, routing (gather and scatter
    # 2 rows, the router's fp32 softmax read and written); the final norm and the embedding lookup
    work = 32 * (2 * gemm_rows + 2 * 2 * 2 * d + 2 * 6 * d + 2 * 2 * (d + kv) + 2 * 3 * 2 * f + 4 * 2 * d * 2
                 + 2 * 8 * 4) + 2 * (d + vocab) + 2 * 2 * d + 2 * 2 * d
    read = weights + work + 1152 * 128 * 1024
    expert_rows = 32 * 2 * 2 * 3 * (d + f)        # the routed GEMMs' rows: compute takes their place

    def curve(x):    # the H200's bf16 points (323, 0.0127) and (813, 0.144), linear in log2
        return 0.0127 + (0.144 - 0.0127) * math.log2(x / 323) / math.log2(813 / 323)
    compute = 32 * (2 * 4 * d * f / (989e12 * curve((4 * d * f) ** (1 / 3)))
                    + 2 * 2 * f * d / (989e12 * curve((2 * f * d) ** (1 / 3))))
    assert est.latency.decode_bound == "memory"
    assert est.latency.tpot_seconds == pytest.approx((read - expert_rows) / (4800e9 * 0.84) + compute, rel=1e-9)


def test_one_estimate_walks_the_cost_model_once_per_shape(monkeypatch):
    # sweep --serving estimates every point: asking the layer-by-layer cost model the same question again
    # (it was asked 14 times for 5 shapes) made each point cost ~13 ms.
    from costplan.costs import serving

    asked = []
    real = serving.components
    monkeypatch.setattr(serving, "components", lambda spec, shape: asked.append(shape) or real(spec, shape))
    inference.serve(costplan.load_spec("llama3-8b", ["serving.tpot_ms=30"]))
    assert asked and len(asked) == len(set(asked))


def test_int8_weights_stream_at_their_kernels_efficiency():
    # Llama-2-7B in int8 on one A100 at batch 1: its 6,476,005,376 layer weights in int8 with a 2-byte scale per
    # output row (32 layers × 42,496 rows) are read at data/kernels.yaml's memory_int8 (0.38); the 16-bit
    # embeddings, head and norms and the cache at 1152 tokens at the HBM efficiency (0.88).
    est = llama("serving.weights=int8", "serving.batch=1")
    quantized = LAYER_WEIGHTS + 32 * 42_496 * 2
    compute, memory, _ = gemm_times(1, 1, weight_bytes=quantized / LAYER_WEIGHTS, weight_hbm=0.38)
    assert compute < memory
    assert memory == pytest.approx((quantized / 0.38 + 2 * V * D / HBM) / BW, rel=1e-3)   # the weights, mostly
    streamed = NORM_BYTES + llama_streams(1, 1) + 1152 * KV_PER_TOKEN
    assert est.latency.decode_bound == "memory"
    assert est.latency.tpot_seconds == pytest.approx(memory + streamed / (BW * HBM), rel=1e-9)
    assert est.assumptions.efficiencies["weight_memory"].value == 0.38
    bf16 = llama("serving.batch=1")
    assert bf16.assumptions.efficiencies["weight_memory"] == bf16.assumptions.efficiencies["memory"]


def test_a_tensor_group_across_nodes_pays_the_internode_all_reduce_latency():
    # 16 H100s are two nodes of 8: every all-reduce crosses InfiniBand (data/kernels.yaml: 47 µs, 10 µs inside).
    def latency(tensor: int) -> float:
        spec = costplan.load_spec("deepseek-v3", ["hardware.gpu=h100-sxm", "serving.weights=fp8",
                                                  f"serving.tensor={tensor}", f"serving.gpus={tensor}"])
        return inference.serve(spec).assumptions.efficiencies["allreduce_latency"].value

    assert (latency(8), latency(16)) == (10, 47)


@pytest.mark.parametrize("gpu, microseconds", [("a100-80gb", 10), ("h100-sxm", 10), ("rtx-4090", 40), ("l40s", 40),
                                                ("l4", 40), ("h100-pcie", 40)])
def test_boards_without_nvlink_take_the_pcie_all_reduce_latency(gpu, microseconds):
    # a small all-reduce among 8 RTX 4090s over PCIe takes 40 µs (NVIDIA/nccl issue #1530), 10 µs over NVLink
    # (NVIDIA/nccl issue #583); the other PCIe boards are assumed alike
    spec = costplan.load_spec("llama2-7b", [f"hardware.gpu={gpu}", "serving.tensor=2", "serving.gpus=2"])
    assert inference.serve(spec).assumptions.efficiencies["allreduce_latency"].value == microseconds


def test_a_long_prompts_attention_runs_at_the_flash_curve_at_its_length():
    # Llama 2 7B's 2048-token causal prefill: 16 query tiles of 128 compute 1 + 2 + ... + 16 key tiles, 2176 keys
    # per query doubled (the curves' x); FlashAttention-2's forward at head dim 128 on an A100 reaches 0.497 of
    # the peak at 2048, 0.554 at 4096 (Dao 2023, as data/kernels.yaml has it), linear in log2 between. Without
    # curves the single `attention` figure stays.
    from costplan.costs import serving_ops

    assert causal_pairs(2048) == 136 * 128 * 128
    expected = 0.497 + math.log2(2176 / 2048) * (0.554 - 0.497)
    spec = costplan.load_spec("llama2-7b", ["hardware.gpu=a100-80gb"])
    assert serving_ops.prefill_attention_efficiency(spec.model, 2048, spec.gpu.curves(), 0.6) == pytest.approx(
        expected, rel=1e-9)
    assert serving_ops.prefill_attention_efficiency(spec.model, 2048, None, 0.6) == 0.6


@pytest.mark.parametrize("weights, cache, peak", [("bf16", "bf16", 989e12), ("fp8", "bf16", 989e12),
                                                  ("bf16", "fp8", 989e12), ("fp8", "fp8", 1979e12)])
def test_attention_runs_in_fp8_only_over_an_fp8_cache_of_fp8_weights(weights, cache, peak):
    # W8A8 fp8 runs the weight GEMMs at the fp8 peak; attention over a bf16 cache stays a bf16 FlashAttention
    # kernel: 1 PFLOP of core at the attention efficiency of the H100's 989 TFLOP/s. TensorRT-LLM's fp8 context
    # FMHA, over an fp8 cache of an fp8 model, at its 1,979
    _, _, replica, _ = inference._setup(costplan.load_spec("llama3-8b", [f"serving.weights={weights}",
                                                                      f"serving.kv_cache={cache}"]))
    core = replica.phase(1, 1, 1e15, 0.0)[0] - replica.phase(1, 1, 0.0, 0.0)[0]
    assert core == pytest.approx(1e15 / (replica.eff.attention.value * peak), rel=1e-12)


def test_mla_down_projections_are_whole_on_every_gpu():
    # DeepSeek-V3 (61 layers, d_model 7168): each layer's q_a (7168 × 1536) and kv_a (7168 × (512 + 64))
    # projections make the latent every head reads, so vLLM keeps them whole on each GPU (ReplicatedLinear),
    # as DeepSeek's own inference code does: 923,467,776 bf16 weights beside a tensor-th of the rest; so are the
    # 58 MoE layers' routers of 7168 × 256 (vLLM's gate is a ReplicatedLinear too)
    sets = ["serving.weights=bf16", "hardware.gpu=h200"]
    one = inference.serve(costplan.load_spec("deepseek-v3", [*sets, "serving.tensor=1"]))
    eight = inference.serve(costplan.load_spec("deepseek-v3", [*sets, "serving.tensor=8"]))
    latent = 61 * 7168 * (1536 + 512 + 64)
    assert latent == 923_467_776
    routers = 58 * 7168 * 256
    norms = (2 * 61 + 1) * 7168                # the RMSNorms around each block and the final one, whole too,
    norms += 61 * (1536 + 512)                 # and the latents' (q_a_layernorm, kv_a_layernorm)
    assert eight.memory.weights_per_gpu == math.ceil(one.memory.weights / 8
                                                     + (latent + routers + norms) * 2 * (1 - 1 / 8))


@pytest.mark.parametrize("preset, weights, whole", [
    # gpt-oss-120b (36 layers, d_model 2880, 128 experts): vLLM's RowParallelLinear and FusedMoE keep the output
    # projection's bias and every expert's down-projection bias (w2_bias) whole on each rank, as its gate keeps
    # the router's bias; and the 73 RMSNorms
    ("gpt-oss-120b", "bf16", (36 * 128 * 2880 + 36 * 2880 + 36 * 128 + 73 * 2880) * 2),
    # Qwen3-30B-A3B in int8 (48 layers, d_model 2048, 128 experts): a scale per output row of every row-parallel
    # matrix (the output projection, each expert's down projection), whose rows tensor parallelism does not split
    ("qwen3-30b-a3b", "int8", (48 * (2048 + 128 * 2048)) * 2 + (97 * 2048 + 48 * 2 * 128) * 2),
    # the CI's AFT-full (2 layers, d_model 256, 128 positions, GPT-2's defaults): its pairwise position bias of
    # 128² a layer, the learned position table, the LayerNorms' weights and biases, the output and down
    # projections' biases
    (str(CI / "aft-full.yaml"), "bf16", (2 * 128**2 + 128 * 256 + (2 * 2 + 1) * 2 * 256 + 2 * 2 * 256) * 2),
])
def test_what_vllm_holds_whole_on_every_rank(preset, weights, whole, monkeypatch):
    tensor = 2 if preset.endswith(".yaml") else 8

    def per_gpu() -> int:
        return inference.serve(costplan.load_spec(preset, [f"serving.weights={weights}", f"serving.tensor={tensor}",
                                                           "serving.batch=1"])).memory.weights_per_gpu

    held = per_gpu()
    monkeypatch.setattr(inference, "_whole_on_every_rank", lambda spec, parts: 0)
    assert held - per_gpu() == pytest.approx(whole * (1 - 1 / tensor), abs=1)


@pytest.mark.parametrize("tensor", [1, 8])
def test_quantized_mla_keeps_a_16_bit_copy_of_its_up_projection(tensor, monkeypatch):
    # vLLM's MLA decode multiplies W_UK and W_UV in 16 bits ("we currently do not have quantized bmm's"), made from
    # the dequantized kv_b_proj, which it keeps quantized for prefill: DeepSeek-V3's 61 layers of 512 x 128 heads
    # x (128 + 128), each GPU its heads' share; in bf16 they are views of the weight, no copy
    def per_gpu(weights: str) -> int:
        return inference.serve(costplan.load_spec("deepseek-v3", [f"serving.weights={weights}", "hardware.gpu=h200",
                                                                  f"serving.tensor={tensor}"])).memory.weights_per_gpu

    fp8, bf16 = per_gpu("fp8"), per_gpu("bf16")
    monkeypatch.setattr(inference, "mla_absorbed_copy", lambda spec, tensor: 0)
    copy = 61 * 512 * (128 // tensor) * (128 + 128) * 2
    assert fp8 - per_gpu("fp8") == copy == 2_046_820_352 // tensor
    assert bf16 == per_gpu("bf16")


@pytest.mark.parametrize("prompt", [20_000, 8_000])
def test_chunked_layers_decode_their_chunk_so_far_averaged_over_the_steps(prompt):
    # Llama 4 Scout: 36 of 48 layers see only their 8192-token chunk, 8 KV heads of 128 and 40 query heads. A
    # 1000-token output runs 999 decode steps (the prefill gives the first token), feeding the tokens at prompt,
    # ..., prompt + 998; each reads its chunk so far, (prompt + j) % 8192 cached keys (after 20,000: 3,616 to
    # 4,614; after 8,000 the chunk ends at 8,192 and the next starts empty), which the step takes on average,
    # where a whole chunk's cache and the new token at the mean context prompt + 500 were priced.
    # the steps' mean cached tokens: prompt + 998 / 2 = prompt + 499, at which decode_flops prices the new token
    # and kv_cache_bytes a whole chunk's cache (the cached tokens and the new one: prompt + 500 > 8192)
    spec = costplan.load_spec("llama4-scout", [f"serving.prompt_tokens={prompt}", "serving.output_tokens=1000"])
    cached = sum((prompt + j) % 8192 for j in range(999)) / 999
    assert serving.decode_cached(prompt, 1000) == prompt + 499
    read, flops = serving.chunk_decode(spec, range(prompt, prompt + 999), prompt + 499)
    assert read == pytest.approx(36 * 2 * 8 * 128 * 2 * (cached + 1 - 8192), rel=1e-12)
    assert flops == pytest.approx(36 * 4 * 40 * 128 * (cached - (prompt + 499) % 8192), rel=1e-12)
    # a decode's last token attends to its cached keys and itself in each chunked layer, the 12 global layers to
    # the whole context and itself: 4·heads·head_dim FLOPs a key and layer
    last = prompt + 998
    assert (serving.decode_flops(spec, last) - serving.decode_flops(spec, 0)
            == 4 * 40 * 128 * (36 * (last % 8192) + 12 * last))


def test_no_decode_step_reads_no_chunk():
    # one output token, the prefill's: no step feeds a token, so nothing is averaged (and nothing divides by zero)
    spec = costplan.load_spec("llama4-scout", ["serving.prompt_tokens=8000", "serving.output_tokens=1"])
    assert serving.chunk_decode(spec, range(8000, 8000), 8000) == (0.0, 0.0)
    assert inference.serve(spec).latency.tpot_seconds is None


def test_a_decode_step_reads_the_chunks_so_far_and_the_global_layers_whole():
    # What serve() times a decode step of Scout on: after 8,000 prompt tokens, 1000 output tokens. Its 12 global
    # layers read the cache of the steps' mean 8,499 cached tokens and the new one (8 KV heads × 128 × K and V × 2
    # bytes a token) and attend to them; its 36 chunked layers read, on average over the 999 steps, what each new
    # token's chunk holds and itself.
    parts = serving.parts_of(costplan.load_spec("llama4-scout"))
    cached = sum((8_000 + j) % 8192 for j in range(999)) / 999
    core, cache = inference.decode_attention(parts, 8_000, 1000, "bf16")
    per_token = 8 * 128 * 2 * 2
    assert cache == pytest.approx(per_token * (12 * 8_500 + 36 * (cached + 1)), rel=1e-12)
    assert core == pytest.approx(4 * 40 * 128 * (12 * 8_500 + 36 * (cached + 1)), rel=1e-12)
