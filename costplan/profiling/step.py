"""One training step of the reference model, as the analytic memory model assumes it is run.

16-bit training keeps 16-bit weights and gradients, and the optimizer works on an fp32 master copy (ZeRO
§3.1: 2 + 2 + 4 + optimizer moments bytes per parameter). Each parameter's gradient is moved to its master
copy and stepped one parameter at a time, so no second full set of gradients ever exists. With
training.fp32_gradients each 16-bit gradient is added into a persistent fp32 buffer as soon as autograd has
accumulated it, and dropped (Megatron's main_grad; 2 + 4 + 4 + moments), and the master copy steps on that
buffer. fp32/tf32 training steps the fp32 weights directly. Optimizer moments are fp32. AdamW and Adam run
fused (updated in place, no temporaries), the others one tensor at a time (SGD with foreach=False): the
multi-tensor kernels allocate temporaries the size of all parameters at once, which would inflate the peak
(costs/memory.py update_bytes).
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from costplan.costs.components import shape_of
from costplan.spec import Spec

# Hyperparameter values do not change any measurement (memory and time do not depend on them).
LR = 1e-4


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, Algorithm 2): one fp32 moment per parameter."""

    def __init__(self, params, lr: float = LR, betas: tuple[float, float] = (0.9, 0.99), weight_decay=0.0):  # noqa: ANN001
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(m * beta1 + p.grad * (1 - beta1)), alpha=-group["lr"])
                m.mul_(beta2).add_(p.grad, alpha=1 - beta2)


class Adafactor(torch.optim.Optimizer):
    """Adafactor without a first moment (Shazeer & Stern 2018, Algorithms 4 and 5, β1 = 0): a matrix keeps
    fp32 row and column sums of squared gradients, a vector its full second moment. torch.optim.Adafactor
    keeps the same states but reads a norm back to Python (.item()), which fake tensors cannot do."""

    def __init__(self, params, lr: float = LR, decay: float = -0.8, eps: float = 1e-30):  # noqa: ANN001
        super().__init__(params, {"lr": lr, "decay": decay, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self.state[p]
                state["step"] = state.get("step", 0) + 1
                beta2 = 1 - state["step"] ** group["decay"]
                squared = g * g + group["eps"]
                if p.dim() >= 2:
                    if "row" not in state:      # torch's shapes: (..., rows, 1) and (..., 1, cols)
                        state["row"] = g.new_zeros((*g.shape[:-1], 1))
                        state["col"] = g.new_zeros((*g.shape[:-2], 1, g.shape[-1]))
                    state["row"].lerp_(squared.mean(-1, keepdim=True), 1 - beta2)
                    state["col"].lerp_(squared.mean(-2, keepdim=True), 1 - beta2)
                    row = state["row"] / state["row"].mean(-2, keepdim=True)
                    update = g * (row * state["col"]).rsqrt()
                else:
                    if "variance" not in state:
                        state["variance"] = torch.zeros_like(p)
                    state["variance"].lerp_(squared, 1 - beta2)
                    update = g * state["variance"].rsqrt()
                p.add_(update, alpha=-group["lr"])


OPTIMIZERS: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=LR, fused=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=LR, fused=True),
    "sgd": lambda ps: torch.optim.SGD(ps, lr=LR, foreach=False),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9, foreach=False),
    "adafactor": lambda ps: Adafactor(ps),
    "lion": lambda ps: Lion(ps),
}


def _softmax_in_place(x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Turn fp32 logits x (rows × vocabulary) into their softmax in place, as both kernels below do; the rows'
    losses, log Σ exp − the target's logit."""
    x -= x.max(dim=-1, keepdim=True).values
    picked = x.gather(-1, targets[:, None]).squeeze(-1)
    x.exp_()
    sums = x.sum(dim=-1)
    x /= sums[:, None]
    return sums.log() - picked


def _gradient_in_place(softmax: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """softmax − one-hot(targets): each row's gradient of its loss, in place."""
    return softmax.scatter_add_(-1, targets[:, None], softmax.new_full((targets.numel(), 1), -1.0))


class VocabParallelCrossEntropy(torch.autograd.Function):
    """Cross-entropy as Megatron-Core's unfused vocabulary-parallel kernel runs it on one tensor rank (its
    tensor_parallel/cross_entropy.py, read for its memory): an fp32 copy of the logits becomes, in place, the
    shifted logits, their exponentials and the softmax, which it saves; backward turns that softmax into the
    gradient in place and hands it back in fp32, which autograd casts to the logits' dtype. Per-token losses.
    fp32 logits are themselves that copy, overwritten in place as Megatron's are: safe where nothing else saved
    them (the head's matmul does not save its output), and backward consumes the saved softmax (no retain_graph)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        x = logits.float()
        losses = _softmax_in_place(x, targets)
        ctx.save_for_backward(x, targets)
        return losses

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        softmax, targets = ctx.saved_tensors
        return _gradient_in_place(softmax, targets).mul_(grad[:, None]), None


class GradientInForwardCrossEntropy(torch.autograd.Function):
    """Cross-entropy as Liger's kernel runs it (its ops/cross_entropy.py, read for its memory): forward writes the
    loss's gradient over the logits themselves, a block of rows at a time in fp32, and saves them; backward scales
    them in place. Nothing logits-sized is new in backward. Per-token losses. fp32 logits are overwritten as
    given, as Liger's are: safe where nothing else saved them (the head's matmul does not save its output)."""

    ROWS = 8        # fp32 rows at a time, few: the kernel's are on chip

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        losses = logits.new_empty(logits.shape[0], dtype=torch.float32)
        for start in range(0, logits.shape[0], GradientInForwardCrossEntropy.ROWS):
            rows = slice(start, start + GradientInForwardCrossEntropy.ROWS)
            x = logits[rows].float()
            losses[rows] = _softmax_in_place(x, targets[rows])
            logits[rows] = _gradient_in_place(x, targets[rows]).div_(logits.shape[0])
        ctx.save_for_backward(logits)
        return losses

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        (gradient,) = ctx.saved_tensors     # each row's, over the N rows' mean: scaled back by N
        return gradient.mul_(grad[:, None] * grad.shape[0]), None


def unfused(spec: Spec) -> Spec:
    """The spec as the reference model's timed steps run it and the step model prices them (compare.one_step):
    memory-bound work as eager PyTorch's kernels (training.fusion eager, no fused_kernels: its gated activation
    too), torch's cross-entropy."""
    training = spec.training.model_copy(update={"fusion": "eager", "fused_kernels": (), "loss_kernel": None,
                                                "fp8_saved_inputs": False})
    return spec.model_copy(update={"training": training})


