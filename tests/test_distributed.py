"""ZeRO-3 memory against FSDP2: the reference model trained under torchrun on 2 CPU processes over gloo."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from costplan import estimate, load_spec                    # noqa: E402
from costplan.profiling.distributed import RankBytes, checks  # noqa: E402

DENSE = str(Path(__file__).parents[1] / "specs" / "ci" / "dense.yaml")
# An odd vocabulary and MLP width: FSDP2's whole-row shards then differ between the ranks.
UNEVEN = ["--set", "model.vocab_size=1001", "--set", "model.d_ff=173"]


def checked(run, source: str, *args: str, nproc: int = 2) -> dict[str, dict]:  # noqa: ANN001
    """`costplan check SOURCE --nproc N` as JSON, which must pass: its checks by item."""
    result = run("check", source, "--nproc", str(nproc), "--format", "json", *args)
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    return {c["item"]: c for c in record["checks"]}


def test_fsdp2_on_two_processes_matches_zero3(run):
    rows = checked(run, DENSE, *UNEVEN)
    spec = load_spec(DENSE, ["model.vocab_size=1001", "model.d_ff=173"])
    whole = estimate(spec).memory
    # every byte once: the shards add up to the unsharded states of one GPU, exactly
    assert rows["parameter shards, sum over 2 ranks"]["measured"] == whole.weights
    assert rows["gradient shards, sum over 2 ranks"]["measured"] == whole.gradients
    assert rows["optimizer-state shards, sum over 2 ranks"]["measured"] == whole.optimizer
    ranks = [rows[f"parameter shards, rank {r} of 2"]["measured"] for r in (0, 1)]
    assert ranks[0] != ranks[1]                     # uneven rows really were split unevenly
    assert all(c["status"] == "ok" for c in rows.values())


def test_fsdp2_copies_each_layers_weights_twice_and_the_roots_once(run):
    # per_parameter_sharding: the step model times FSDP2's all-gather copy-out as the layers' weights gathered in
    # forward and again in backward, the root module's (embedding, final norm, head) once; the bytes FSDP2 wrote
    # agree exactly where no tensor needs padding rows
    flash = str(Path(DENSE).with_name("flash.yaml"))
    copied = [c for item, c in checked(run, flash).items() if item.startswith("weights copied out of all-gathers")]
    assert len(copied) == 2 and all(c["measured"] == c["estimate"] for c in copied)
    spec = load_spec(flash)
    by_part = estimate(spec).params.by_component
    root = by_part["embedding"] + by_part["head"]
    assert spec.training.precision == "bf16" and root > 0       # 2 bytes a weight
    assert copied[0]["measured"] == 2 * (2 * estimate(spec).params.total - root - _final_norm(spec))
    # one process shards nothing: FSDP2 gathers and copies nothing, and the model has no copies either
    alone = checked(run, flash, nproc=1)
    (one,) = [c for item, c in alone.items() if item.startswith("weights copied")]
    assert one["measured"] == one["estimate"] == 0
    assert alone["parameter shards, rank 0 of 1"]["note"] == "one process: every tensor whole"


def _final_norm(spec) -> int:  # noqa: ANN001
    """The final norm's weights (and bias), which the root module holds beside the embedding and the head."""
    return spec.model.d_model * (2 if spec.model.norm == "layernorm" else 1)


def test_fsdp2_fp32_gradient_shards(run):
    # training.fp32_gradients: each rank holds its fp32 gradient shard (the Trainer's main_grad buffers over
    # FSDP2's sharded parameters), twice the bytes of the 16-bit parameter shard
    rows = checked(run, DENSE, "--set", "training.fp32_gradients=true")
    whole = estimate(load_spec(DENSE, ["training.fp32_gradients=true"])).memory
    assert rows["gradient shards, sum over 2 ranks"]["measured"] == whole.gradients == 2 * whole.weights
    assert all(c["status"] == "ok" for c in rows.values())


