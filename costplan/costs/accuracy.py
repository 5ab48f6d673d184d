"""Where the step model is furthest from published training runs (bench/training_validation.py, every row in
bench/training_results.md), so that a predicted time of such a run says so. A caveat, not a correction: nothing
in the model is fitted to those runs, and no number here changes a prediction. tests/test_training_bench.py
recomputes each figure from the validation table."""
from __future__ import annotations

from costplan.records import Record


class Miss(Record):
    """A kind of run every compared run of which took longer per step than predicted, by this range (an estimate's
    time.caveats)."""

    kind: str          # what the runs share, as a user's spec would show it
    runs: int
    least: float       # measured step time / predicted step time, the smallest and largest over the runs
    most: float
    compared: str      # whose runs


MIXTURE_OF_EXPERTS = Miss("mixture-of-experts", 4, 1.4, 5.9, "Megatron-Bridge's, fp8; two are one Qwen3-30B-A3B "
                          "layout in two releases")
# Every run at context parallelism 4 or more is also at 128k tokens or more, so which of the two the model misses is
# not known: both are asked for. The seven runs at degree 2 (up to 64k tokens) fall on both sides (-6% to +28%).
LONG_CONTEXT_PARALLEL = Miss("context-parallel (degree 4 or more, 128k tokens or more)", 4, 1.3, 1.6,
                             "torchtitan's")
WIDE_CONTEXT_FROM = 4
LONG_CONTEXT_FROM = 131_072


def misses(routed_experts: bool, context: int, seq_len: int) -> list[Miss]:
    """The kinds of run a spec with routed experts (or not) at a context-parallel degree and length belongs to."""
    long = context >= WIDE_CONTEXT_FROM and seq_len >= LONG_CONTEXT_FROM
    return [miss for miss, of in ((MIXTURE_OF_EXPERTS, routed_experts), (LONG_CONTEXT_PARALLEL, long)) if of]
