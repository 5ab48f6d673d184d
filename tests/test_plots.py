"""`costplan plot`: the numbers behind each figure, and each figure rendered to a valid, labelled image."""
from __future__ import annotations

import pytest

import costplan
from costplan import scaling, series

EPOCH = scaling.LAWS["epoch"]


# ---------------------------------------------------------------------------------------------- numbers
def test_dense_attention_flops_grow_linearly_per_token():
    # Per token and layer, QKᵀ and AV over s keys cost 4·H·d_head·s FLOPs (2 per multiply-add): GPT-2 small has
    # 12 layers of 12 heads of 64, so each extra key adds 4·12·12·64 FLOPs per token.
    rows = series.seq_scaling(costplan.load_spec("gpt2-small"), [1024, 2048, 4096])
    (s1, f1, _), (s2, f2, _), (s3, f3, _) = rows
    assert f2 - f1 == 4 * 12 * 12 * 64 * (s2 - s1) and f3 - f2 == 4 * 12 * 12 * 64 * (s3 - s2)


def test_flash_activations_are_linear_dense_are_not():
    flash = series.seq_scaling(costplan.load_spec("llama2-7b"), [2048, 4096])
    assert flash[1][2] == 2 * flash[0][2]              # every saved tensor is per token: exactly twice
    dense = series.seq_scaling(costplan.load_spec("gpt2-small"), [1024, 2048])
    assert dense[1][2] > 2 * dense[0][2]               # the a·s² probabilities


def test_memory_parts_are_the_estimate():
    e = costplan.estimate(costplan.load_spec("llama2-7b"))
    parts = series.memory_parts(e)
    assert list(parts) == ["weights", "gradients", "optimizer states", "activations", "loss gradients",
                           "KV cache"]
    assert sum(parts.values()) - parts["KV cache"] == e.memory.total_per_gpu
    assert parts["KV cache"] == 512 * 1024 * 4096       # Llama 2 7B: 512 KiB per token (notes §2.6) × 4,096


def test_frontier_is_the_lowest_loss_at_each_compute():
    computes = series.geometric(1e18, 1e26, 9)
    edge = series.frontier(EPOCH, computes)
    for n in (1e8, 1e10, 1e12):
        for (c, _, best), (_, loss) in zip(edge, series.fixed_params(EPOCH, n, computes)):
            assert best <= loss + 1e-12
    curve = series.iso_flop(EPOCH, 1e21, series.geometric(1e8, 1e11, 301))
    n_min = min(curve, key=lambda point: point[1])[0]
    assert n_min == pytest.approx(EPOCH.compute_optimal(1e21)[0], rel=0.03)   # grid step 2.3%


# ---------------------------------------------------------------------------------------------- images
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("suffix", [".png", ".svg"])
@pytest.mark.parametrize("args", [
    ["seq-scaling", "gpt2-small", "mistral-7b", "--lengths", "512,2048,8192"],
    ["memory", "llama2-7b", "mixtral-8x7b", "--gpus", "8", "--set", "parallelism.zero=3"],
    ["scaling", "llama2-7b", "mixtral-8x7b"],
    ["scaling"],
])
def test_plot_commands_write_valid_images(run, tmp_path, args, suffix):
    pytest.importorskip("matplotlib")
    path = tmp_path / f"figure{suffix}"
    result = run("plot", *args, "--output", str(path))
    assert result.exit_code == 0 and result.stdout.strip() == str(path)
    data = path.read_bytes()
    assert len(data) > 5000
    if suffix == ".png":
        assert data.startswith(PNG)
    else:
        assert b"<svg" in data[:2000] and data.rstrip().endswith(b"</svg>")