def loss_memory(spec: Spec) -> str:
    """What the estimate takes the spec's loss to keep (costs Shape.loss_memory)."""
    return shape_of(spec).loss_memory()


def loss_of(logits: torch.Tensor, targets: torch.Tensor, kind: str = "torch") -> torch.Tensor:
    """Mean next-token cross-entropy, computed in fp32, as the loss `kind` (Shape.loss_memory) keeps it: torch's,
    Megatron-Core's ("softmax", VocabParallelCrossEntropy) or Liger's and Transformer Engine's ("gradient",
    which hold the same bytes)."""
    if kind == "softmax":
        return VocabParallelCrossEntropy.apply(logits.flatten(0, 1), targets.flatten()).mean()
    if kind == "gradient":
        return GradientInForwardCrossEntropy.apply(logits.flatten(0, 1), targets.flatten()).mean()
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


class Trainer:
    """forward → loss → backward → optimizer step for a model whose parameters are in the training dtype."""

    def __init__(self, model: nn.Module, spec: Spec, loss: str = "torch"):
        """`loss`: the cross-entropy the memory estimate takes (loss_of, loss_memory); steps that are timed run
        torch's, as the step model prices the unfused reference (compare.one_step)."""
        self.model = model
        self.loss = loss
        self.params = list(model.parameters())
        self.mixed = any(p.dtype != torch.float32 for p in self.params)
        make = OPTIMIZERS[spec.training.optimizer]
        self.main_grads: list[torch.Tensor] = []
        if self.mixed:
            # One optimizer per master tensor, so that each can be stepped as soon as its gradient is moved.
            self.master = [p.detach().float() for p in self.params]
            self.optimizers = [make([m]) for m in self.master]
            if spec.training.fp32_gradients:
                self.main_grads = [torch.zeros_like(p, dtype=torch.float32) for p in self.params]
                for p, main in zip(self.params, self.main_grads):
                    p.register_post_accumulate_grad_hook(functools.partial(_into, main))
        else:
            self.optimizer = make(self.params)

    def step(self, *micro_batches: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Forward and backward of each (ids, targets) micro-batch, gradients accumulating, then the update."""
        for ids, targets in micro_batches:
            self.accumulate(ids, targets)
        self.update()

    def accumulate(self, ids: torch.Tensor, targets: torch.Tensor) -> None:
        loss_of(self.model(ids), targets, self.loss).backward()
        # FSDP2 sets its sharded gradients itself, without the hook: fold those in here.
        for p, main in zip(self.params, self.main_grads):
            if p.grad is not None:
                _into(main, p)

    def gradients(self) -> list[torch.Tensor | None]:
        """The tensors holding this step's gradients: the fp32 buffers, or each parameter's own."""
        return list(self.main_grads) or [p.grad for p in self.params]

    def update(self) -> None:
        if not self.mixed:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            return
        for i, (p, master, optimizer) in enumerate(zip(self.params, self.master, self.optimizers)):
            if self.main_grads:
                master.grad = self.main_grads[i]
            elif p.grad is None:        # a parameter this step did not use (an idle expert)
                continue
            else:
                master.grad = p.grad.float()
                p.grad = None
            optimizer.step()
            master.grad = None
            with torch.no_grad():
                p.copy_(master)
        for main in self.main_grads:
            main.zero_()


def _into(main: torch.Tensor, p: torch.Tensor) -> None:
    """Add a parameter's 16-bit gradient into its fp32 buffer and drop it."""
    main.add_(p.grad)
    p.grad = None


def batch(spec: Spec, size: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids and targets (size × seq_len), int64."""
    shape = (size, spec.seq_len)
    vocab = spec.model.vocab_size
    return (torch.randint(0, vocab, shape, device=device), torch.randint(0, vocab, shape, device=device))
