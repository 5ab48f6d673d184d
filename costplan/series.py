"""The numbers behind `costplan plot`, computed without matplotlib (so they are tested on their own).

- seq_scaling: forward FLOPs per token and activation bytes of one micro-batch against the training context,
  one spec re-estimated at each length (max_seq_len grows with it when needed), on one layout throughout.
- memory_parts: per-GPU training memory by kind (no inference KV cache: training holds none).
- loss curves of a scaling law: the compute-optimal frontier L(N_opt(C), D_opt(C)), fixed-N curves
  L(N, C/(6N)) and iso-FLOP curves L(N, C/(6N)) over N, all in the laws' compute C = 6·N·D.
"""
from __future__ import annotations

from collections.abc import Sequence

from costplan import scaling
from costplan.costs.estimate import LawPoint, estimate
from costplan.costs.parallel import BACKWARD, END_OF_BACKWARD, OPTIMIZER_STEP
from costplan.costs.run import at_lengths, laid_out_once
from costplan.costs.result import Estimate, Memory
from costplan.report import layout_words
from costplan.spec import Spec

DEFAULT_LENGTHS = tuple(2 ** k for k in range(9, 18))        # 512 … 131,072 tokens


def layout_of(spec: Spec) -> str:
    """The layout seq_scaling runs the spec on, in words: "one GPU", or tensor × pipeline × data GPUs."""
    laid_out = laid_out_once(spec)
    p = laid_out.parallel
    return layout_words(laid_out.hardware.count, p.tensor, p.pipeline, laid_out.data_parallel, p.context, p.expert)


def seq_scaling(spec: Spec, lengths: Sequence[int] = DEFAULT_LENGTHS) -> list[tuple[int, float, int]]:
    """(seq_len, forward FLOPs per token, activation bytes of one micro-batch) at each length."""
    rows = []
    for n, copy in zip(lengths, at_lengths(spec, lengths)):
        e = estimate(copy)
        rows.append((n, e.flops.forward_per_token, e.memory.activations))
    return rows


# The model states, held at every moment a step may peak at (parallel.StageMemory.moments), then the transients.
STATES = ("weights", "fp8 weight copies", "gradients", "optimizer states")
MEMORY_PARTS = (*STATES, "activations", "backward transients (loss, head, recomputation)",
                "embedding and head gathered by ZeRO-3 (transient)", "layers gathered by ZeRO-3 (transient)",
                "tied embedding gradients (transient)", "optimizer step transients")
# The parts live at each moment a step may peak at, beyond the model states.
TRANSIENTS = {BACKWARD: ("activations", "backward transients (loss, head, recomputation)",
                         "embedding and head gathered by ZeRO-3 (transient)", "layers gathered by ZeRO-3 (transient)"),
              END_OF_BACKWARD: ("tied embedding gradients (transient)",
                                "embedding and head gathered by ZeRO-3 (transient)"),
              OPTIMIZER_STEP: ("optimizer step transients",)}


def memory_values(m: Memory) -> dict[str, int]:
    """Training bytes per GPU by kind (MEMORY_PARTS), each whether or not the peak holds it."""
    return dict(zip(MEMORY_PARTS, (m.weights, m.fp8_weights, m.gradients, m.optimizer, m.activations, m.workspace,
                                   m.gathered_root, m.gathered_layers, m.tied_gradients, m.update)))


def held_at_peak(part: str, m: Memory) -> bool:
    """Whether the peak holds a part: the model states always, a transient at its own moments (TRANSIENTS)."""
    return part in STATES or part in TRANSIENTS[m.peak_at]


def memory_parts(e: Estimate) -> dict[str, int]:
    """Training bytes per GPU by kind at the peak, summing to the estimate's total: the model states and the
    transients of the moment the peak is at; inference's KV cache is not among them."""
    return {part: value if held_at_peak(part, e.memory) else 0 for part, value in memory_values(e.memory).items()}


def geometric(lo: float, hi: float, n: int) -> list[float]:
    """n values from lo to hi, evenly spaced on a log scale."""
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


def frontier(law: scaling.ScalingLaw, computes: Sequence[float]) -> list[tuple[float, float, float]]:
    """(C, N_opt, L at the optimum) along the compute-optimal frontier."""
    out = []
    for c in computes:
        n, d = law.compute_optimal(c)
        out.append((c, n, law.loss(n, d)))
    return out


def fixed_params(law: scaling.ScalingLaw, params: float, computes: Sequence[float]) -> list[tuple[float, float]]:
    """(C, L) for a model of `params` parameters trained on C / (6·params) tokens."""
    return [(c, law.loss(params, c / (scaling.FLOPS_PER_PARAM_TOKEN * params))) for c in computes]


def iso_flop(law: scaling.ScalingLaw, compute: float, params: Sequence[float]) -> list[tuple[float, float]]:
    """(N, L) at a fixed compute: every size trained on the tokens that compute buys."""
    return [(n, law.loss(n, compute / (scaling.FLOPS_PER_PARAM_TOKEN * n))) for n in params]


def spec_point(point: LawPoint) -> tuple[float, float, float]:
    """(C = 6·N·D, N, predicted loss) of a spec, N as the law counts it."""
    s = point.scaling
    return scaling.FLOPS_PER_PARAM_TOKEN * s.params * point.tokens, s.params, s.loss
