"""training.fusion: eager (costs/eager.py): the bytes eager PyTorch's kernels move for a layer's memory-bound
work, by hand from kernel lists, and counted on the CPU by running a Llama block the way torchtitan writes it
under a dispatch mode that adds up what every aten kernel reads and writes."""
from __future__ import annotations

import json

import pytest

import costplan
from conftest import make_spec
from costplan.costs import layers, ops
from costplan.costs.estimate import shape_of
from costplan.errors import CostplanError

LLAMA = {"d_model": 512, "n_heads": 16, "n_kv_heads": 4, "d_ff": 1024, "n_layers": 1, "vocab_size": 1000,
         "max_seq_len": 64, "mlp": "swiglu", "norm": "rmsnorm", "position": "rope", "bias": False,
         "attention": {"type": "flash"}}
S = 64


def eager_ops(model=None, precision="bf16", fusion="eager", fused=()):
    spec = make_spec({**LLAMA, **(model or {})}, {"fusion": fusion, "precision": precision, "seq_len": S,
                                                  "fused_kernels": list(fused)})
    shape = shape_of(spec)
    layer = layers.layers(spec.model)[0]
    found = [op for group in ops.layer_ops(layer, spec.model, shape).values() for op in group]
    return spec, shape, [op for op in found if isinstance(op, ops.Stream)]


def by_kind(streams):
    out = {}
    for s in streams:
        forward, backward = out.get(s.kind, (0, 0))
        out[s.kind] = (forward + s.bytes, backward + (2 * s.bytes if s.backward is None else s.backward))
    return out


def head_streams(training):
    """The final norm's and the loss's memory-bound streams by kind, and the spec, for LLAMA with `training`."""
    spec = make_spec(LLAMA, {"seq_len": S, **training})
    return spec, by_kind([op for op in ops.head_ops(spec.model, shape_of(spec)) if isinstance(op, ops.Stream)])


def test_swiglu_by_hand():
    # silu reads the gate and writes (2 elements), the product reads two and writes one (3): 5 per element of
    # d_ff; backward the product's two gradients (3 + 3) and silu_backward (reads g and x, writes: 3): 9
    streams = by_kind(eager_ops()[2])
    assert streams["activation"] == (5 * 2 * S * 1024, 9 * 2 * S * 1024)


def test_rmsnorm_rotary_residual_by_hand():
    found = by_kind(eager_ops()[2])
    e, f = 2, 4
    # forward kernels: x.float(), pow, mean, x·(1/rms), type_as, ·weight, as (read, write) element sizes
    forward = (e + f) + (f + f) + f + (f + f) + (f + e) + (e + e)
    # backward: weight mul (g·w; g·y then its sum), cast, 1/rms mul (g·r; g·x then its sum), mean (expand / n),
    # pow (x.pow(1), ·2, ·g), the two gradients of x.float() summed, the cast back
    backward = ((e + e) + (e + e + e) + e) + (e + f) + ((f + f) + (f + f + f) + f) + f \
        + ((f + f) + (f + f) + (f + f + f)) + (f + f + f) + (f + e)
    assert (forward, backward) == (36, 92)
    assert found["norm"] == (2 * S * 512 * forward, 2 * S * 512 * backward)
    rotated = S * (512 + 128)        # q and k: 16 and 4 heads of 32
    assert found["rotary"] == ((e + f) * 2 * rotated + 2 * f * rotated, (e + f) * 2 * rotated + 2 * f * rotated)
    # repeat_kv copies k and v from 4 heads to 16, backward sums them back
    assert found["repeat_kv"] == (2 * S * (128 + 512) * e, 2 * S * (512 + 128) * e)
    # two adds; backward two sums where x and h fan out to a norm and the residual, two more for the normed
    # input read by wq, wk, wv, one for the one read by w1 and w3
    assert found["residual"] == (2 * 3 * S * 512 * e, 2 * 3 * S * 512 * e)
    assert found["gradient_sum"] == (0, 3 * 3 * S * 512 * e)


