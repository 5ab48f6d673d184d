"""Every bundled preset at its true size, on fake tensors: the FLOPs the reference model executes equal the
analytic ones exactly, per component (parameters: test_profiling_agreement.py, on meta, in the fast run).
About four minutes on 2 CPU cores, most of it DeepSeek-V3's 58 × 256 experts, and four more for Gemma 3 27B's and
Llama 4 Scout's windows and chunks at 8,192 tokens (2.5 and 1.7 min, measured); run with `pytest -m slow`."""
from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

import costplan  # noqa: E402
from costplan import presets  # noqa: E402
from costplan.costs.estimate import components, shape_of  # noqa: E402
from costplan.profiling import measure  # noqa: E402
from costplan.profiling.attention import PATTERNS  # noqa: E402
from costplan.profiling.scope import OUTSIDE  # noqa: E402


# Block-pattern cores (windows, chunks) run a Python loop per tile, so a preset with them is checked at most this
# long (its widths and depth whole); a pattern's tiles repeat along the sequence, flash cores are one call.
PATTERNED_TOKENS = 8192


@pytest.mark.slow
@pytest.mark.parametrize("preset", presets.names())
def test_preset_flops_at_full_size(preset):
    spec = costplan.load_spec(preset, ["parallelism=null"])
    if spec.seq_len > PATTERNED_TOKENS and spec.model.attention_types & set(PATTERNS):
        spec = costplan.load_spec(preset, ["parallelism=null", f"training.seq_len={PATTERNED_TOKENS}"])
    shape = dataclasses.replace(shape_of(spec), skip_masked_tiles=False)
    parts = components(spec, shape)
    flops = measure.count_flops(spec, 1, torch.device("cpu"))
    assert flops.forward.pop(OUTSIDE) == 0 and flops.training.pop(OUTSIDE) == 0
    assert {k: v for k, v in flops.forward.items() if v} == {k: c.hw_fwd for k, c in parts.items() if c.hw_fwd}
    assert {k: v for k, v in flops.training.items() if v} == {k: c.hw_flops for k, c in parts.items() if c.hw_flops}
    assert flops.ops.uncounted_contractions == {}
