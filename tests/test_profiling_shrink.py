"""The copy a spec is timed on when its full step would exceed the time budget: smaller, and still a valid
spec by the spec's own rules. Nothing is timed here: the rate is given."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from costplan import presets  # noqa: E402
from costplan.loading import with_overrides  # noqa: E402
from costplan.profiling.measure import _step_cost, shrink_for_time, shrunk  # noqa: E402
from costplan.loading import load_spec  # noqa: E402
from conftest import make_spec  # noqa: E402

ROOT = Path(__file__).parents[1]
SOURCES = [str(p) for p in sorted((ROOT / "specs" / "ci").glob("*.yaml"))] + list(presets.names())
MEMORY = 2**62          # memory never binds here


def _rate_for(spec, overrides: list[str], budget: float = 1.0) -> float:
    """The FLOP/s at which the copy described by `overrides` takes exactly `budget` seconds a step."""
    smaller = with_overrides(spec, overrides)
    return _step_cost(smaller, smaller.training.micro_batch_size)[0] / budget


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: Path(s).stem)
def test_every_spec_shrinks_to_a_valid_spec(source):
    spec = load_spec(source)
    size = spec.training.micro_batch_size
    full = _step_cost(spec, size)[0]
    for slower in (2, 20, 1e4, 1e12):                       # the full step takes this many budgets
        overrides = shrink_for_time(spec, size, full / slower, MEMORY, budget=1.0)
        if overrides is None:                               # nothing fits: only when far too slow
            assert slower > 2
            continue
        timed = with_overrides(spec, overrides)                     # raises if the copy is invalid
        assert _step_cost(timed, size)[0] <= full / slower


def test_dense_first_layers_keep_an_moe_layer():
    # 3 layers, the first dense: the smallest valid copy has 2 (1 dense + 1 MoE), never 1.
    spec = load_spec(str(ROOT / "specs" / "ci" / "moe-shared.yaml"))
    rate = _rate_for(spec, ["model.n_layers=2", "training.seq_len=64"])
    assert shrink_for_time(spec, 2, rate, MEMORY, budget=1.0) == ["model.n_layers=2", "training.seq_len=64"]


def test_pipeline_stages_stay_whole():
    spec = make_spec({"n_layers": 8}, hardware={"count": 4}, parallelism={"pipeline": 4})
    rate = _rate_for(spec, ["model.n_layers=4", "training.seq_len=64"])
    assert shrink_for_time(spec, 1, rate, MEMORY, budget=1.0) == ["model.n_layers=4", "training.seq_len=64"]


def test_where_nothing_fits_the_smallest_copy_tried_is_still_named():
    # calibrate's reference step runs when no budget is left: on the smallest copy, not on the whole model (its
    # 2 s budget had run to 17 s timing GPT-2 small's two full layers)
    spec = load_spec("gpt2-small", ["model.n_layers=2"])
    assert shrink_for_time(spec, 1, 1e9, MEMORY, budget=0.0) is None
    overrides, fits = shrunk(spec, 1, 1e9, MEMORY, budget=0.0)
    smallest = with_overrides(spec, overrides)
    assert not fits and _step_cost(smallest, 1)[0] < _step_cost(spec, 1)[0] / 100
    assert shrunk(spec, 1, 1e30, MEMORY, budget=1.0) == ([], True)
