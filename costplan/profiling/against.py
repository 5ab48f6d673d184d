"""`costplan check CONFIG --against transformers`: the estimate of a Hugging Face config next to the
`transformers` class built from the same file, a model nobody here wrote.

- parameters: the class built on the meta device, unique tensors (a tied head once): exact.
- FLOPs: one forward and backward of the class with eager attention, on real CPU tensors under
  FlopCounterMode, with costplan's loss (fp32 cross-entropy) on its logits. Eager attention computes every
  query-key pair and masks afterwards, so it is compared with the estimate of the same model with `dense`
  attention in every layer (a window, chunks or a sparse pattern only mask), and it recomputes nothing, so
  training is 3 × that forward. Llama 4's expert block runs every expert on every token: it is compared with
  top_k = n_experts. Exact.
- activations: the bytes autograd saves in the class's forward with the spec's training.implementation (sdpa
  or eager attention), built without dropout as the estimate counts them, within the activations tolerance;
  with `fused`, what the eager class saves is shown but not compared (fused kernels are not the class's
  modules);
- peak (sdpa and eager only): the most memory live over two training steps of the class under costplan's
  reference Trainer (two micro-batches, AdamW stepped per tensor from fp32 master weights), storages tracked on
  CPU tensors, against the estimate's total per GPU, within the peak tolerance.

Real tensors, because the classes' MoE loops route by data-dependent indices; a config whose step would not fit
REAL_BYTES here is compared on its parameters only.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from costplan import sources
from costplan.costs.estimate import bytes_rule, components, peak_stage, shape_of, whole_model
from costplan.costs.implementation import modules_of
from costplan.errors import CostplanError, install_hint
from costplan.loading import on_one_gpu, with_overrides
from costplan.profiling import counters
from costplan.profiling.compare import Check
from costplan.profiling.memory import peak_tracked, saved_bytes
from costplan.profiling.model import training_dtype
from costplan.profiling.stages import Stages
from costplan.profiling.step import Trainer, batch, loss_of, unfused
from costplan.spec import Spec

REAL_BYTES = 4 * 2**30        # the most a step of the class may need before only its parameters are compared
FUSED_NOTE = ("not compared: training.implementation fused describes fused kernels; set it to sdpa or eager "
                "to compare with the class's modules")


def needs_transformers():  # noqa: ANN201
    try:
        import transformers
    except ImportError:
        raise CostplanError("--against transformers needs the transformers package: "
                            f"{install_hint('hf')}") from None
    return transformers


def config_path(source: str) -> Path:
    """The config.json a spec argument names, or a CostplanError: only a config has a transformers class."""
    config = sources.config_file(Path(source))
    if config is None or not config.is_file():
        raise CostplanError(f"{source}: --against transformers compares a Hugging Face config.json (or a folder "
                            "holding one) with its transformers class; this is not one")
    return config


def build_class(config: Path, dtype: torch.dtype, device: str | torch.device, attention: str = "eager"):  # noqa: ANN201
    """The transformers causal-LM class of the file, with `attention` (eager or sdpa), its parameters in
    `dtype`; errors without the file's name, which the caller puts before them (cli/profile.py each_spec)."""
    transformers = needs_transformers()
    data = json.loads(config.read_text(encoding="utf-8"))
    # transformers validates what costplan need not (token ids within the vocabulary, layer_types' length): a
    # config it refuses is one line naming the file, as costplan's own errors are
    try:
        cfg = without_dropout(transformers.AutoConfig.for_model(data.pop("model_type"), **data))
    except Exception as exc:  # noqa: BLE001 - whatever the library raises
        raise CostplanError(f"transformers refuses the config: {_said(exc)}") from None
    cfg._attn_implementation = attention
    try:
        with torch.device(device):
            model = transformers.AutoModelForCausalLM.from_config(cfg)
    except ValueError as exc:   # a class without this attention implementation says so
        raise CostplanError(f"training.implementation {attention}: {str(exc).split('. ')[0]}") from None
    except Exception as exc:  # noqa: BLE001
        raise CostplanError(f"transformers cannot build the class: {_said(exc)}") from None
    return model.to(dtype)