def test_fused_streams_are_unchanged():
    spec, shape, streams = eager_ops(fusion="fused")
    assert spec.training.fusion == "fused" and make_spec(LLAMA).training.fusion == "fused"
    e = 2
    assert all(s.backward is None for s in streams if s.kind != "residual")
    # the residual adds' backward is the gradient sums where the stream fans out into a norm and the add: the
    # eager count's two sums above, as many bytes as the two adds forward (an add's own backward moves nothing)
    assert by_kind(streams) == {"rotary": (2 * S * 640 * e, 4 * S * 640 * e),
                                "activation": (3 * S * 1024 * e, 6 * S * 1024 * e),
                                "norm": (2 * 2 * S * 512 * e, 4 * 2 * S * 512 * e),
                                "residual": (6 * S * 512 * e, 6 * S * 512 * e)}


def test_eager_loss_and_final_norm_by_hand():
    head = head_streams({"fusion": "eager"})[1]
    # pred.float() (2 + 4), log_softmax (4 + 4); backward nll_loss_backward's zero fill (4),
    # log_softmax_backward (4 + 4 + 4), the cast back (4 + 2)
    assert head["loss"] == (S * 1000 * 14, S * 1000 * 22)
    assert head["norm"] == (S * 512 * 36, S * 512 * 92)


def test_eager_is_slower_and_the_setting_is_checked():
    fused = costplan.estimate(make_spec(LLAMA, {"seq_len": S}))
    slow = costplan.estimate(make_spec(LLAMA, {"seq_len": S, "fusion": "eager"}))
    assert slow.time.breakdown["memory_bound"] > 2 * fused.time.breakdown["memory_bound"]
    assert slow.memory.total_per_gpu == fused.memory.total_per_gpu
    with pytest.raises(CostplanError, match="training.fusion"):
        make_spec(LLAMA, {"fusion": "compiled"})


def test_fp32_runs_no_casts():
    found = by_kind(eager_ops(precision="fp32")[2])
    assert found["norm"] == (2 * S * 512 * (4 + 4 + 4 + 8 + 8), 2 * S * 512 * (6 * 4 + 17 * 4))
    assert found["rotary"] == (2 * 4 * S * 640, 2 * 4 * S * 640)


# ------------------------------------------------------------------------------------------ counted on the CPU
def _counted(fn, inputs):
    """Bytes the aten kernels of fn (forward) and of its backward read and write: each tensor argument's and
    result's distinct elements (a broadcast dimension once); views move nothing."""
    torch = pytest.importorskip("torch")
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    skip = ("mm", "scaled_dot_product", "_unsafe_view", "randn_like")   # GEMMs, the attention core, views

    def size(t):
        n = t.element_size()
        for extent, stride in zip(t.shape, t.stride()):
            n *= extent if stride else 1
        return n

    class Count(TorchDispatchMode):
        moved = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            alias = func._schema.returns and func._schema.returns[0].alias_info
            if (alias and not alias.is_write) or any(name in str(func) for name in skip):
                return out
            # nll_loss reads one logit per row (its target) and its backward takes the logits only for their
            # shape (it zero-fills and scatters): count the gradient and the targets
            # an out= tensor is written (the result), not read
            inputs = (args, {k: v for k, v in (kwargs or {}).items() if k != "out"})
            read = [t for t in tree_leaves(inputs) if isinstance(t, torch.Tensor)]
            written = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
            if func in (torch.ops.aten.nll_loss_forward.default, torch.ops.aten.nll_loss_backward.default):
                read = [t for t in read if t.dim() < 2]
            # indexing a row's one element (the target's logit) reads or writes that element, not the rows
            if func in (torch.ops.aten.index.Tensor, torch.ops.aten.index_put_.default):
                read, written = [t for t in read if t.dim() < 2], [t for t in written if t.dim() < 2]
            self.moved += sum(size(t) for t in (*read, *written))
            return out

    with Count() as forward:
        y = fn(*inputs)
    gradient = torch.ones_like(y)
    with Count() as backward:
        y.backward(gradient)
    return forward.moved, backward.moved


