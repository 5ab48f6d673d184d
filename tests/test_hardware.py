"""The hardware catalogue: complete, sourced, dense peaks; users' own files."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from costplan import hardware
from costplan.errors import CostplanError

REQUIRED = ["v100", "a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h100-sxm-96gb", "h200", "b200", "l4",
            "l40s", "rtx-4090", "mi300x", "tpu-v5e", "tpu-v5p"]


def test_required_devices_present_with_sources():
    gpus = hardware.catalogue()
    for name in REQUIRED:
        gpu = gpus[name]
        for text in (gpu.source, gpu.mfu_source, gpu.price_source, gpu.price_date):
            assert text and text != "not given", (name, text)


@pytest.mark.parametrize("name, bf16_tflops", [
    # Dense figures: NVIDIA's headline H100 "1,979 TFLOPS" is with 2:4 sparsity (formulas reference §6.1).
    ("a100-80gb", 312), ("h100-sxm", 989), ("h200", 989), ("b200", 2250), ("l40s", 362), ("tpu-v5p", 459),
])
def test_dense_peaks(name, bf16_tflops):
    assert hardware.catalogue()[name].peak_flops("bf16") == bf16_tflops * 1e12


def test_torchtitan_h100_board_is_the_one_its_page_describes():
    """torchtitan benchmarks/llama3_h100_202412_torchtitan.md (commit 31a17bf), Hardware: '96GB HBM2e with 2.4
    TB/sec peak memory bandwidth', 8 GPUs a host, '400 Gb/s per GPU' between hosts; footnote 2: MFU is taken
    against the SXM's peak (torchtitan's get_peak_flops: 989e12 for 'H100 SXM and other variants'), which it says
    lies above this board's, and the NVL's below it."""
    board, sxm = hardware.catalogue()["h100-sxm-96gb"], hardware.catalogue()["h100-sxm"]
    assert board.memory_bytes == 96 * 2**30
    assert board.memory_bandwidth_gbs * 1e9 == 2.4e12
    assert board.node_size == 8
    assert board.network_gbs * 1e9 == 2 * 400e9 / 8      # 400 Gb/s each way, the catalogue's bidirectional total
    # its peaks at its 500 W, linear in power between NVIDIA's two datasheet boards of the same 132-SM die: the
    # product page's sparse figures (H100 SXM | H100 NVL) halved, at 700 W and at 400 W
    sparse = {"bf16": (1979, 1671), "fp16": (1979, 1671), "fp8": (3958, 3341), "tf32": (989, 835)}
    for precision, (at_700, at_400) in sparse.items():
        derived = (at_400 + (at_700 - at_400) * (500 - 400) / (700 - 400)) / 2
        assert board.peak_flops(precision) == pytest.approx(derived * 1e12, rel=2e-3)
        assert at_400 / 2 * 1e12 < board.peak_flops(precision) < sxm.peak_flops(precision) * (1 + 1e-3)
    assert board.peak_flops("fp32") == pytest.approx((60 + (67 - 60) / 3) * 1e12, rel=2e-3)
    assert "500 W" in board.peak_source
    # the largest peak memory the page prints (84.9 GiB, Table 6) fits this board and not the 80 GB SXM
    assert sxm.memory_bytes < 84.9 * 2**30 < board.memory_bytes
    assert "assumed" in board.price_source


def test_v100_has_no_bf16():
    assert hardware.catalogue()["v100"].peak_flops("bf16") is None
    assert hardware.catalogue()["v100"].precisions == ["fp32", "fp16"]


def test_memory_in_bytes():
    # what a step must fit in is what PyTorch reports of an A100 80GB ("total capacity of 79.14 GiB" in an
    # out-of-memory message), not the 80 GiB the maker states
    gpu = hardware.catalogue()["a100-80gb"]
    assert gpu.memory_bytes == int(79.14 * 2**30) and gpu.stated_memory_bytes == 80 * 2**30
    # a device without a usable figure (a hardware file that gives none) fits in all of it
    tpu = hardware.catalogue()["tpu-v5e"]
    assert tpu.usable_memory_gib is None and tpu.memory_bytes == tpu.stated_memory_bytes == 16 * 2**30


def test_usable_memory_is_at_most_the_memory(tmp_path):
    path = tmp_path / "gpu.yaml"
    path.write_text("name: odd\npeak_tflops: {bf16: 100}\nmemory_gib: 24\nusable_memory_gib: 25\n"
                    "memory_bandwidth_gbs: 1000\ninterconnect_gbs: 64\nmfu: 0.5\nusd_per_gpu_hour: 1\n")
    with pytest.raises(CostplanError, match="usable_memory_gib: 25 is more than memory_gib \\(24\\)"):
        hardware.resolve(str(path))


def test_user_file(tmp_path):
    path = Path(__file__).parent / "specs" / "gpu.yaml"
    gpu = hardware.resolve(str(path))
    assert gpu.name == "Lab GPU" and gpu.peak_flops("bf16") == 100e12 and gpu.key == str(path)


def test_unknown_name():
    with pytest.raises(CostplanError, match="unknown GPU 'a100' \\(did you mean 'a100-40gb'\\?\\)"):
        hardware.resolve("a100")


def test_catalogue_entries_read_alone_equal_the_whole_file():
    """The catalogue validates an entry when it is first looked up, from its own lines of data/hardware.yaml."""
    from importlib import resources
    from pathlib import Path

    from costplan import yamlio

    whole = yamlio.read(Path(str(resources.files("costplan") / "data" / "hardware.yaml")))
    gpus = hardware.catalogue()
    assert list(gpus) == list(whole) and len(gpus) == len(whole)
    for key, entry in whole.items():
        assert gpus[key] == hardware.GPU.model_validate({**entry, "key": key})


LAB_GPU = ("name: lab\npeak_tflops: {{bf16: 100}}\nmemory_gib: 24\nmemory_bandwidth_gbs: 1000\n"
           "interconnect_gbs: 64\nmfu: 0.5\nusd_per_gpu_hour: {price}\n")


def test_an_edited_hardware_file_is_read_again(tmp_path):
    # a notebook that edits its hardware file between estimates sees the edit (the device had been kept for the
    # process, by the name it was given)
    path = tmp_path / "gpu.yaml"
    path.write_text(LAB_GPU.format(price=1.0))
    first = hardware.resolve(str(path))
    assert first.usd_per_gpu_hour == 1.0 and hardware.resolve(str(path)) is first   # unchanged: one object
    path.write_text(LAB_GPU.format(price=12.5))
    assert hardware.resolve(str(path)).usd_per_gpu_hour == 12.5
    # a file of the same size put in its place (an editor saving by rename), within the same clock tick
    other = tmp_path / "new.yaml"
    other.write_text(LAB_GPU.format(price=13.5))
    os.utime(other, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    os.replace(other, path)
    assert hardware.resolve(str(path)).usd_per_gpu_hour == 13.5


def test_a_linked_hardware_file_follows_its_link(tmp_path):
    # a link pointed at another file, then at nothing: the device follows (it had stayed the first file's)
    for name, price in (("a.yaml", 1.0), ("b.yaml", 5.0)):
        (tmp_path / name).write_text(LAB_GPU.format(price=price))
    link = tmp_path / "gpu.yaml"
    link.symlink_to(tmp_path / "a.yaml")
    assert hardware.resolve(str(link)).usd_per_gpu_hour == 1.0
    link.unlink()
    link.symlink_to(tmp_path / "b.yaml")
    assert hardware.resolve(str(link)).usd_per_gpu_hour == 5.0
    link.unlink()
    link.symlink_to(tmp_path / "gone.yaml")
    with pytest.raises(CostplanError, match="not found"):
        hardware.resolve(str(link))


def test_a_file_beside_the_spec_gives_way_to_the_current_folders(tmp_path, monkeypatch):
    # looked up from the current folder first: one appearing there after the spec's was read is the one now
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "gpu.yaml").write_text(LAB_GPU.format(price=1.0))
    monkeypatch.chdir(tmp_path)
    assert hardware.resolve("gpu.yaml", base_dir=str(tmp_path / "specs")).usd_per_gpu_hour == 1.0
    (tmp_path / "gpu.yaml").write_text(LAB_GPU.format(price=99.0))
    assert hardware.resolve("gpu.yaml", base_dir=str(tmp_path / "specs")).usd_per_gpu_hour == 99.0


def test_many_networks_keep_few_devices(tmp_path):
    # a sweep over hardware.network_gbs of one file: each network's device made, the most recent few kept (every
    # one had been kept: 60 MB for 10,000 networks)
    path = tmp_path / "gpu.yaml"
    path.write_text(LAB_GPU.format(price=1.0))
    for gbs in range(1, 301):
        assert hardware.resolve(str(path), network_gbs=float(gbs)).network_gbs == gbs
    assert hardware._read_file.cache_info().currsize <= 64
    assert sum(1 for key in hardware._named_files if key[0] == str(path)) == 1
    assert hardware.resolve("h100-sxm", network_gbs=7.0) is hardware.resolve("h100-sxm", network_gbs=7.0)


def test_a_relative_hardware_file_is_the_current_folders(tmp_path, monkeypatch):
    for folder, price in (("a", 1.0), ("b", 5.0)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "gpu.yaml").write_text(LAB_GPU.format(price=price))
    monkeypatch.chdir(tmp_path / "a")
    assert hardware.resolve("gpu.yaml").usd_per_gpu_hour == 1.0
    monkeypatch.chdir(tmp_path / "b")
    assert hardware.resolve("gpu.yaml").usd_per_gpu_hour == 5.0


def test_a_catalogue_name_is_one_device(tmp_path, monkeypatch):
    # the step model's memo keys name a device by its identity; a file named like an entry does not hide it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "h100-sxm").write_text(LAB_GPU.format(price=1.0))
    assert hardware.resolve("h100-sxm") is hardware.resolve("h100-sxm") is hardware.catalogue()["h100-sxm"]
    on = hardware.resolve("h100-sxm", network_gbs=50)
    assert on is hardware.resolve("h100-sxm", network_gbs=50) and on.network_gbs == 50


def test_the_usable_memory_is_said_apart_from_the_stated(run):
    # an MI300X has 191.98 GiB of its 192: four figures would print both as 192 GiB
    out = run("estimate", "llama2-7b", "--gpu", "mi300x", "--gpus", "8").stdout
    assert "fits in 191.98 GiB usable of 192 GiB" in out
    # serve and plan say what estimate says, and their JSON carries the stated memory beside the usable
    (served,) = json.loads(run("serve", "llama3-8b", "--gpu", "h100-sxm", "--format", "json").stdout)
    assert (served["memory"]["gpu_memory"], served["memory"]["gpu_memory_stated"]) == (int(79.11 * 2**30), 80 * 2**30)
    assert "of 79.11 GiB usable of 80 GiB" in run("serve", "llama3-8b", "--gpu", "h100-sxm").stdout
    (option,) = json.loads(run("plan", "llama2-7b", "--deadline", "72d", "--gpu", "mi300x", "--format",
                               "json").stdout)
    assert option["gpu_memory_stated"] == 192 * 2**30
    assert " of 191.98 GiB " in run("plan", "llama2-7b", "--deadline", "72d", "--gpu", "mi300x").stdout
    # the catalogue's H100 PCIe has PyTorch's total, as the SXM board has (it had fitted in all 80 GiB)
    assert hardware.resolve("h100-pcie").memory_bytes == int(79.19 * 2**30)


def test_a_gemm_curve_at_an_unknown_precision_is_refused(tmp_path):
    # a misspelt precision had been kept and never read: the device then had no curve where the user gave one
    path = tmp_path / "gpu.yaml"
    path.write_text((Path(__file__).parent / "specs" / "gpu.yaml").read_text().replace("gemm: {bf16:", "gemm: {bf61:"))
    with pytest.raises(CostplanError, match=r"kernels.gemm.bf61: 'bf61' is not one of fp32, tf32, fp16, bf16 or fp8 "
                                            r"\(did you mean 'bf16'\?\)"):
        hardware.resolve(str(path))