def _said(exc: Exception) -> str:
    """An exception's kind and first line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def without_dropout(cfg):  # noqa: ANN001, ANN201
    """The config with every dropout probability at 0: activations are counted without dropout (costs/__init__.py
    convention 7), and on CPU a nonzero attention dropout also sends SDPA to its math kernel, which GPUs' fused
    kernels (dropout by a saved RNG offset) do not."""
    for key, value in cfg.to_dict().items():
        if ("dropout" in key or "pdrop" in key) and isinstance(value, float | int) and not isinstance(value, bool):
            setattr(cfg, key, 0.0)
    return cfg


@dataclass
class Measured:
    params: int
    forward_flops: int | None = None
    training_flops: int | None = None
    activations: int | None = None
    peak: int | None = None


def measure(config: Path, spec: Spec, progress: Callable[[str], None] | None = None) -> Measured:
    """The class's parameters, and where its step fits this machine (step_bytes) its FLOPs, saved activations and
    peak memory; `progress` is told each stage as it starts."""
    size, dtype = spec.training.micro_batch_size, training_dtype(spec)
    stage = Stages(spec.name, progress)
    stage("parameters of the transformers class (meta device)")
    result = Measured(params=sum(p.numel() for p in build_class(config, dtype, "meta").parameters()))
    if step_bytes(spec) > REAL_BYTES:
        stage.done()
        return result
    torch.manual_seed(0)
    ids, targets = batch(spec, size, "cpu")
    stage("FLOPs, counted by torch's FlopCounterMode")
    model = Logits(build_class(config, dtype, "cpu"))
    flops = counters.count_flops(model, lambda: loss_of(model(ids), targets))
    result.forward_flops = sum(flops.forward.values())
    result.training_flops = sum(flops.training.values())
    # Saved tensors of the implementation the spec names; fused kernels have no class: eager is shown.
    implementation = spec.training.implementation
    stage("activations saved for backward")
    model = as_trained(config, spec, "eager" if implementation == "fused" else implementation)
    result.activations = sum(saved_bytes(model, lambda scope: loss_of(model(ids), targets)).values())
    if implementation != "fused":
        stage("peak memory of a training step")
        result.peak = measure_peak(config, spec, implementation)
    stage.done()
    return result


class Logits(nn.Module):
    """A transformers causal LM as the reference Trainer calls a model: token ids in, logits out; under
    autocast to `autocast` when given."""

    def __init__(self, model: nn.Module, autocast: torch.dtype | None = None):
        super().__init__()
        self.model, self.autocast = model, autocast

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            return self.model(input_ids=ids).logits


def as_trained(config: Path, spec: Spec, attention: str) -> Logits:
    """The class with `attention`, its weights as the spec trains them: 16-bit, or fp32 under autocast."""
    dtype = training_dtype(spec)
    if spec.training.autocast:
        return Logits(build_class(config, torch.float32, "cpu", attention), autocast=dtype)
    return Logits(build_class(config, dtype, "cpu", attention))


def measure_peak(config: Path, spec: Spec, implementation: str) -> int:
    """Peak memory of two training steps of the class (two micro-batches each, the optimizer with its fp32
    master weights, or on the fp32 weights under autocast), as profiling/measure.py steps the reference
    model."""
    size = spec.training.micro_batch_size

    def build():  # noqa: ANN202
        trainer = Trainer(as_trained(config, spec, implementation), spec)
        first, second = batch(spec, size, "cpu"), batch(spec, size, "cpu")
        return [lambda: trainer.accumulate(*first), lambda: trainer.accumulate(*second), trainer.update]

    return peak_tracked(build).bytes


def step_bytes(spec: Spec) -> int:
    """About what a step of the class takes: weights, gradients, and twice what a dense-attention estimate saves
    (the eager modules' fp32 copies), plus the loss's transient gradients."""
    memory = peak_stage(unfused(eager(spec)))   # the class's eager activation and torch's loss
    return memory.weights + memory.gradients + 2 * memory.activations + memory.workspace


def eager(spec: Spec) -> Spec:
    """The spec as eager attention executes it: every pair of every softmax layer computed, then masked (MLA
    already counts every pair in the counter's convention); and every expert on every token where the class
    runs them so (ClassModules.every_expert: Llama4TextMoe repeats the tokens n_experts times into
    Llama4TextExperts' batched matmuls, the router's unchosen scores zeroing their outputs), which is
    top_k = n_experts."""
    changes = [] if "mla" in spec.model.attention_types else ["model.attention=dense"]
    if spec.model.moe is not None and modules_of(spec.training.modules).every_expert:
        changes.append(f"model.moe.top_k={spec.model.moe.n_experts}")
    return with_overrides(spec, changes) if changes else spec


def checks(spec: Spec, m: Measured, tolerances) -> list[Check]:  # noqa: ANN001
    size, tol = spec.training.micro_batch_size, tolerances.get
    # parameters and memory without the time model: `--gpu` may name hardware with no peak at the spec's precision
    rows = [Check("params", "parameters (total)", whole_model(spec).params, m.params, "count", tol("params"),
                  note="the class on the meta device, unique tensors")]
    if m.forward_flops is None:
        why = (f"not run: a step needs more than {REAL_BYTES // 2**30} GiB, and the class runs on real tensors "
               "here (try a smaller config, --seq-len or --batch)")
        rows += [Check("flops", "forward FLOPs (FlopCounterMode)", None, None, "flop", None, note=why),
                 Check("activations", "activations saved for backward", None, None, "bytes", None, note=why)]
        return rows
    executed = eager(spec)
    parts = components(executed, replace(shape_of(executed), skip_masked_tiles=False))
    forward = sum(c.hw_fwd for c in parts.values()) * size
    note = f"eager attention, every pair computed; batch {size} × {spec.seq_len} tokens"
    rows += [
        Check("flops", "forward FLOPs (FlopCounterMode)", forward, m.forward_flops, "flop", tol("flops"), note=note),
        # Eager modules recompute nothing (no flash backward, no checkpointing): each matmul's backward is its
        # two gradient matmuls, 3 × the forward in all (convention 4).
        Check("flops", "training FLOPs (forward + backward)", 3 * forward, m.training_flops, "flop", tol("flops"),
              note="3 × forward: no recomputation in eager modules"),
        activations_check(spec, m, tol("activations")),
    ]
    if m.peak is not None:
        t, memory = spec.training, peak_stage(spec)
        rule = bytes_rule(t.precision, t.optimizer, t.autocast, t.fp32_gradients)
        rows.append(Check("peak", "peak memory of a training step", memory.total, m.peak, "bytes",
                          tol("peak"), note=f"estimated at {memory.peak_at}; two steps of two micro-batches, "
                                            f"{spec.training.optimizer}: {rule}; storages tracked on CPU tensors"))
    return rows


def activations_check(spec: Spec, m: Measured, tolerance: float) -> Check:
    implementation = spec.training.implementation
    item = "activations saved for backward"
    if implementation == "fused":
        return Check("activations", item + " (eager class)", peak_stage(spec).activations, m.activations,
                     "bytes", None, note=FUSED_NOTE)
    return Check("activations", item, peak_stage(spec).activations, m.activations, "bytes", tolerance,
                 note=f"training.implementation {implementation}: the class with {implementation} attention"
                      + (", fp32 weights under autocast" if spec.training.autocast else ""))


def record(config: Path, spec: Spec, tolerances, progress: Callable[[str], None] | None = None  # noqa: ANN001
           ) -> dict:
    """The config's record for tables.checks (config: what config_path found for the spec's argument), the spec
    trained whole on one device as the class is (loading.on_one_gpu)."""
    spec = on_one_gpu(spec)
    m = measure(config, spec, progress)
    label = needs_transformers().__version__
    return {
        "name": spec.name, "device": "cpu", "device_name": f"transformers {label}", "batch":
        spec.training.micro_batch_size, "seq_len": spec.seq_len, "precision": spec.training.precision,
        "recompute": spec.training.recompute, "timing": None,
        "title": (f"{spec.name}: estimate vs the transformers class of {config} (transformers {label}, eager "
                  f"attention, {spec.training.precision}), batch {spec.training.micro_batch_size} × "
                  f"{spec.seq_len} tokens"),
        "checks": checks(spec, m, tolerances), "arithmetic_not_counted": {}, "fvcore_unsupported": {},
    }
