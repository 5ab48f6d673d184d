"""check's note when the machine runs matmuls at another rate than its calibration measured (compare.machine_drift)."""
from __future__ import annotations

import pytest
import yaml

from costplan.hardware import resolve
from costplan.profiling.compare import machine_drift

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


@pytest.fixture
def gpu(tmp_path):
    path = tmp_path / "calibrated.yaml"
    path.write_text(yaml.safe_dump(CALIBRATED))
    return resolve(str(path))


# at n = 512, halfway between 256 and 1024 in log2: 0.75 of the 0.1 TFLOP/s bf16 peak, 75 GFLOP/s
@pytest.mark.parametrize("probed, said", [(75e9, ""), (89e9, ""), (61e9, ""), (50e9, "-33%"), (100e9, "+33%")])
def test_a_rate_beyond_a_fifth_of_the_calibrated_one_is_noted(gpu, probed, said):
    note = machine_drift(gpu, "bf16", probed)
    assert (said in note and "calibrate again" in note) if said else note == ""


def test_nothing_is_said_without_a_probe_or_a_curve(gpu):
    assert machine_drift(gpu, "bf16", None) == ""
    assert machine_drift(gpu, "fp8", 1e9) == ""
