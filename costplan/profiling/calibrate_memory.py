"""What a device's memory reaches, for `costplan calibrate`: a copy's bandwidth, what a decode step's weight
products read, the rate of the step's memory-bound kernels, and what a GEMM costs at a shape its library has not
met. Each returns its figure and, where the hardware file cites it, what was timed."""
from __future__ import annotations

import statistics
import time

import torch

from costplan.profiling.precision import DTYPES
from costplan.profiling.timing import best_seconds, median_call_seconds, queued_note, synchronize

COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 2 * 2**30}
# The memory-bound kernels timed for their achieved rate: the shapes of a small model's activations (on a CPU
# they stay in cache, as a step's do), in the step's precision.
ELEMENTWISE_SHAPES = {"cpu": ((256, 1024), (2048, 1024)), "cuda": ((8192, 4096), (16384, 8192))}
MEMORY_RUNS = 20
# Allocation sizes probed for the first touch of fresh memory (kernels.FirstTouch), 1 MiB to 256 MiB: a CPU's
# allocator maps the large ones from the operating system for each tensor. A GPU's caching allocator reuses
# freed blocks: not probed.
FIRST_TOUCH_SIZES = {"cpu": tuple(2**k * 2**20 for k in range(9)), "cuda": ()}
FIRST_TOUCH_RUNS = 7


def copy_bandwidth(device: torch.device) -> float:
    """Bytes read plus bytes written per second by a large device-to-device copy."""
    n = COPY_BYTES[device.type] // 4
    src = torch.empty(n, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    return 2 * src.nbytes / best_seconds(lambda: dst.copy_(src), device)


class WeightReads:
    """What a decode step's weight products read: one token through fp32 weights of COPY_BYTES / 4 each, a tall
    one (4·d × d, an MLP's up projection) and a wide one (d × 4·d, its down projection), whose rates differ on a
    CPU. The decode check times one round of them between its steps, so that both see the same load."""

    def __init__(self, device: torch.device):
        d = int((COPY_BYTES[device.type] // 16 // 4) ** 0.5)
        self.device = device
        self.shapes = ((4 * d, d), (d, 4 * d))
        self.weights = [torch.randn(rows, columns, device=device) for rows, columns in self.shapes]
        self.tokens = [torch.randn(1, columns, device=device) for _, columns in self.shapes]
        self.bytes = sum(w.nbytes for w in self.weights)

    def products(self) -> list:
        return [lambda w=w, x=x: torch.nn.functional.linear(x, w) for w, x in zip(self.weights, self.tokens)]

    def seconds(self) -> float:
        """Seconds of one product by each weight, the device synchronised around them."""
        synchronize(self.device)
        start = time.perf_counter()
        for product in self.products():
            product()
        synchronize(self.device)
        return time.perf_counter() - start

    def describe(self) -> str:
        return f"fp32 products of one token by {' and '.join(f'{r} × {c}' for r, c in self.shapes)} weights " \
               "(torch's linear)"


def weight_read_rate(device: torch.device) -> tuple[float, str]:
    """Bytes per second a decode step's weight products read (WeightReads): all their bytes over the sum of each
    product's median of MEMORY_RUNS calls; and what was timed."""
    reads = WeightReads(device)
    seconds = sum(median_call_seconds(product, device, MEMORY_RUNS) for product in reads.products())
    what = (f"{reads.describe()}, the medians of {MEMORY_RUNS} calls each{queued_note(device.type)}, their "
            "weights' bytes over their time")
    return reads.bytes / seconds, what


def memory_bound_rate(device: torch.device, precision: str) -> tuple[float, str]:
    """Bytes per second the step's memory-bound kernels move, in `precision` (the median over ELEMENTWISE at
    each of ELEMENTWISE_SHAPES, each the median of MEMORY_RUNS calls), and what was timed."""
    dtype = DTYPES[precision]
    rates = []
    for rows, width in ELEMENTWISE_SHAPES[device.type]:
        x = torch.randn(rows, width, device=device, dtype=dtype)
        y = torch.randn(rows, width, device=device, dtype=dtype)
        norm = torch.nn.LayerNorm(width, device=device, dtype=dtype)
        kernels = {"add": (lambda: x + y, 3), "multiply": (lambda: x * y, 3),
                   "GELU": (lambda: torch.nn.functional.gelu(x), 2), "SiLU": (lambda: torch.nn.functional.silu(x), 2),
                   "softmax": (lambda: torch.softmax(x, -1), 2), "LayerNorm": (lambda: norm(x), 2)}
        for run, tensors in kernels.values():
            rates.append(tensors * x.nbytes / median_call_seconds(run, device, MEMORY_RUNS))
    shapes = ", ".join(f"{r} × {w}" for r, w in ELEMENTWISE_SHAPES[device.type])
    what = (f"{precision} {', '.join(kernels)} at {shapes}, each the median of {MEMORY_RUNS} "
            f"calls{queued_note(device.type)}, bytes read and written over the time; the median of the {len(rates)}")
    return statistics.median(rates), what


def first_touch(device: torch.device) -> tuple[float, int, str] | None:
    """Seconds per byte that a fresh allocation's first write costs beyond the write, and the smallest size that
    pays it (kernels.FirstTouch), and what was timed; None where nothing is probed (a GPU) or nothing measured.
    At each of FIRST_TOUCH_SIZES, the median of filling a new tensor less the median of filling one kept, over its
    bytes: the cost is the largest size's; the threshold the smallest size from which every size costs at least
    half of it."""
    sizes = FIRST_TOUCH_SIZES[device.type]
    if not sizes:
        return None
    extra = {}
    for n in sizes:
        kept = torch.empty(n, dtype=torch.uint8, device=device)
        fresh = median_call_seconds(lambda: torch.empty(n, dtype=torch.uint8, device=device).fill_(1), device,
                                    FIRST_TOUCH_RUNS)
        reused = median_call_seconds(lambda: kept.fill_(1), device, FIRST_TOUCH_RUNS)
        extra[n] = max(0.0, fresh - reused) / n
    cost = extra[sizes[-1]]
    if cost <= 0:
        return None
    threshold = min(n for n in sizes if all(extra[m] >= cost / 2 for m in sizes if m >= n))
    what = (f"byte tensors of {sizes[0] // 2**20} to {sizes[-1] // 2**20} MiB, doubling: the median of "
            f"{FIRST_TOUCH_RUNS} fills of a new one less that of one kept, per byte; "
            + ", ".join(f"{n // 2**20} MiB {extra[n] * 1e12:.3g} ps" for n in sizes)
            + "; the largest's figure, from the smallest size at which every larger one costs half of it")
    return cost, threshold, what
