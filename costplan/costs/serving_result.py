"""What `costplan serve` returns (costs/inference.serve): memory, latency, throughput, cost and the assumptions
behind them, as typed fields for the tables and the JSON contract."""
from __future__ import annotations

from costplan.records import Record


class ServingMemory(Record):
    """Bytes per GPU, and the most sequences that fit."""

    weights: int                  # all of the model's weights in the serving format (the replica's total)
    weights_per_gpu: int
    kv_cache_per_token: int       # whole model, before windows cap it
    kv_cache_tokens: int          # what one sequence's cache holds at its end: prompt + output − 1 tokens
    kv_cache_per_sequence: int    # whole model, at kv_cache_tokens
    kv_cache_per_sequence_per_gpu: int
    reserve: int                  # kept free for activations, CUDA graphs and the allocator
    total_per_gpu: int            # weights + batch × cache + reserve
    gpu_memory: int               # what a replica's GPU must fit in: what a framework can have of its memory
    gpu_memory_stated: int        # the GPU's memory as its maker states it
    max_batch: int                # 0: the weights and one sequence do not fit


# decode_bound where one output token, the prefill's, leaves no decode step (the time per token fields are None)
NO_DECODE = "none"


class ServingLatency(Record):
    ttft_seconds: float | None    # None when the model does not fit
    tpot_seconds: float | None    # one decode step at the batch served; None too with one output token
    tpot_under_load_seconds: float | None   # ... with the prefill passes a busy replica runs between steps
    prefill_bound: str            # compute | memory: what limits prefill
    decode_bound: str             # what limits a decode step at the batch served, or NO_DECODE


class ServingThroughput(Record):
    batch: int                    # concurrent sequences per replica
    tokens_per_second_per_gpu: float | None   # output (generated) tokens
    requests_per_second: float | None         # all serving GPUs (serving.gpus; one replica by default)
    requests_per_second_per_replica: float | None


class ServingCost(Record):
    usd_per_million_input_tokens: float | None    # a prompt's share of a prefill pass over its tokens
    usd_per_million_output_tokens: float | None   # the decode's GPU-time over the generated tokens
    usd_per_gpu_hour: float
    gpus_for_rate: int | None     # GPUs needed for serving.rate requests/s (whole replicas)


class Efficiency(Record):
    value: float
    source: str


class ServingAssumptions(Record):
    gpu: str
    gpu_name: str
    gpus: int
    tensor: int                   # GPUs per replica
    # degrees an automatic serving.tensor skipped: a GPU's share of a matrix would cut an int4 group
    tensor_skipped: list[int]
    replicas: int
    prompt_tokens: int
    output_tokens: int
    decode_context: int           # the cached tokens a decode step is timed at (serving.decode_cached)
    # chunked layers' cache reads and attention averaged over the decode steps instead (serving.chunk_decode)
    decode_chunks_averaged: bool = False
    prefill_prompts_per_pass: int  # prompts a busy replica prefills together (serving.prefill_tokens)
    weights: str
    group_size: int | None
    quantized: str
    kv_cache: str
    kv_cache_split: int           # GPUs the cache of one sequence is divided over
    compute_precision: str
    # what 16-bit tensors (bf16 weights and KV cache) run as here: bf16, fp16 where the device has no bf16 peak (a
    # V100), fp32 where it has neither
    sixteen_bit: str = "bf16"
    peak_flops_per_gpu: float
    memory_bandwidth_bytes_per_s: float
    link_bytes_per_s: float | None
    reserve_fraction: float
    batch_rule: str
    latency_targets: dict[str, float]
    efficiency_device: str        # the kernels.yaml entry of the fractions ("default" for devices it does not list)
    latency_device: str           # the kernels.yaml entry of the all-reduce latencies
    efficiencies: dict[str, Efficiency]
    gemm_curve: str | None        # source of the GEMM efficiency-by-size curve used; None: `matmul` at every size
    moe_experts_read_per_step: float | None   # expected routed experts per MoE layer at the batch served
    not_modelled: str
    price_source: str


class ServingEstimate(Record):
    name: str
    fits: bool
    meets_targets: bool
    memory: ServingMemory
    latency: ServingLatency
    throughput: ServingThroughput
    cost: ServingCost
    assumptions: ServingAssumptions


def request_usd(est: ServingEstimate) -> float:
    """What one request costs, of an estimate that fits: its prompt at the input rate, its output at the output
    rate."""
    a, c = est.assumptions, est.cost
    return (c.usd_per_million_input_tokens * a.prompt_tokens + c.usd_per_million_output_tokens * a.output_tokens) / 1e6
