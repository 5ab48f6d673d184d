"""Shared helpers: small specs written as mappings, and the CLI runner."""
from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import costplan

# A hardware file as `costplan calibrate` writes one for the device "cpu: test" (flat but for its GEMM curve).
CURVE = {"points": [[256, 0.5], [1024, 1.0]], "source": "test"}
CALIBRATED = {
    "name": "calibrated test", "peak_tflops": {"fp32": 0.2, "bf16": 0.1}, "memory_gib": 16,
    "memory_bandwidth_gbs": 20, "interconnect_gbs": 20, "mfu": 0.5, "usd_per_gpu_hour": 0.0,
    "calibrated_on": "cpu: test",
    "kernels": {"gemm": {"fp32": CURVE, "bf16": CURVE},
                "attention_forward": {64: CURVE}, "attention_backward": {64: CURVE},
                "collective": {"points": [[1, 1.0]], "source": "test"},
                "collective_internode": {"points": [[1, 1.0]], "source": "test"}},
}


def make_spec(model: dict[str, Any] | None = None, training: dict[str, Any] | None = None,
              hardware: dict[str, Any] | None = None, **top: Any) -> costplan.Spec:
    """A validated spec from a tiny GPT-style base with the given fields changed."""
    base = {"vocab_size": 1000, "d_model": 64, "n_layers": 2, "n_heads": 4, "max_seq_len": 128}
    data: dict[str, Any] = {"name": "tiny", "model": {**base, **(model or {})}, **top}
    if training:
        data["training"] = training
    if hardware:
        data["hardware"] = hardware
    return costplan.load_spec(data)


@pytest.fixture
def run():
    """Invoke the CLI and return the result; stdout and stderr are kept apart."""
    from costplan.cli import cli

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke

