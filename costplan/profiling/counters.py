"""Counting matmul FLOPs of the reference model, per component, with two independent counters.

1. torch's FlopCounterMode, forward and forward+backward (recomputation included, as executed). torch 2.13
   has no formula for the CPU flash kernel `aten._scaled_dot_product_flash_attention_for_cpu` (and its
   backward) nor for `aten._grouped_mm`, and silently counts them as 0; the formulas below fill those holes.
   The GPU attention kernels (flash, memory-efficient, cuDNN) get the same formulas: torch 2.11's own refuse
   grouped-query shapes (fewer key than query heads), which those kernels take as they are.
2. fvcore (JIT trace), forward only. fvcore counts one multiply-add as one "flop" (it says so in its docs);
   its numbers are doubled here (convention 1). It has no handle for scaled_dot_product_attention, so one is
   registered, and its handles for norms and pooling are switched off (not matmuls, convention 2).

Every aten op the step runs is also classified, so nothing goes missing silently: a contraction (matmul,
convolution, attention kernel) that neither counter has a formula for is a defect and is reported as such;
elementwise arithmetic (softmax, norms, activations, adds) is listed as "not counted (convention 2)".
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from costplan.profiling.model import component_of
from costplan.profiling.private import TorchDispatchMode
from costplan.profiling.scope import OUTSIDE, ComponentScope

aten = torch.ops.aten


# ---------------------------------------------------------------------------------------------- formulas
def _attention_pairs(query, key) -> tuple[int, int, int, int]:  # noqa: ANN001
    """(batch·query heads, queries, keys, d_qk) from the shapes q (b, H, s_q, d) and k (b, G, s_k, d)."""
    b, heads, s_q, d_qk = query
    return b * heads, s_q, key[-2], d_qk


def flash_forward(query, key, value, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    """QKᵀ and PV over every (query, key) pair, causal or not: 2·B·H·s_q·s_k·(d_qk + d_v)."""
    bh, s_q, s_k, d_qk = _attention_pairs(query, key)
    return 2 * bh * s_q * s_k * (d_qk + value[-1])


def flash_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    """Five matmuls: S = QKᵀ again (d_qk), dP = dO·Vᵀ (d_v), dV = Pᵀ·dO (d_v), dQ = dS·K (d_qk), dK = dSᵀ·Q (d_qk)."""
    bh, s_q, s_k, d_qk = _attention_pairs(query, key)
    return 2 * bh * s_q * s_k * (3 * d_qk + 2 * value[-1])


def grouped_mm(a, b, offs=None, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    """(total rows × k)·(groups × k × n) with rows split between groups by `offs`: each row meets one group's
    matrix, so 2·rows·k·n whatever the split. 3-D × 3-D (batched per group) is a plain bmm."""
    if len(a) == 2 and len(b) == 3:
        return 2 * a[0] * a[1] * b[2]
    if len(a) == 3 and len(b) == 3:
        return 2 * a[0] * a[1] * a[2] * b[2]
    if len(a) == 2 and len(b) == 2:       # (m × k_total)·(k_total × n), k split between groups (wgrad)
        return 2 * a[0] * a[1] * b[1]
    return 2 * a[0] * a[1] * b[-1]


def convolution_backward(grad_out, x, weight, bias, stride, padding, dilation, transposed, output_padding,
                         groups, output_mask, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    """Each requested gradient (input, weight) costs one forward: 2·N·w[0]·w[1]·(correlated positions)·kernel,
    w[1] being the per-group channels. torch 2.13's formula ignores `groups` for the weight gradient and
    overcounts a grouped convolution's backward by the number of groups."""
    positions = 1
    for size in (x if transposed else grad_out)[2:]:
        positions *= size
    kernel = 1
    for size in weight[2:]:
        kernel *= size
    forward = 2 * grad_out[0] * weight[0] * weight[1] * positions * kernel
    return forward * (int(output_mask[0]) + int(output_mask[1]))


# Fused attention kernels, each taking (query, key, value, ...) forward and (grad_out, query, key, value, ...)
# backward: aten._scaled_dot_product_<kernel> and its _backward.
ATTENTION_KERNELS = ("flash_attention_for_cpu", "flash_attention", "efficient_attention", "cudnn_attention")


def _packet(name: str):  # noqa: ANN202
    return getattr(aten, name, None)


EXTRA_FORMULAS: dict = {
    packet: formula for packet, formula in (
        *((_packet(f"_scaled_dot_product_{kernel}"), flash_forward) for kernel in ATTENTION_KERNELS),
        *((_packet(f"_scaled_dot_product_{kernel}_backward"), flash_backward) for kernel in ATTENTION_KERNELS),
        (_packet("_grouped_mm"), grouped_mm),
        (_packet("convolution_backward"), convolution_backward),
    ) if packet is not None
}


# ---------------------------------------------------------------------------------------------- op census
# Ops that move, view, create or select data without arithmetic.
NO_ARITHMETIC = frozenset("""
    view _unsafe_view reshape expand expand_as permute transpose t unsqueeze squeeze slice select split
    split_with_sizes unbind as_strided clone contiguous copy_ _to_copy to detach detach_ alias empty empty_like
    empty_strided zeros zeros_like ones ones_like full full_like fill_ zero_ new_empty new_zeros new_ones
    new_full new_empty_strided arange cat stack embedding index index_select gather masked_fill masked_fill_
    where _local_scalar_dense lift_fresh scalar_tensor set_ resize_ triu tril narrow flatten unflatten
    slice_backward select_backward _reshape_alias diagonal movedim repeat lift_fresh_copy normal_ uniform_
    sort topk argsort argmax bincount nonzero scatter index_put_ unsafe_split new_zeros_like randint random_
    _unsafe_index eq ne lt le gt ge logical_not logical_and bitwise_not any all max_pool2d_with_indices
    ones_like_ is_same_size
""".split())
# Ops that contract (matmuls, convolutions, attention kernels): their work is the headline FLOPs.
CONTRACTIONS = frozenset("""
    mm addmm bmm baddbmm addbmm matmul dot vdot mv addmv outer ger addr linear einsum tensordot _int_mm
    _scaled_mm _grouped_mm _scaled_grouped_mm convolution _convolution convolution_backward cudnn_convolution
    _slow_conv2d_forward convolution_overrideable
""".split())


def is_contraction(name: str) -> bool:
    return name in CONTRACTIONS or "attention" in name or name.endswith("_mm")


class OpCensus(TorchDispatchMode):
    """Records how often each op runs, by qualified overload packet ("aten.mm"). `prim` ops only query
    metadata (a tensor's device, for instance) and are left out."""

    def __init__(self):
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func.namespace != "prim":
            self.calls[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


@dataclass
class OpReport:
    """What the FLOP counter did not count: contractions without a formula (defects) and arithmetic that is
    not a matmul (convention 2), with call counts."""

    uncounted_contractions: dict[str, int] = field(default_factory=dict)
    arithmetic_not_counted: dict[str, int] = field(default_factory=dict)


def classify(calls: Mapping[str, int], counted: Iterable[str]) -> OpReport:
    """Sort the census: counted ops drop out; contractions left are defects; the rest is arithmetic unless
    it only moves data. Names are qualified ("aten.mm"); ops of other namespaces count as arithmetic."""
    counted = set(counted)
    report = OpReport()
    for name, n in sorted(calls.items()):
        if name in counted:
            continue
        namespace, _, base = name.partition(".")
        if is_contraction(base):
            report.uncounted_contractions[name] = n
        elif namespace != "aten" or base not in NO_ARITHMETIC:
            report.arithmetic_not_counted[name] = n
    return report


# ---------------------------------------------------------------------------------------------- per component
def by_component(per_module: Mapping[str, int]) -> dict[str, int]:
    """Hierarchical per-module totals → per-component totals: for each component, the modules that belong to
    it and have no ancestor of the same component in the table (so nothing is counted twice)."""
    result: Counter[str] = Counter()
    for name, value in per_module.items():
        component = component_of(name)
        if component is None:
            continue
        parts = name.split(".")
        ancestors = (".".join(parts[:i]) for i in range(1, len(parts)))
        if not any(a in per_module and component_of(a) == component for a in ancestors):
            result[component] += value
    return dict(result)


@dataclass
class FlopCount:
    """Matmul FLOPs of one step, per component; OUTSIDE is whatever ran outside every component."""

    forward: dict[str, int]
    training: dict[str, int]      # forward + backward + recomputation, as executed
    ops: OpReport


def _counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)


