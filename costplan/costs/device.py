"""The device the step model times operations on (costs/step.py): a GPU with its kernel curves and
efficiencies, resolved once per estimate."""
from __future__ import annotations

from costplan import kernels
from costplan.errors import CostplanError
from costplan.hardware import GPU
from costplan.records import Record


class Device(Record):
    """A GPU with what its kernels reach: resolved once per estimate."""

    gpu: GPU
    curves: kernels.Curves
    efficiencies: kernels.Efficiencies
    precision: str             # the training precision
    attention_kernel: str = "fastest"

    def attention_curve(self, backward: bool, head_dim: int) -> kernels.Curve:
        """The attention kernel's curve at the rate a training step sustains."""
        curve = self.curves.sustained(self.curves.attention(backward, head_dim, self.attention_kernel))
        if curve is None:
            raise CostplanError(f"training.attention_kernel: hardware {self.gpu.key} has "
                                f"{self.curves.lacks_attention(self.attention_kernel)}")
        return curve

    @property
    def bandwidth(self) -> float:
        return self.gpu.memory_bandwidth_gbs * 1e9 * self.efficiencies.memory.value

    def gemm_curve(self, precision: str) -> kernels.Curve:
        """The GEMM curve at `precision` at the rate a training step sustains."""
        curve = self.curves.sustained_gemm(precision)
        if curve is None:
            raise CostplanError(f"hardware {self.gpu.key}: kernels.gemm has no {precision} curve; the step model "
                                f"cannot time {precision} GEMMs (it has {', '.join(self.curves.gemm)})")
        return curve

    def attention_peak(self) -> tuple[str, float]:
        """Attention cores run in 16 bits, or at fp32/tf32 when training is."""
        precision = self.precision if self.precision in ("fp32", "tf32") else (
            "bf16" if self.gpu.peak_flops("bf16") else "fp16")
        return precision, self.gpu.peak_flops(precision) or self.gpu.peak_flops(self.precision)

    def link(self, span: int, stride: int, pooled: bool = True) -> tuple[float, kernels.Curve]:
        """Per-direction bytes/s and bus-efficiency curve of a group of ranks `stride` apart spanning `span`
        (`pooled`: a ring collective, which pools a node's NICs; hardware.GPU.link_bytes_per_s)."""
        across = span > self.gpu.node_size
        curve = self.curves.collective_internode if across else self.curves.collective
        return self.gpu.link_bytes_per_s(span, stride, pooled), curve


def device(gpu: GPU, precision: str, attention_kernel: str = "fastest") -> Device:
    """The GPU with its kernel curves, or an error naming what is missing."""
    curves = gpu.curves()
    if curves is None:
        raise CostplanError(f"hardware.gpu: {gpu.key} has no kernel efficiency tables (kernels: in a hardware "
                            "file, or data/kernels.yaml for the catalogue); run `costplan calibrate` on the "
                            "device, or time the run at one utilisation figure, the spec's hardware.mfu (--mfu, or "
                            "--set hardware.mfu=X); a hardware file's own `mfu` sizes budgets in GPU-hours or "
                            "dollars but times no run")
    efficiencies = kernels.efficiencies(gpu.key)
    if gpu.calibrated_on is not None:
        # a calibrated file's bandwidth is the one its copy kernel achieved: nothing to discount
        achieved = kernels.Figure(value=1.0, source=f"memory_bandwidth_gbs as measured on {gpu.calibrated_on}")
        efficiencies = efficiencies.model_copy(update={"memory": achieved})
    return Device(gpu, curves, efficiencies, precision, attention_kernel)
