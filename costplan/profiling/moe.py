"""Mixture-of-experts block for the reference model (Switch §2; GShard; Mixtral; DeepSeekMoE §3).

Router: softmax (fp32) over a d_model × n_experts matrix (with a bias when router_bias), top_k experts per
token. Dispatch is a gather into routed rows, grouped by expert, and each expert is run on its own rows (a
loop over experts), so the counted FLOPs are exactly rows × expert, whatever the routing:
- dropless: one row per (token, chosen expert), s·top_k per sequence;
- with a capacity factor: per routing group (one sequence), each expert gets a buffer of
  ⌈cf·s·top_k/n_experts⌉ rows, computed whole; tokens past a full buffer are dropped, empty slots are zeros.
Each row keeps two int64 indices (the token it came from, for the gather and the scatter-add back, and the
(token, expert) entry of its gate weight) and its fp32 gate weight; the combine multiplies each expert output
row by its weight, as a fused unpermute does (combine: its fp32 work on chip). Shared experts are one fused MLP
on every token, with an optional sigmoid gate (Qwen-MoE).

On fake or meta tensors the router's choices cannot be read, so the rows are split between experts in a
fixed, balanced way (the shapes, FLOPs and saved bytes do not depend on the split; a test checks that real
routing gives the same counts). force_balanced() makes real tensors take that split too, for the distributed
memory check: in a batch of a real run's size every expert receives rows and so holds a gradient and optimizer
state, where the check's tiny batch can leave one idle (Megatron-Bridge's MoE benchmarks force-balance tokens
the same way). The rows an expert runs are then not the ones its router chose: shapes, not numerics.
"""
from __future__ import annotations

import torch
from torch import nn

# What capacity_factor means (slots per expert and routing group) is defined once, with the cost model.
from costplan.costs.moe import capacity
from costplan.profiling.modules import MLP
from costplan.profiling.on_chip import on_chip
from costplan.profiling.private import is_fake
from costplan.spec import ModelSpec, MoESpec


