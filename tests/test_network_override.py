"""hardware.network_gbs: a cluster's own network between nodes in place of the GPU's catalogue figure."""
import pytest

import costplan
from costplan.costs import layouts

# BLOOM's cluster (BigScience tr11-176B-ml model card): 8 A100s per node with 4 Omni-Path links of 100 Gb/s each
JEAN_ZAY = ["hardware.gpu=a100-80gb", "hardware.count=64", "hardware.network_gbs=12.5"]


def test_a_cluster_network_sets_the_bandwidth_between_nodes():
    spec = costplan.load_spec("llama3-8b", JEAN_ZAY)
    # a ring over 64 ranks, 8 to a node, leaves each node through all its links: 4 × 100 Gb/s each way
    assert spec.gpu.link_bytes_per_s(64, 1) == pytest.approx(4 * 100e9 / 8)
    # inside a node NVLink 3 is untouched: 600 GB/s both ways
    assert spec.gpu.link_bytes_per_s(8, 1) == pytest.approx(300e9)
    catalogue = costplan.load_spec("llama3-8b", JEAN_ZAY[:2])
    assert catalogue.gpu.link_bytes_per_s(64, 1) == pytest.approx(8 * 200e9 / 8)   # DGX A100: 200 Gb/s a GPU
    # the kernel tables stay the catalogue device's
    assert spec.gpu.curves() is catalogue.gpu.curves()


def test_a_slower_network_exposes_more_data_parallel_traffic_and_says_so():
    fast = costplan.estimate(costplan.load_spec("llama3-8b", JEAN_ZAY[:2]))
    slow = costplan.estimate(costplan.load_spec("llama3-8b", JEAN_ZAY))
    assert slow.parallelism.communication_bytes["data"] == fast.parallelism.communication_bytes["data"]
    # a quarter of the network's bandwidth: at most four times the seconds on the wire, fewer where the faster
    # network's ring runs at the rate its hops inside each node reach at the message's size (traffic._link_rate)
    ratio = slow.parallelism.communication_seconds["data"] / fast.parallelism.communication_seconds["data"]
    assert 2 < ratio <= 4 * 1.0001
    assert slow.time.step_seconds > fast.time.step_seconds
    assert slow.assumptions.network == "hardware.network_gbs: 12.5 GB/s per GPU"
    assert "DGX A100" in fast.assumptions.network


def test_the_network_stays_with_its_gpu_type(run):
    spec = costplan.load_spec("llama3-8b", JEAN_ZAY)
    layout = {"tensor": 1, "pipeline": 1, "context": 1, "expert": 1, "zero": 1}
    assert layouts.variant(spec, "a100-80gb", 64, layout).gpu.network_gbs == 12.5
    # another GPU type is another cluster: its own catalogue network
    assert layouts.variant(spec, "h100-sxm", 64, layout).gpu.network_gbs == costplan.load_spec(
        "llama3-8b", ["hardware.gpu=h100-sxm"]).gpu.network_gbs


def test_the_table_names_the_network_and_a_bad_one_is_refused(run):
    out = run("estimate", "llama3-8b", "--gpus", "64", "--set", "hardware.network_gbs=12.5")
    assert out.exit_code == 0
    assert "hardware.network_gbs: 12.5 GB/s per GPU" in next(
        line for line in out.stdout.splitlines() if "network between nodes" in line)
    bad = run("estimate", "llama3-8b", "--set", "hardware.network_gbs=0")
    assert bad.exit_code == 2
    assert bad.stderr.strip().splitlines() == ["Error: llama3-8b: hardware.network_gbs: must be greater than 0, got 0"]
