"""Communication of the step model (costs/step.py): how long a collective takes on the link its group spans,
how much of it the compute beside it hides, and what the step model hid behind what."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from costplan.costs import memo
from costplan.costs.device import Device
from costplan.spec import Spec

BUCKET_BYTES = 25 * 2**20      # torch DDP's default gradient bucket (bucket_cap_mb=25)


# How a collective moves its bytes: an all-reduce and a reduce-scatter or all-gather (ring collectives, which pool a
# node's NICs across nodes; inside a node only an all-reduce reaches the NVLink SHARP rates of the curve), an
# all-to-all, a point-to-point send.
ALLREDUCE, RING, ALLTOALL, POINT = "allreduce", "ring", "alltoall", "point"


def collective_seconds(dev: Device, wire: float, message: float, span: int, stride: int = 1,
                       pattern: str = RING) -> float:
    """Seconds of collectives putting `wire` bytes on each GPU's link in messages of `message` bytes: the bus
    efficiency curves are nccl-tests bus bandwidths, latency included, so no latency is added. Inside a node any
    collective but an all-reduce runs at most at the device's ring_ceiling (the all-reduce curve being NVLink
    SHARP's where that exceeds it). Across nodes a ring collective pools a node's NICs; a point-to-point send goes
    through the sender's own NIC, and an all-to-all sends through it only the share of its `wire` bound for other
    nodes, (n − k)/(n − 1) of it with k of the group's n ranks on each node, the rest going over the interconnect
    meanwhile (NCCL's maintainer, NVIDIA/nccl-tests issue #130: "the portion that's going through the network
    will determine the global time")."""
    if wire <= 0:
        return 0.0
    ranks = span // stride
    if pattern == ALLTOALL and span > dev.gpu.node_size and ranks > 1:
        wire *= (ranks - dev.gpu.ranks_per_node(span, stride)) / (ranks - 1)
    return wire / memo.cached(("link rate", id(dev.gpu), id(dev.curves), span, stride, message, pattern),
                              lambda: _link_rate(dev, message, span, stride, pattern))


def _link_rate(dev: Device, message: float, span: int, stride: int, pattern: str) -> float:
    """Bytes/s a collective reaches on the link of a group at a message size (shared inside memo.shared())."""
    bandwidth, curve = dev.link(span, stride, pooled=pattern in (ALLREDUCE, RING))
    inside = span <= dev.gpu.node_size
    if pattern == ALLTOALL and dev.curves.alltoall is not None and inside:
        curve = dev.curves.alltoall
    efficiency = curve.at(message)
    ceiling = dev.curves.ring_ceiling
    if pattern != ALLREDUCE and inside and ceiling is not None:
        efficiency = min(efficiency, ceiling.value)
    rate = bandwidth * efficiency
    if not inside and pattern in (ALLREDUCE, RING) and dev.gpu.ranks_per_node(span, stride) > 1:
        # a ring across nodes also runs its hops inside each node, over more steps: at a message size no faster
        # than a ring of the node's ranks (the network curve is derived, not measured by size, and pooling the
        # NICs had put 25 MiB buckets over 2 A100 nodes at 190 GB/s against 129 inside one)
        rate = min(rate, _link_rate(dev, message, dev.gpu.node_size, stride, pattern))
    return rate


def overlap_slowdown(seconds: float, behind: float, share: float) -> float:
    """Seconds a collective of `seconds` adds to the compute `behind` it runs beside, beyond its own excess
    max(0, seconds - behind): its kernel holds `share` of the SMs while it runs, so that compute goes at
    (1 - share) of its rate for up to `seconds`, and the two end together at max(seconds, behind + share·seconds).
    Exposed traffic (behind = 0) adds nothing here."""
    return max(seconds - behind, share * seconds) - max(0.0, seconds - behind)


def sm_share(dev: Device) -> float:
    figure = dev.curves.overlap_sm_share
    return 0.0 if figure is None else figure.value


@dataclass
class Traffic:
    """One kind of communication per micro-batch (or step): bytes each GPU sends, seconds, the exposed part
    (what exceeds the compute it hides behind, and the slowdown of that compute), and of it the slowdown."""

    share: float = 0.0         # of the SMs its collectives hold (sm_share)
    bytes: float = 0.0
    seconds: float = 0.0
    exposed: float = 0.0
    slowed: float = 0.0

    def add(self, count: float, wire: float, seconds: float, behind: float) -> None:
        slowed = overlap_slowdown(seconds, behind, self.share)
        self.bytes += count * wire
        self.seconds += count * seconds
        self.exposed += count * (max(0.0, seconds - behind) + slowed)
        self.slowed += count * slowed


def expert_paired(spec: Spec, stage: int) -> float:
    """With expert_overlap, the share of a pipeline stage's passes whose MoE all-to-alls run beside another
    micro-batch's pass (0 without it). Megatron-Core's combined 1F1B pairs each steady-state forward with a
    backward; its warm-up forwards, (p − stage − 1)·2 + (v − 1)·p of the m·v model chunks (its interleaved
    schedule's count) and one more, the first (the non-pipelined schedule's), and as many cool-down backwards run
    alone."""
    par = spec.parallel
    return paired_share(par.pipeline, par.virtual_stages, spec.micro_batches, stage) if par.expert_overlap else 0.0


def paired_share(p: int, v: int, m: int, stage: int) -> float:
    """expert_paired's share for stage `stage` of p, v model chunks a rank and m micro-batches a step."""
    chunks = m * v
    alone = min(chunks, (p - stage - 1) * 2 + (v - 1) * p + 1)
    return (chunks - alone) / chunks


def expert_overlapped(spec: Spec) -> bool:
    """Whether expert_overlap hides any pass's all-to-alls: the last stage's, whose warm-up is the shortest."""
    return expert_paired(spec, spec.parallel.pipeline - 1) > 0


def overlaps(spec: Spec) -> str:
    """What the step model hid behind what, for this layout."""
    par = spec.parallel
    return _overlaps(par.tensor_overlap, par.pipeline_overlap, expert_overlapped(spec), par.context > 1, par.zero)


@functools.lru_cache(maxsize=64)
def _overlaps(tensor_overlap: bool, pipeline_overlap: bool, expert_overlap: bool, ring: bool, zero: int) -> str:
    exposed = [kind for kind, hidden in (("expert", expert_overlap), ("pipeline", pipeline_overlap)) if not hidden]
    said = ["tensor traffic behind the GEMMs" if tensor_overlap else "tensor traffic exposed"]
    if exposed:
        said.append(f"{' and '.join(exposed)} traffic exposed")
    if expert_overlap:
        said.append("expert all-to-alls behind another micro-batch's compute in the schedule's paired passes")
    if pipeline_overlap:
        said.append("pipeline sends behind the model chunks")
    if ring:
        said.append("context ring behind attention")
    said.append({0: "gradient all-reduce behind the last backward",
                 1: "gradient reduce-scatter behind the last backward, weight gather behind the first forward",
                 2: "gradient reduce-scatter behind every backward, weight gather behind the first forward",
                 3: "ZeRO-3 gathers and reduce-scatters behind each micro-batch"}[zero])
    return "; ".join(said)