def _forward_split(table: Mapping[str, Mapping[object, int]]) -> dict[str, int]:
    """FlopCounterMode's per-module table → {component: flops} plus OUTSIDE (module paths lose the root
    class name that the counter puts first)."""
    per_module, total = {}, 0
    for name, ops in table.items():
        if name == "Global":
            total = sum(ops.values())
        else:
            per_module[name.partition(".")[2]] = sum(ops.values())
    parts = by_component(per_module)
    parts[OUTSIDE] = total - sum(parts.values())
    return parts


class _Attributed(OpCensus):
    """The census, plus the FLOPs of every op by the counter's own formulas, credited to the one component
    the scope names (one dispatch mode for both: each mode costs a Python call per op)."""

    def __init__(self, counter: FlopCounterMode, scope: ComponentScope):
        super().__init__()
        self.registry, self.scope = counter.flop_registry, scope
        self.flops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func.namespace != "prim":
            self.calls[str(func.overloadpacket)] += 1
        formula = self.registry.get(func.overloadpacket)
        if formula is not None:
            self.flops[self.scope.current()] += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(model: torch.nn.Module, run_forward: Callable[[], torch.Tensor]) -> FlopCount:
    """Count `run_forward()` (returning the loss) and its backward. Totals, and the forward per component,
    come from FlopCounterMode (its table read between the passes); the per-component split of forward +
    backward comes from the component scope (scope.py) with the same formulas; whatever it cannot place is
    OUTSIDE."""
    whole = _counter()
    with ComponentScope(model, tag_graph=True) as scope:
        attributed = _Attributed(whole, scope)
        with whole, attributed:
            loss = run_forward()
            forward = {name: dict(ops) for name, ops in whole.get_flop_counts().items()}
            loss.backward()
    training = dict(attributed.flops)
    training.pop(OUTSIDE, None)
    training[OUTSIDE] = whole.get_total_flops() - sum(training.values())
    counted = {str(p) for p in whole.flop_registry}
    return FlopCount(forward=_forward_split(forward), training=training, ops=classify(attributed.calls, counted))


# ---------------------------------------------------------------------------------------------- fvcore
def _fvcore_handles() -> dict:
    """fvcore's handles for contractions only: its defaults also count norms, pooling and upsampling, which
    are not matmuls (convention 2); those ops are then listed as unsupported instead."""
    from fvcore.nn import jit_handles as h

    return {"aten::addmm": h.addmm_flop_jit, "aten::bmm": h.bmm_flop_jit, "aten::mm": h.matmul_flop_jit,
            "aten::matmul": h.matmul_flop_jit, "aten::linear": h.linear_flop_jit,
            "aten::einsum": h.einsum_flop_jit, "aten::_convolution": h.conv_flop_jit,
            "aten::scaled_dot_product_attention": _fvcore_sdpa}


def _fvcore_sdpa(inputs, outputs) -> int:  # noqa: ANN001
    """Multiply-adds of scaled_dot_product_attention: (QKᵀ + PV) over every (query, key) pair and query head."""
    q, k, v = (i.type().sizes() for i in inputs[:3])
    queries, keys = q[-2], k[-2]
    heads = 1
    for size in q[:-2]:
        heads *= size
    return heads * queries * keys * (q[-1] + v[-1])


@dataclass
class FvcoreCount:
    forward: dict[str, int]              # FLOPs (2 per multiply-add), per component and OUTSIDE
    unsupported: dict[str, int]          # ops fvcore saw and has no handle for


def fvcore_available() -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import fvcore.nn  # noqa: F401
    except ImportError:
        return False
    return True


def count_fvcore(model: torch.nn.Module, ids: torch.Tensor) -> FvcoreCount:
    """Forward FLOPs of model(ids) by fvcore's JIT-trace counter, per component."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # fvcore and its iopath dependency warn about deprecations
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, (ids,)).clear_op_handles().set_op_handle(**_fvcore_handles())
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        macs = analysis.by_module()
        unsupported = dict(analysis.unsupported_ops())
    total = 2 * macs[""]
    parts = {key: 2 * value for key, value in by_component({k: v for k, v in macs.items() if k}).items()}
    parts[OUTSIDE] = total - sum(parts.values())
    return FvcoreCount(forward=parts, unsupported=unsupported)
