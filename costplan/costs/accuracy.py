"""Where the step model is furthest from published training runs (bench/training_validation.py, every row in
bench/training_results.md), so that a predicted time of such a run says so. A caveat, not a correction: nothing
in the model is fitted to those runs, and no number here changes a prediction. tests/test_training_bench.py
recomputes each figure from the validation table."""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from costplan.costs.result import Estimate


class Miss(NamedTuple):
    """A kind of run every published instance of which took longer per step than predicted, by this range."""

    kind: str          # what the runs share, as a user's spec would show it
    runs: int
    least: float       # measured step time / predicted step time, the smallest and largest over the runs
    most: float
    which: str         # whose runs


MIXTURE_OF_EXPERTS = Miss("mixture-of-experts", 4, 1.4, 5.4, "Megatron-Bridge's, fp8; two are one Qwen3-30B-A3B "
                          "layout in two releases")
# context parallelism 2 runs are within 28% both ways (eight rows, three frameworks); from 4 on every row is slow
WIDE_CONTEXT = Miss("context-parallel (degree 4 or more)", 4, 1.3, 1.6, "torchtitan's, at 128k and 256k tokens")
WIDE_CONTEXT_FROM = 4

# What follows from a step that is too short, for the commands that show times and costs, and for plan --deadline
TIMES_LOW = "the times, GPU-hours and costs from it are likely low"
PLANS_LOW = "the GPUs, days, GPU-hours and costs planned from it are likely too few and too low"


def misses(routed_experts: bool, context: int) -> list[Miss]:
    """The kinds of run a spec with routed experts (or not) at a context-parallel degree belongs to."""
    return ([MIXTURE_OF_EXPERTS] if routed_experts else []) + ([WIDE_CONTEXT] if context >= WIDE_CONTEXT_FROM else [])


def of_estimate(est: Estimate) -> list[Miss]:
    """An estimate's kinds, where the step model timed it (not the user's MFU)."""
    if est.assumptions.time_model != "step model":
        return []
    return misses("moe" in est.params.by_component, est.parallelism.context)


def said(miss: Miss, consequence: str = TIMES_LOW) -> str:
    """The caveat in words, after the spec's name."""
    return (f"the step model underestimates {miss.kind} training: each of the {miss.runs} published runs compared "
            f"({miss.which}) took {miss.least:g} to {miss.most:g} times its predicted step "
            f"(bench/training_results.md); {consequence}")
