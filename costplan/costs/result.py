"""The result of an estimate. `Estimate.model_dump()` is the JSON object of `costplan estimate --format json`;
its key names are a contract with scripts outside this repository.

Records (costplan/records.py), not validated sections: the cost model builds them from numbers it computed
itself."""
from __future__ import annotations

from typing import Any, Union

from costplan.costs.accuracy import Miss
from costplan.records import Record
from costplan.scaling import Scaling

Number = Union[int, float]  # exact integers stay integers; ratios that do not divide become floats


class Params(Record):
    total: int
    active: int                      # what one token touches, embeddings included (Mixtral's "12.9B")
    active_non_embedding: int        # the same without the input embedding (DeepSeek-V3's "37B activated")
    embedding: int                   # token + learned position embeddings (a tied head counts here, once)
    non_embedding: int
    by_component: dict[str, int]


class Flops(Record):
    forward_per_token: Number
    training_per_token: Number       # 3 × forward: model FLOPs, the MFU convention
    hardware_per_token: Number       # what the GPU executes: recomputation, flash backward, skipped tiles
    training_total: Number
    by_component: dict[str, Number]  # forward FLOPs per token


class Memory(Record):
    """Bytes per GPU. The peak is the largest of three moments of a step, each the weights (with their fp8
    copies), gradients and optimizer states with its own transients: backward (activations, workspace,
    gathered_root and _layers), backward ending (tied_gradients, gathered_root) and the optimizer step (update)."""

    weights: int
    fp8_weights: int                 # Transformer Engine's fp8 copies of the weights (training.fp8_weight_cache)
    gradients: int
    optimizer: int
    activations: int                 # saved for backward, one micro-batch
    workspace: int                   # transient with the activations: what the loss makes as backward starts,
                                     # or where more a softmax's gradients, the head's gradients or a
                                     # recomputed layer's activations
    tied_gradients: int              # transient as backward ends: a tied embedding's two gradients and their sum
    gathered_root: int               # transient under ZeRO-3: the embedding and head gathered to backward's end
    gathered_layers: int             # transient with the activations under ZeRO-3: two layers gathered
    update: int                      # transient at the optimizer step: a gradient's fp32 copy, update temporaries
    total_per_gpu: int               # the peak
    peak_at: str                     # where the peak is: "backward", "end of backward" or "optimizer step"
    fits: bool
    gpu_memory: int                  # what the step must fit in: what a framework can have of the GPU's memory
    gpu_memory_stated: int           # the GPU's memory_gib: the maker's figure (a calibrated file's: PyTorch's)
    kv_cache_per_token: int          # inference K/V cache, all layers, per cached token
    kv_cache_at_seq_len: int         # inference cache of one sequence of seq_len tokens: windows cap it,
                                     # attention-free layers keep a constant state


class Time(Record):
    gpu_hours: float                 # tokens / tokens per step × step_seconds × GPUs (a last partial step its part)
    wall_clock_days: float
    cost_usd: float
    step_seconds: float              # one optimizer step (costs/step.py, or model FLOPs / (peak × hardware.mfu))
    tokens_per_second_per_gpu: float
    mfu: float                       # model FLOPs (3 × forward) per second per GPU / the precision's peak
    hfu: float                       # hardware FLOPs (recomputation, flash backward, skipped tiles) the same way
    breakdown: dict[str, float]      # seconds per step by part: matmul, attention, memory_bound, optimizer,
                                     # bubble, communication.<kind> (exposed only)
    caveats: list[Miss]              # kinds of run the step model underestimates that this step-model time is of


class Parallelism(Record):
    """How one step is split over the GPUs: the spec's parallelism section or the layout chosen for it."""

    data: int
    tensor: int
    pipeline: int
    context: int
    virtual_stages: int
    expert: int
    expert_tensor: int                       # tensor ranks splitting each routed expert (parallelism.expert_tensor)
    zero: int
    sequence_parallel: bool
    tensor_overlap: bool
    pipeline_overlap: bool                   # interleaved 1F1B's sends behind the model chunks (Megatron's)
    # MoE all-to-alls behind another micro-batch's compute: parallelism.expert_overlap, where the schedule pairs
    # any pass (traffic.expert_overlapped)
    expert_overlap: bool
    per_parameter_sharding: bool             # FSDP2: gathered weights copied into the parameters
    micro_batches: int
    memory_stage: int                        # the pipeline stage whose memory `memory` reports (the fullest)
    communication_bytes: dict[str, float]    # sent per GPU per step, by kind (tensor, context, expert, ...)
    communication_seconds: dict[str, float]  # each kind's traffic, hidden or exposed
    bubble_fraction: float                   # of the step
    source: str                              # "parallelism", "one GPU", or how the layout was chosen
    overlaps: str                            # what the step model hid behind what


class Assumptions(Record):
    """What an estimate rests on, as typed fields (the `assumptions` object of the JSON)."""

    tokens: float
    tokens_source: str
    tokens_per_param: float
    seq_len: int
    seq_len_source: str           # training.seq_len, or model.max_seq_len where the spec gives none
    config_defaults: list[str]    # a Hugging Face config's keys its class read from its own defaults (absent)
    config_left_out: list[str]    # a Hugging Face config's keys with a cost no spec states: "key: why"
    micro_batch_size: int
    global_batch_size: int
    global_batch_source: str      # training.global_batch_size, or what the layout makes of the micro-batch
    steps: int                    # whole optimizer steps the tokens take, the last perhaps partial
    precision: str
    optimizer: str
    recompute: str
    recompute_layers: int | None     # under full: the first N layers of each stage; None: every layer (or none)
    fusion: str                      # training.fusion: how the step model moves memory-bound bytes
    fused_kernels: list[str]         # training.fused_kernels: ops one fused kernel each in an eager step
    loss_kernel: str                 # how the loss over the vocabulary runs (training.loss_kernel, or fusion's)
    grad_accumulation: str           # training.grad_accumulation: fused in the GEMMs, or separate adds
    fp8_saved_inputs: bool           # training.fp8_saved_inputs: linears save fp8 copies of their inputs
    fp8_weight_cache: bool           # training.fp8_weight_cache: linears keep fp8 copies of their weights
    bytes_per_param: dict[str, Any]
    activation_element_bytes: int
    attention_flops: str
    gpu: str
    gpu_name: str
    gpu_count: int
    peak_flops_per_gpu: float
    time_model: str                  # "step model", or "hardware.mfu" when the user gave a utilisation
    mfu_override: float | None
    kernel_tables: str | None        # where the step model's efficiencies came from
    sustained_share: float | None    # what burst-timed kernel curves run at (kernels.sustained_share); None: none
    layout: str                      # where the parallel layout came from
    overlaps: str
    network: str
    usd_per_gpu_hour: float
    price_source: str


class Estimate(Record):
    name: str
    params: Params
    flops: Flops
    memory: Memory
    time: Time
    assumptions: Assumptions
    scaling: Scaling
    parallelism: Parallelism