def test_a_rank_off_by_more_than_its_rows_fails():
    spec = load_spec(DENSE)
    whole = estimate(spec).memory
    half = {part: getattr(whole, part) // 2 for part in ("weights", "gradients", "optimizer")}
    rows = {part: 100 for part in half}
    fine = [RankBytes(0, **half, row_bytes=rows), RankBytes(1, **half, row_bytes=rows)]
    assert all(c.status == "ok" for c in checks(spec, fine))
    skewed = [RankBytes(0, **{**half, "weights": half["weights"] + 101}, row_bytes=rows),
              RankBytes(1, **{**half, "weights": half["weights"] - 101}, row_bytes=rows)]
    failed = [c.item for c in checks(spec, skewed) if c.status == "FAIL"]
    assert failed == ["parameter shards, rank 0 of 2", "parameter shards, rank 1 of 2"]


@pytest.mark.parametrize("sets", [["hardware.count=8"], ["hardware.count=4", "parallelism.data=2",
                                                            "parallelism.tensor=2", "parallelism.zero=1"]])
def test_the_sums_are_of_the_whole_states_whatever_layout_the_spec_gives(sets):
    # the ranks together hold the unsharded model once: a spec of 8 GPUs (whose estimate searches a layout) or
    # with its own parallelism section is summed against the one-GPU estimate, as the states FSDP2 shards
    whole = estimate(load_spec(DENSE)).memory
    half = {part: getattr(whole, part) // 2 for part in ("weights", "gradients", "optimizer")}
    rows = {part: 100 for part in half}
    ranks = [RankBytes(0, **half, row_bytes=rows), RankBytes(1, **half, row_bytes=rows)]
    assert all(c.status == "ok" for c in checks(load_spec(DENSE, sets), ranks))


def test_bad_nproc(run, monkeypatch):
    result = run("profile", DENSE, "--nproc", "0")
    assert result.exit_code == 2 and result.stderr.strip() == "Error: --nproc: must be greater than 0, got 0"
    # more processes than a CPU can hold is refused before any is started (each builds the whole model)
    from costplan import forked

    monkeypatch.setattr(forked, "available_cpus", lambda: 2)
    result = run("check", DENSE, "--nproc", "9", "--device", "cpu")
    assert result.exit_code == 2 and result.stderr.strip() == ("Error: --nproc 9: at most 4 processes per CPU core (8 "
                                                               "here): each builds the whole model")


def test_the_fully_sharded_check_resets_every_other_degree():
    # a spec laid out with tensor, pipeline and expert degrees (its experts split over 2 ranks) is checked as
    # ZeRO-3 over the processes alone: no degree of the layout is left over
    from costplan.profiling.distributed import zero3
    spec = load_spec("mixtral-8x7b", ["hardware.count=32", "parallelism.tensor=2", "parallelism.pipeline=2",
                                      "parallelism.expert=8", "parallelism.expert_tensor=2",
                                      "parallelism.sequence_parallel=true"])
    par = zero3(spec, 2).parallel
    assert (par.data, par.tensor, par.pipeline, par.expert, par.expert_tensor_degree, par.zero) == (2, 1, 1, 1, 1, 3)


def test_adafactor_under_fsdp2_holds_its_matrix_factors_on_every_rank(run):
    # torch's Adafactor allocates a matrix's row and column factors with new_zeros, a replicated DTensor under
    # FSDP2: each rank holds them whole, a vector's second moment and the fp32 master shards sharded
    flash = str(Path(DENSE).with_name("flash-full-recompute.yaml"))
    rows = checked(run, flash)
    spec = load_spec(flash)
    m = spec.model
    assert spec.training.optimizer == "adafactor" and not m.tie_embeddings and not m.bias
    q, kv, f = m.n_heads * m.head_dim, m.n_kv_heads * m.head_dim, m.d_ff
    # (rows, cols) of every matrix: per layer q, k, v, o, gate, up, down; the embedding and the head
    layer = [(q, m.d_model), (kv, m.d_model), (kv, m.d_model), (m.d_model, q), (f, m.d_model), (f, m.d_model),
             (m.d_model, f)]
    factors = m.n_layers * sum(r + c for r, c in layer) + 2 * (m.vocab_size + m.d_model)
    whole = estimate(spec).memory.optimizer
    assert rows["optimizer-state shards, sum over 2 ranks"]["measured"] == whole + 4 * factors
    assert all(c["status"] == "ok" for c in rows.values())


def test_a_failed_distributed_run_names_the_workers_exception():
    from costplan.profiling.distributed import _failure

    stderr = ("[rank1]: Traceback (most recent call last):\n[rank1]:   File \"x.py\", line 3, in <module>\n"
              "[rank1]: RuntimeError: aten.lerp_.Scalar: in-place operations that require placement changes\n"
              "E1204 torch/distributed/elastic/multiprocessing/api.py:1: failed (exitcode: 1)\n" + "=" * 60)
    assert _failure(stderr) == ("RuntimeError: aten.lerp_.Scalar: in-place operations that require placement "
                                "changes")
    assert _failure("something else\n" + "=" * 10) == "=" * 10
    assert _failure("") == "no output"


def test_moe_memory_under_fsdp2_with_every_expert_routed(run):
    # the check's tiny batch can leave a routed expert without rows, and FSDP2 then holds no gradient or optimizer
    # state for it; the distributed check routes in the balanced split (force_balanced), as a real-size batch
    # gives every expert rows, so the states agree with the estimate's
    moe = str(Path(DENSE).with_name("moe-shared.yaml"))
    rows = checked(run, moe)
    whole = estimate(load_spec(moe)).memory
    assert rows["gradient shards, sum over 2 ranks"]["measured"] == whole.gradients


def test_force_balanced_gives_every_expert_rows():
    import torch

    from costplan.profiling.moe import MoE, force_balanced

    spec = load_spec(DENSE, ["model.moe.n_experts=4", "model.moe.top_k=1", "model.moe.d_ff_expert=32"])
    block = MoE(spec.model.moe, spec.model)
    torch.nn.init.zeros_(block.router.weight)          # equal scores: every token picks the same expert

    def experts_with_gradients():
        block.zero_grad(set_to_none=True)
        block(torch.randn(2, 8, spec.model.d_model)).sum().backward()
        return [e.up.weight.grad is not None for e in block.experts]

    assert sum(experts_with_gradients()) == 1
    force_balanced(block)
    assert experts_with_gradients() == [True] * 4
