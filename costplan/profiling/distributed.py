"""The ZeRO-3 memory estimate against a real distributed engine: the reference model under `torchrun`, fully
sharded with FSDP2 (`torch.distributed.fsdp.fully_shard`, every layer and the root), over gloo on CPU or NCCL
on GPUs. After one training step each rank reports the bytes of its parameter, gradient and optimizer-state
shards; they are compared with the estimate of the same spec at `parallelism: {data: N, zero: 3}`.

The training step is the single-device one (costplan.profiling.step): 16-bit shards with an fp32 master copy
of each shard in the optimizer, so the split is ZeRO's 2 + 2 + 12 bytes per parameter, each divided by N.
FSDP2 cuts every tensor along its first dimension with torch.chunk: the first ranks get ⌈d/N⌉ rows, the last
what remains, possibly none (d = 4 over 3 ranks: 2, 2, 0). A rank is therefore within N − 1 rows of each
tensor of Ψ/N; each rank's figure is compared within that rounding (computed from the real shapes), and the
sum over the ranks must equal the unsharded total exactly.

Each rank also reports the bytes FSDP2 wrote copying all-gathered weights into the parameters during the step's
forward and backward (its copy-out op, seen by a dispatch mode), against the copies the step model times for
`parallelism.per_parameter_sharding` (costs/step.gather_copies), within the same rows per tensor and gather.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from costplan.errors import CostplanError
from costplan.profiling.compare import Check
from costplan.loading import on_one_gpu, with_overrides
from costplan.spec import Spec

PARTS = ("weights", "gradients", "optimizer")
LABELS = {"weights": "parameter shards", "gradients": "gradient shards", "optimizer": "optimizer-state shards"}
TIMEOUT_S = 600
GATHERS = 2     # the most times a forward and backward gathers one weight (a layer's: forward, then backward)


def zero3(spec: Spec, nproc: int) -> Spec:
    """The spec trained fully sharded (ZeRO-3, FSDP) over `nproc` data-parallel ranks and nothing else."""
    return with_overrides(spec, [f"hardware.count={nproc}", f"parallelism.data={nproc}", "parallelism.zero=3",
                                 "parallelism.per_parameter_sharding=true",
                                 "parallelism.tensor=1", "parallelism.pipeline=1", "parallelism.expert=1",
                                 "parallelism.expert_tensor=null",
                                 # one stage: no uneven split of the layers over stages
                                 "parallelism.first_stage_layers=null", "parallelism.last_stage_layers=null",
                                 "parallelism.account_for_embedding=false", "parallelism.account_for_loss=false",
                                 "parallelism.stage_layers=null",
                                 # Transformer Engine keeps no fp8 weight cache under FSDP (costs/fp8_weights.py)
                                 "training.fp8_weight_cache=false"])


@dataclass(frozen=True)
class RankBytes:
    rank: int
    weights: int
    gradients: int
    optimizer: int
    row_bytes: dict[str, int]      # per part: Σ over tensors of one dim-0 row
    gather_copied: int | None = None   # bytes FSDP2 copied out of all-gathers in one forward and backward


def run(source: str, overrides: Sequence[str], nproc: int, device: str) -> list[RankBytes]:
    """Launch `nproc` workers under torchrun and collect each rank's shard bytes."""
    with tempfile.TemporaryDirectory(prefix="costplan-fsdp-") as folder:
        request = Path(folder) / "request.json"
        request.write_text(json.dumps({"source": source, "overrides": list(overrides), "device": device,
                                       "out": folder}))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "-m", "costplan.profiling.distributed", str(request)]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            raise CostplanError(f"--nproc {nproc}: the distributed run took over {TIMEOUT_S} s") from None
        # by rank number: rank10.json sorts before rank2.json as text
        results = sorted(Path(folder).glob("rank*.json"), key=lambda p: int(p.stem.removeprefix("rank")))
        if done.returncode != 0 or len(results) != nproc:
            raise CostplanError(f"--nproc {nproc}: the distributed run failed: {_failure(done.stderr)}")
        return [RankBytes(**json.loads(p.read_text())) for p in results]


def _failure(stderr: str) -> str:
    """A failed run's reason: a worker's exception line, without torchrun's rank prefix (its own summary ends
    in a banner), else the last line."""
    lines = [re.sub(r"^\[rank\d+\]:\s*", "", line).strip() for line in stderr.strip().splitlines()]
    raised = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    return (raised or lines or ["no output"])[-1]


