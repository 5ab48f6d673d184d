"""Where the step model is furthest from published training runs (bench/training_validation.py, every row in
bench/training_results.md), so that a predicted time of such a run says so. A caveat, not a correction: nothing
in the model is fitted to those runs, and no number here changes a prediction. tests/test_training_bench.py
recomputes each figure from the validation table."""
from __future__ import annotations

from typing import NamedTuple


class Miss(NamedTuple):
    """A kind of run every published instance of which took longer per step than predicted, by this range."""

    kind: str          # what the runs share, as a user's spec would show it
    runs: int
    least: float       # measured step time / predicted step time, the smallest and largest over the runs
    most: float
    which: str         # whose runs


MIXTURE_OF_EXPERTS = Miss("mixture-of-experts", 4, 1.4, 5.4,
                          "Megatron-Bridge's Qwen3-30B-A3B, Qwen3-235B-A22B and DeepSeek-V3")
# context parallelism 2 runs are within 28% both ways (eight rows, three frameworks); from 4 on every row is slow
WIDE_CONTEXT = Miss("context-parallel (degree 4 or more)", 4, 1.3, 1.6, "torchtitan's Llama 3 8B and Llama 3.1 405B")
WIDE_CONTEXT_FROM = 4


def misses(routed_experts: bool, context: int) -> list[Miss]:
    """The kinds of run a spec with routed experts (or not) at a context-parallel degree belongs to."""
    return ([MIXTURE_OF_EXPERTS] if routed_experts else []) + ([WIDE_CONTEXT] if context >= WIDE_CONTEXT_FROM else [])


def said(miss: Miss) -> str:
    """The caveat in words, after the spec's name."""
    return (f"the step model is furthest off on {miss.kind} training: each of the {miss.runs} published runs it was "
            f"compared with ({miss.which}) took {miss.least:g} to {miss.most:g} times the predicted step "
            "(bench/training_results.md): expect this step time, and the GPU-hours and cost from it, to be low")