def _llama_block(torch, d, heads, kv_heads, d_ff, s):
    """A Llama layer written as torchtitan's model.py runs it (RMSNorm in fp32 with casts, complex rotary,
    repeat_kv, SwiGLU, two residual adds); returns the block and its input."""
    import torch.nn.functional as fn
    bf, hd = torch.bfloat16, d // heads
    torch.manual_seed(0)
    w = {name: (torch.randn(*shape, dtype=bf) * 0.02).requires_grad_() for name, shape in
         (("q", (d, d)), ("k", (kv_heads * hd, d)), ("v", (kv_heads * hd, d)), ("o", (d, d)),
          ("gate", (d_ff, d)), ("up", (d_ff, d)), ("down", (d, d_ff)))}
    scales = [torch.ones(d, dtype=bf, requires_grad=True) for _ in range(2)]
    angles = torch.polar(torch.ones(s, hd // 2), torch.randn(s, hd // 2)).view(1, s, 1, hd // 2)

    def rms(x, scale):
        up = x.float()
        return (up * torch.rsqrt(up.pow(2).mean(-1, keepdim=True) + 1e-5)).type_as(x) * scale

    def rotate(x):
        pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(pairs * angles).flatten(3).type_as(x)

    def widen(x):
        return x.unsqueeze(3).expand(1, s, kv_heads, heads // kv_heads, hd).reshape(1, s, heads, hd)

    def block(x):
        a = rms(x, scales[0])
        q, k, v = (fn.linear(a, w[n]).view(1, s, -1, hd) for n in "qkv")
        q, k, v = rotate(q), widen(rotate(k)), widen(v)
        o = fn.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        h = x + fn.linear(o.transpose(1, 2).contiguous().view(1, s, d), w["o"])
        m = rms(h, scales[1])
        return h + fn.linear(fn.silu(fn.linear(m, w["gate"])) * fn.linear(m, w["up"]), w["down"])

    return block, torch.randn(1, s, d, dtype=bf, requires_grad=True)


def test_a_llama_block_counted_on_the_cpu_moves_what_the_eager_streams_say():
    torch = pytest.importorskip("torch")
    block, x = _llama_block(torch, 512, 16, 4, 1024, S)
    forward, backward = _counted(block, [x])
    streams = by_kind(eager_ops()[2]).values()
    # left out of the streams: per-row statistics, norm weights and the rotary table (1/heads of q and k)
    assert forward == pytest.approx(sum(f for f, _ in streams), rel=0.01)
    assert backward == pytest.approx(sum(b for _, b in streams), rel=0.01)


def test_the_loss_counted_on_the_cpu():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as fn
    logits = torch.randn(S, 1000, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, 1000, (S,))
    forward, backward = _counted(lambda p: fn.cross_entropy(p.float(), labels), [logits])
    loss = head_streams({"fusion": "eager"})[1]["loss"]
    assert forward == pytest.approx(loss[0], rel=0.01)
    assert backward == pytest.approx(loss[1], rel=0.01)



def test_layernorm_and_gelu_counted_on_the_cpu():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as fn
    x = torch.randn(16 * S, 512, dtype=torch.bfloat16, requires_grad=True)    # the weights 1/1024 of the rows
    weight, bias = (torch.randn(512, dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    rows = 16 * S * 512
    spec = make_spec({**LLAMA, "norm": "layernorm", "mlp": "gelu"}, {"fusion": "eager", "seq_len": S})
    shape = shape_of(spec)
    found = by_kind(eager_ops({"norm": "layernorm", "mlp": "gelu"})[2])
    norm = found["norm"][0] / (2 * S * 512), found["norm"][1] / (2 * S * 512)    # per element of one norm
    forward, backward = _counted(lambda t: fn.layer_norm(t, (512,), weight, bias), [x])
    # one aten kernel each way; on CUDA the weight and bias gradients re-read g and x in a second kernel
    # (GammaBetaBackward in layer_norm_kernel.cu), which an aten-level count cannot see: 2 of the 5
    assert (forward / rows, backward / rows) == pytest.approx((norm[0], norm[1] - 2 * shape.act_bytes), rel=0.01)
    h = torch.randn(S, 1024, dtype=torch.bfloat16, requires_grad=True)
    forward, backward = _counted(fn.gelu, [h])
    assert (forward, backward) == found["activation"]


def test_estimate_says_how_memory_bound_work_was_priced(run):
    data = json.loads(run("estimate", "llama3-8b", "--set", "training.fusion=eager", "--format", "json").stdout)[0]
    assert data["assumptions"]["fusion"] == "eager"
    (row,) = [line for line in run("estimate", "llama3-8b", "--set", "training.fusion=eager").stdout.splitlines()
              if "memory-bound ops" in line]
    assert row.endswith("eager PyTorch kernels (training.fusion)")
    fused = ("--set", "training.fusion=eager", "--set", "training.fused_kernels=[rotary,norm,norm]")
    data = json.loads(run("estimate", "llama3-8b", *fused, "--format", "json").stdout)[0]
    assert data["assumptions"]["fused_kernels"] == ["norm", "rotary"]
    (row,) = [line for line in run("estimate", "llama3-8b", *fused).stdout.splitlines() if "memory-bound ops" in line]
    assert row.endswith("eager PyTorch kernels (training.fusion); norm, rotary one fused kernel each "
                        "(training.fused_kernels)")


def fused_kernel_ops(fused, head=False):
    """A layer's memory-bound streams by kind, or the head's, in an eager step with `fused` ops."""
    if head:
        return head_streams({"fusion": "eager", "fused_kernels": list(fused)})[1]
    return by_kind(eager_ops(fused=fused)[2])


def test_fused_kernels_move_one_read_and_one_write_in_an_eager_step():
    # training.fused_kernels (torchtitan's fused_rmsnorm, Liger's kernels): the ops it names read their input and
    # write their output once forward, twice that backward, at the activation dtype (e = 2); the rest stay eager
    e, d, f = 2, 512, 1024
    eager = fused_kernel_ops([])
    fused = fused_kernel_ops(["norm", "rotary", "activation"])
    assert fused["norm"] == (2 * 2 * S * d * e, 2 * 2 * 2 * S * d * e)        # two norms a layer
    rotated = S * (512 + 128)
    assert fused["rotary"] == (2 * rotated * e, 4 * rotated * e)
    assert fused["activation"] == (3 * S * f * e, 6 * S * f * e)           # gate and up read, product written
    for kind in ("residual", "repeat_kv", "gradient_sum"):
        assert fused[kind] == eager[kind]
    only_norm = fused_kernel_ops(["norm"])
    assert only_norm["norm"] == fused["norm"] and only_norm["rotary"] == eager["rotary"]
    # the loss over the vocabulary: the logits read, fp32 log-probabilities written (4 bytes), against eager's
    # cast up, log_softmax and cast back
    loss = fused_kernel_ops(["loss"], head=True)["loss"]
    assert loss == (S * 1000 * (e + 4), 2 * S * 1000 * (e + 4))
    assert fused_kernel_ops([], head=True)["loss"] != loss


def test_fused_kernels_need_an_eager_step():
    with pytest.raises(CostplanError, match="training.fused_kernels: names ops fused in an eager step"):
        make_spec(LLAMA, {"fusion": "fused", "fused_kernels": ["norm"], "seq_len": S})
    with pytest.raises(CostplanError, match=r"training.fused_kernels\[0\]: 'norms' is not one of"):
        make_spec(LLAMA, {"fusion": "eager", "fused_kernels": ["norms"], "seq_len": S})
    # the edges of compiled blocks run eager: there it fuses the final norm and the loss
    make_spec(LLAMA, {"fusion": "blocks", "fused_kernels": ["loss"], "seq_len": S})


def test_fused_kernels_time_between_eager_and_fused_and_check_runs_none():
    # a fused norm in an eager step saves part of eager's memory-bound time; check times the reference model,
    # which has no fused kernels, whatever the spec says
    from costplan.costs.estimate import estimate
    from costplan.profiling.compare import one_step

    def memory_bound(training):
        spec = make_spec(LLAMA, {"seq_len": S, **training}, {"gpu": "h100-sxm"})
        return estimate(spec).time.breakdown["memory_bound"], spec

    fused, _ = memory_bound({})
    eager, _ = memory_bound({"fusion": "eager"})
    norm, spec = memory_bound({"fusion": "eager", "fused_kernels": ["norm"]})
    assert fused < norm < eager
    reference = one_step(spec, 2)
    assert reference.training.fusion == "eager" and reference.training.fused_kernels == ()


# ------------------------------------------------------------------------------------------ training.loss_kernel
def _loss_streams(training):
    spec, streams = head_streams(training)
    return spec, streams["loss"]


def test_vocab_parallel_loss_counted_on_the_cpu():
    # Megatron-Core's unfused cross-entropy (tensor_parallel/cross_entropy.py), one rank: the logits cast up, their
    # max, subtracted in place, exp in place, summed, divided in place and kept; backward the target's one minus
    # and the scale by the gradient in place, then the cast back to the logits' dtype
    torch = pytest.importorskip("torch")
    labels = torch.randint(0, 1000, (S,))
    rows = torch.arange(S)

    class VocabParallel(torch.autograd.Function):
        @staticmethod
        def forward(ctx, logits, target_logit):
            top = torch.max(logits, dim=-1)[0]
            logits -= top.unsqueeze(-1)
            torch.exp(logits, out=logits)
            total = logits.sum(dim=-1)
            logits.div_(total.unsqueeze(-1))
            ctx.save_for_backward(logits)
            return torch.log(total) - (target_logit - top)

        @staticmethod
        def backward(ctx, grad):
            (softmax,) = ctx.saved_tensors
            softmax[rows, labels] -= 1.0
            return softmax.mul_(grad.unsqueeze(-1)), None

    logits = torch.randn(S, 1000, dtype=torch.bfloat16, requires_grad=True)
    target_logit = logits.detach().float()[rows, labels]        # one logit a row, gathered: left out as rows are
    forward, backward = _counted(lambda p: VocabParallel.apply(p.float(), target_logit), [logits])
    spec, loss = _loss_streams({"loss_kernel": "vocab_parallel"})
    assert spec.training.fusion == "fused"
    assert forward == pytest.approx(loss[0], rel=0.01)
    assert backward == pytest.approx(loss[1], rel=0.01)
    # by hand, per bf16 logit: cast (2 + 4), max (4), subtract (8), exp (8), sum (4), divide (8); backward the
    # scale (8) and the cast back (4 + 2): 38 and 14, against a fused kernel's 6 and 12
    assert loss == (38 * S * 1000, 14 * S * 1000)
    assert _loss_streams({})[1] == (6 * S * 1000, 12 * S * 1000)


def test_loss_kernel_overrides_what_fusion_makes_of_the_loss():
    eager = _loss_streams({"fusion": "eager"})[1]
    assert _loss_streams({"loss_kernel": "eager"})[1] == eager                       # torch's, in a fused step
    assert _loss_streams({"fusion": "eager", "loss_kernel": "fused"})[1] == _loss_streams({})[1]
    # Transformer Engine's kernel moves what a fused kernel moves (its memory differs: test_profiling_memory.py)
    assert _loss_streams({"loss_kernel": "transformer_engine"})[1] == _loss_streams({})[1]
    assert _loss_streams({"fusion": "blocks", "loss_kernel": "vocab_parallel"})[1] == (38 * S * 1000, 14 * S * 1000)
    # in fp32 the casts are no-ops: 8 and 2 fp32 passes
    assert _loss_streams({"loss_kernel": "vocab_parallel", "precision": "fp32"})[1] == (32 * S * 1000, 8 * S * 1000)
    with pytest.raises(CostplanError, match="training.loss_kernel: eager, but training.fused_kernels names the loss"):
        make_spec(LLAMA, {"fusion": "eager", "fused_kernels": ["loss"], "loss_kernel": "eager", "seq_len": S})


def test_estimate_and_check_say_how_the_loss_runs(run):
    from costplan.profiling.compare import one_step
    unfused = ("--set", "training.loss_kernel=vocab_parallel")
    data = json.loads(run("estimate", "llama3-8b", *unfused, "--format", "json").stdout)[0]
    assert data["assumptions"]["loss_kernel"] == "vocab_parallel"
    plain = json.loads(run("estimate", "llama3-8b", "--format", "json").stdout)[0]
    assert plain["assumptions"]["loss_kernel"] == "fused"
    assert data["time"]["breakdown"]["memory_bound"] > plain["time"]["breakdown"]["memory_bound"]
    (row,) = [line for line in run("estimate", "llama3-8b", *unfused).stdout.splitlines() if "memory-bound ops" in line]
    assert row.endswith("the loss as Megatron-Core's unfused vocab-parallel cross-entropy (training.loss_kernel)")
    te = ("--set", "training.loss_kernel=transformer_engine")
    (row,) = [line for line in run("estimate", "llama3-8b", *te).stdout.splitlines() if "memory-bound ops" in line]
    assert row.endswith("the loss as Transformer Engine's fused cross-entropy (training.loss_kernel)")
    blocks = json.loads(run("estimate", "llama3-8b", "--set", "training.fusion=blocks", "--format", "json").stdout)[0]
    assert blocks["assumptions"]["loss_kernel"] == "eager"
    # check times the reference, whose loss is torch's cross-entropy
    spec = make_spec(LLAMA, {"seq_len": S, "loss_kernel": "vocab_parallel"})
    assert one_step(spec, 2).training.loss_kernel is None