def checks(spec: Spec, ranks: Iterable[RankBytes]) -> list[Check]:
    """Per part: each rank against the per-GPU estimate, within its row rounding; the sum over ranks exactly."""
    from costplan.costs.estimate import estimate

    ranks = list(ranks)
    n = len(ranks)
    sharded = zero3(spec, n)
    memory = estimate(sharded).memory
    whole = estimate(on_one_gpu(spec)).memory      # the same states unsharded, on one GPU
    result = []
    for part in PARTS:
        per_gpu = getattr(memory, part)
        for r in ranks:
            measured = getattr(r, part)
            slack = (n - 1) * r.row_bytes[part] / per_gpu if per_gpu else 0.0
            result.append(Check("memory", f"{LABELS[part]}, rank {r.rank} of {n}", per_gpu, measured, "bytes",
                                slack, note=f"whole-row shards: within {n - 1} row{'s' * (n > 2)} of each tensor"
                                if n > 1 else "one process: every tensor whole"))
        held = _unsharded(sharded) if part == "optimizer" else 0.0
        result.append(Check("memory", f"{LABELS[part]}, sum over {n} ranks", getattr(whole, part) + (n - 1) * held,
                            sum(getattr(r, part) for r in ranks), "bytes", 0.0,
                            note="every byte held exactly once" if not held else
                            "every byte held once, Adafactor's matrix factors on every rank"))
    copied = _copied_bytes(sharded)
    for r in ranks:
        if r.gather_copied is None:
            continue
        # each gather copies whole padded rows: within n − 1 rows of each tensor, per gather of it
        slack = (n - 1) * r.row_bytes["weights"] * GATHERS / copied if copied else 0.0
        result.append(Check("memory", f"weights copied out of all-gathers, rank {r.rank} of {n}", copied,
                            r.gather_copied, "bytes", slack,
                            note="FSDP2's copy-out in one forward and backward: the layers' weights twice, the "
                                 "root module's once"))
    return result


def _unsharded(spec: Spec) -> float:
    """Bytes of optimizer state each rank holds whole (costs/parallel.unsharded_optimizer)."""
    from costplan.costs.components import components
    from costplan.costs.parallel import unsharded_optimizer

    return unsharded_optimizer(spec, sum(c.factors for c in components(spec).values()))


def _copied_bytes(spec: Spec) -> float:
    """Bytes the step model has one GPU copy out of all-gathers in a micro-batch's forward and backward: none
    where nothing is sharded (FSDP2 on one process gathers nothing)."""
    from costplan.costs.components import shape_of
    from costplan.costs.memory import weight_bytes
    from costplan.costs.run import memories_of
    from costplan.costs.step import gather_copies

    shape = shape_of(spec)
    (stage,) = memories_of(spec, shape)
    copied = gather_copies(spec, shape, 0, (stage.params, stage.routed_params))
    return sum(copied or ()) * weight_bytes(spec.training.precision, spec.training.autocast)


# ---------------------------------------------------------------------------------------------- the worker
def _local_bytes(tensors: Iterable) -> int:
    total = 0
    for t in tensors:
        if t is None:
            continue
        local = t.to_local() if hasattr(t, "to_local") else t
        total += local.numel() * local.element_size()
    return total


def _row_bytes(tensors: Iterable) -> int:
    """Σ over tensors of one first-dimension row: how far whole-row shards can put a rank from Ψ/N."""
    return sum(math.prod(t.shape[1:]) * t.element_size() for t in tensors if t is not None)


def copy_out_counter():  # noqa: ANN201 - a TorchDispatchMode, made where torch is imported
    """A dispatch mode summing the bytes FSDP2's all-gather copy-out writes into the unsharded parameters: its
    own op (torch ≥ 2.5), or the split_with_sizes_copy it ran before."""
    import torch

    from costplan.profiling.private import TorchDispatchMode

    own = getattr(torch.ops.fsdp, "split_with_sizes_copy", None)
    copy_out = {torch.ops.aten.split_with_sizes_copy.out} | ({own.default} if own is not None else set())

    class CopyOut(TorchDispatchMode):
        written = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            kwargs = kwargs or {}
            if func in copy_out:
                out = kwargs["out"]
                self.written += sum(t.numel() * t.element_size() for t in ([out] if torch.is_tensor(out) else out))
            return func(*args, **kwargs)

    return CopyOut()


def worker(request_path: str) -> None:
    """One rank: build, shard, train one step, write this rank's shard bytes."""
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from costplan.profiling.model import build_model
    from costplan.profiling.moe import force_balanced
    from costplan.profiling.step import Trainer, batch
    from costplan.loading import load_spec

    request = json.loads(Path(request_path).read_text())
    spec = load_spec(request["source"], request["overrides"])
    cuda = request["device"] == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    model = build_model(spec, device=device)
    force_balanced(model)       # every expert holds the states it holds in a real-size batch
    for block in model.layers:
        fully_shard(block)
    fully_shard(model)
    trainer = Trainer(model, spec)
    params = trainer.params
    with copy_out_counter() as copies:
        trainer.accumulate(*batch(spec, spec.training.micro_batch_size, device))
    grads = trainer.gradients()
    gradients, gradient_rows = _local_bytes(grads), _row_bytes(grads)
    trainer.update()
    optimizers = getattr(trainer, "optimizers", None) or [trainer.optimizer]
    # Optimizer state: the fp32 master shards of 16-bit training and every per-parameter moment.
    states = [*getattr(trainer, "master", []),
              *(v for opt in optimizers for s in opt.state.values() for v in s.values()
                if torch.is_tensor(v) and v.dim() > 0)]
    out = {
        "rank": rank,
        "weights": _local_bytes(params),
        "gradients": gradients,
        "optimizer": _local_bytes(states),
        "row_bytes": {"weights": _row_bytes(params), "gradients": gradient_rows, "optimizer": _row_bytes(states)},
        "gather_copied": copies.written,
    }
    Path(request["out"], f"rank{rank}.json").write_text(json.dumps(out))
    dist.destroy_process_group()


if __name__ == "__main__":
    worker(sys.argv[1])