class MoE(nn.Module):
    def __init__(self, moe: MoESpec, model: ModelSpec, fused: bool = False, **factory):
        super().__init__()
        d = model.d_model
        self.spec = moe
        self.router = nn.Linear(d, moe.n_experts, bias=moe.router_bias, **factory)
        self.experts = nn.ModuleList(MLP(model.mlp, d, moe.d_ff_expert, model.bias, fused, **factory)
                                     for _ in range(moe.n_experts))
        self.shared = (MLP(model.mlp, d, moe.d_ff_shared, model.bias, fused, **factory) if moe.n_shared_experts
                       else None)
        self.shared_gate = nn.Linear(d, 1, bias=False, **factory) if moe.shared_expert_gate else None
        self.balanced = False       # the fixed, balanced split on real tensors too (force_balanced)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = (int(size) for size in x.shape)       # plain ints, also under JIT tracing
        n, k = b * s, self.spec.top_k
        flat = x.reshape(n, d)
        probs = torch.softmax(self.router(flat).float(), dim=-1)                # (n, E), saved
        with torch.no_grad():
            choice = torch.topk(probs, k, dim=-1).indices                       # (n, k)
            static = self.balanced or is_fake(x) or x.device.type == "meta" or torch.jit.is_tracing()
            plan = (self._capacity_plan(choice, b, s) if self.spec.capacity_factor else
                    self._dropless_plan(choice, static))
        token, entry, rows = plan
        inputs = torch.cat([flat, flat.new_zeros(1, d)])[token]                 # (R, d): gathered rows
        outputs, start = [], 0
        for expert, count in zip(self.experts, rows):
            if count:                      # an expert without rows is not run (and gets no gradient)
                outputs.append(expert(inputs[start:start + count]))
            start += count
        weights = torch.cat([probs.flatten(), probs.new_zeros(1)])[entry]       # (R,) fp32 gate weights
        out = combine(torch.cat(outputs), weights, token[:, None].expand(-1, d), n).view(b, s, d)
        if self.shared is not None:
            shared = self.shared(x)
            if self.shared_gate is not None:
                shared = torch.sigmoid(self.shared_gate(x)) * shared
            out = out + shared
        return out

    def _dropless_plan(self, choice: torch.Tensor, static: bool):  # noqa: ANN202
        """Rows sorted by expert: (token of each row, its (token, expert) entry, rows per expert)."""
        n, k = (int(size) for size in choice.shape)
        experts = self.spec.n_experts
        order = torch.argsort(choice.flatten(), stable=True)
        token = order // k
        entry = token * experts + choice.flatten()[order]
        if static:
            base, extra = divmod(n * k, experts)
            rows = [base + (e < extra) for e in range(experts)]
        else:
            rows = torch.bincount(choice.flatten(), minlength=experts).tolist()
        return token, entry, rows

    def _capacity_plan(self, choice: torch.Tensor, b: int, s: int):  # noqa: ANN202
        """Padded buffers, expert-major: expert e's rows are [e·b·C, (e + 1)·b·C), C rows per sequence. Empty
        rows point at the zero row n (input) and the zero entry n·E (weight)."""
        n, k = (int(size) for size in choice.shape)
        experts, cap = self.spec.n_experts, capacity(self.spec, s)
        per_slot = choice.view(b, s * k)                                        # slots in token order
        one_hot = torch.nn.functional.one_hot(per_slot, experts)                 # (b, s·k, E)
        position = (one_hot.cumsum(1) - 1).gather(2, per_slot.unsqueeze(-1)).squeeze(-1)
        keep = position < cap
        group = torch.arange(b, device=choice.device)[:, None].expand(b, s * k)
        row = (per_slot * b + group) * cap + position.clamp(max=cap - 1)
        slot_token = (group * s + torch.arange(s * k, device=choice.device)[None, :] // k)
        total = experts * b * cap
        token = torch.full((total + 1,), n, dtype=torch.long, device=choice.device)
        entry = torch.full((total + 1,), n * experts, dtype=torch.long, device=choice.device)
        sink = torch.full_like(row, total)                                       # dropped slots land here
        row = torch.where(keep, row, sink)
        token.scatter_(0, row.flatten(), slot_token.flatten())
        entry.scatter_(0, row.flatten(), (slot_token * experts + per_slot).flatten())
        return token[:total].clone(), entry[:total].clone(), [b * cap] * experts


def combine(rows: torch.Tensor, weights: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Σ over each token's rows of weight · row: the rows weighted in the weights' dtype (fp32) and scatter-added
    into a zeroed (n + 1) × d output (row n takes the dropped slots), cast back; under JIT tracing as plain ops (a
    traced Function is opaque). In fp32 the result is a view of that buffer, which is not to be changed in
    place."""
    if torch.jit.is_tracing():
        return _combine(rows, weights, index, n)
    return _Combine.apply(rows, weights, index, n)


def _combine(rows: torch.Tensor, weights: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    weighted = rows * weights[:, None]
    # scatter_add, not index_add: index_add's backward keeps its source (an fp32 copy of every row).
    return rows.new_zeros(n + 1, rows.shape[1], dtype=weighted.dtype).scatter_add(0, index, weighted)[:n].to(
        rows.dtype)


class _Combine(torch.autograd.Function):
    """The weighted scatter back to the tokens as Megatron-Core's fused unpermute (moe_permute_fusion, one kernel
    each way) holds it: it saves the rows, their weights and indices, and its fp32 weighting and sums stay on chip
    (on_chip.py). The same kernels as autograd runs for the plain ops (costs/eager.py routing_kernels)."""

    @staticmethod
    def forward(ctx, rows, weights, index, n):  # noqa: ANN001, ANN205
        ctx.save_for_backward(rows, weights, index)
        ctx.n = n
        with on_chip():
            out = _combine(rows, weights, index, n)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        rows, weights, index = ctx.saved_tensors
        with on_chip():
            d_rows, d_weights = _combine_backward(grad, rows, weights, index, ctx.n, ctx.needs_input_grad[:2])
        return d_rows, d_weights, None, None


def _combine_backward(grad: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor, index: torch.Tensor,
                      n: int, needed: tuple[bool, bool]):  # noqa: ANN202
    """What autograd runs for _combine's ops: the cast's, the slice's and the scatter-add's gradients, then the
    product's to each factor asked for."""
    wide = rows.dtype if rows.dtype.itemsize > weights.dtype.itemsize else weights.dtype   # no dispatched op
    whole = torch.ops.aten.slice_backward(grad.to(wide), [n + 1, grad.shape[1]], 0, 0, n, 1)
    routed = whole.gather(0, index)
    d_rows = (routed * weights[:, None]).to(rows.dtype) if needed[0] else None
    return d_rows, (routed * rows).sum(1) if needed[1] else None


def force_balanced(model: nn.Module) -> None:
    """Route every MoE block of `model` in the fixed, balanced split, on real tensors too."""
    for module in model.modules():
        if isinstance(module, MoE):
            module.balanced = True
