"""check's note when the machine runs matmuls at another rate than its calibration measured (compare.machine_drift)."""
from __future__ import annotations

import pytest
import yaml
from conftest import CALIBRATED

from costplan.hardware import resolve
from costplan.profiling.compare import machine_drift


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