@pytest.mark.parametrize("draw", ["seq_scaling", "memory", "scaling_law"])
def test_figures_have_labels_titles_and_legends(draw):
    pytest.importorskip("matplotlib")
    from costplan import plots

    specs = [costplan.load_spec("llama2-7b"), costplan.load_spec("mistral-7b")]
    figure = {"seq_scaling": lambda: plots.seq_scaling(specs, [1024, 4096]),
              "memory": lambda: plots.memory([costplan.estimate(s) for s in specs]),
              "scaling_law": lambda: plots.scaling_law(EPOCH, [costplan.estimate(s) for s in specs])}[draw]()
    for axes in figure.axes:
        assert axes.get_xlabel() or draw == "memory"       # bars are labelled by spec name instead
        assert "(" in axes.get_ylabel()                     # a unit in parentheses
        assert axes.get_title() and axes.get_legend() is not None
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_bad_output_and_missing_specs(run):
    from test_cli import errors

    assert errors(run("plot", "memory", "llama2-7b", "--output", "figure.jpg")) == [
        "Error: --output figure.jpg: the file name must end in .png or .svg"]
    assert errors(run("plot", "memory", "nope/missing.yaml", "-o", "x.png")) == [
        "Error: nope/missing.yaml: no such file"]


# ---------------------------------------------------------------------------------------------- output files
def _no_work(monkeypatch):
    """Make loading a spec or drawing a figure fail loudly: a bad output must be refused before either."""
    from costplan import cli, plots

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(cli, "load_all", forbidden)
    monkeypatch.setattr(plots, "_pyplot", forbidden)


@pytest.mark.parametrize("command", ["seq-scaling", "memory", "scaling"])
def test_an_unwritable_output_is_one_error_line_before_any_work(run, tmp_path, monkeypatch, command):
    from test_cli import errors

    _no_work(monkeypatch)
    missing = tmp_path / "nonexistent" / "dir" / "x.png"
    assert errors(run("plot", command, "gpt2-small", "-o", str(missing))) == [
        f"Error: --output {missing}: the folder {missing.parent} does not exist"]
    assert errors(run("plot", command, "gpt2-small", "-o", str(tmp_path))) == [
        f"Error: --output {tmp_path}: is a folder; give a file name"]


def test_a_read_only_folder_is_refused(run, tmp_path, monkeypatch):
    import os

    from costplan import files
    from test_cli import errors

    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):                         # root may write anywhere: let the folder say no
        access = os.access
        monkeypatch.setattr(files.os, "access", lambda path, mode: str(path) != str(folder) and access(path, mode))
    _no_work(monkeypatch)
    assert errors(run("plot", "memory", "gpt2-small", "-o", str(folder / "x.png"))) == [
        f"Error: --output {folder / 'x.png'}: the folder {folder} is not writable"]
    folder.chmod(0o755)


@pytest.mark.parametrize("command", ["seq-scaling", "memory", "scaling"])
def test_an_existing_file_is_kept_without_force(run, tmp_path, monkeypatch, command):
    from test_cli import errors

    _no_work(monkeypatch)
    monkeypatch.chdir(tmp_path)
    default = tmp_path / f"{command}.png"                  # the default output name, in the current folder
    default.write_bytes(b"an earlier figure")
    assert errors(run("plot", command, "gpt2-small")) == [
        f"Error: --output {command}.png: the file exists; pass --force to replace it"]
    assert default.read_bytes() == b"an earlier figure"


def test_force_replaces_an_existing_file(run, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "memory.png"
    path.write_bytes(b"an earlier figure")
    result = run("plot", "memory", "gpt2-small", "-o", str(path), "--force")
    assert result.exit_code == 0, result.output
    assert path.read_bytes().startswith(PNG)
    assert [p.name for p in tmp_path.iterdir()] == ["memory.png"]      # no temporary file left behind


def test_a_failed_write_leaves_the_old_file(run, tmp_path, monkeypatch):
    import errno

    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from test_cli import errors

    def disk_full(self, path, **kwargs):
        with open(path, "wb") as handle:
            handle.write(PNG)                                  # a few bytes, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", disk_full)
    path = tmp_path / "memory.png"
    path.write_bytes(b"a good figure")
    assert errors(run("plot", "memory", "gpt2-small", "-o", str(path), "--force")) == [
        f"Error: --output {path}: cannot write: No space left on device"]
    assert path.read_bytes() == b"a good figure"
    assert [p.name for p in tmp_path.iterdir()] == ["memory.png"]
