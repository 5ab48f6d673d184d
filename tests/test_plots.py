"""`costplan plot`: the numbers behind each figure, and each figure rendered to a valid, labelled image."""
from __future__ import annotations

from pathlib import Path

import pytest

import costplan
from costplan import scaling, series
from costplan.costs.estimate import law_point

EPOCH = scaling.LAWS["epoch"]


# ---------------------------------------------------------------------------------------------- numbers
def test_dense_attention_flops_grow_linearly_per_token():
    # Per token and layer, QKᵀ and AV over s keys cost 4·H·d_head·s FLOPs (2 per multiply-add): GPT-2 small has
    # 12 layers of 12 heads of 64, so each extra key adds 4·12·12·64 FLOPs per token.
    rows = series.seq_scaling(costplan.load_spec("gpt2-small"), [1024, 2048, 4096])
    (s1, f1, _), (s2, f2, _), (s3, f3, _) = rows
    assert f2 - f1 == 4 * 12 * 12 * 64 * (s2 - s1) and f3 - f2 == 4 * 12 * 12 * 64 * (s3 - s2)


def test_flash_activations_are_linear_dense_are_not():
    flash = series.seq_scaling(costplan.load_spec("llama2-7b", ["hardware.count=1"]), [2048, 4096])
    assert flash[1][2] == 2 * flash[0][2]              # every saved tensor is per token: exactly twice
    dense = series.seq_scaling(costplan.load_spec("gpt2-small"), [1024, 2048])
    assert dense[1][2] > 2 * dense[0][2]               # the a·s² probabilities


def test_memory_parts_are_training_memory_only():
    e = costplan.estimate(costplan.load_spec("llama2-7b"))
    parts = series.memory_parts(e)
    assert list(parts) == ["weights", "fp8 weight copies", "gradients", "optimizer states", "activations",
                           "backward transients (loss, head, recomputation)",
                           "embedding and head gathered by ZeRO-3 (transient)", "layers gathered by ZeRO-3 (transient)",
                           "tied embedding gradients (transient)", "optimizer step transients"]
    assert sum(parts.values()) == e.memory.total_per_gpu and e.memory.peak_at == "backward"
    # a short sequence peaks at the optimizer step: its bar holds that moment's parts, not backward's
    short = costplan.estimate(costplan.load_spec(Path(__file__).parents[1] / "specs/ci/hf/tiny/llama.json",
                                                 ["training.seq_len=4"]))
    parts = series.memory_parts(short)
    assert short.memory.peak_at == "optimizer step" and parts["activations"] == 0 < parts["optimizer step transients"]
    assert sum(parts.values()) == short.memory.total_per_gpu
    assert not any("KV" in name for name in parts)     # inference's cache is not training memory


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
              "scaling_law": lambda: plots.scaling_law(EPOCH, [law_point(s) for s in specs])}[draw]()
    for axes in figure.axes:
        names, values = (axes.get_ylabel(), axes.get_xlabel()) if draw == "memory" else (
            axes.get_xlabel(), axes.get_ylabel())         # memory's bars are horizontal, one spec name per row
        assert names or draw == "memory"
        assert "(" in values                                # a unit in parentheses
        assert axes.get_title() and (axes.get_legend() is not None or figure.legends)
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
    from costplan import plots
    from costplan.cli import plot

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(plot, "load_all", forbidden)
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


WRITERS = [(["plot", "memory", "gpt2-small", "-o"], "--output"), (["plan", "--budget", "1e21", "--write"], "--write"),
           (["import", "specs/ci/hf/tiny/llama.json", "-o"], "--output")]


# import's `-o -` prints the spec, as no -o does
@pytest.mark.parametrize("args, option, name", [(*w, name) for w in WRITERS for name in ("", "-")
                                                if not (w[0][0] == "import" and name == "-")])
def test_an_empty_name_or_a_dash_is_no_file_to_write(run, tmp_path, monkeypatch, args, option, name):
    # "" had written nothing with exit 0 (plan) or printed the spec (import), "-" a file named "-" (plan, plot)
    from test_cli import errors

    args = [str(Path(__file__).parents[1] / a) if a.endswith(".json") else a for a in args]
    monkeypatch.chdir(tmp_path)
    shown = name or "''"
    assert errors(run(*args, name)) == [f"Error: {option} {shown}: give a file name (this option writes a file, "
                                        "not to standard output)"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, option", WRITERS)
def test_a_pipe_or_a_looping_link_is_no_file_to_write(run, tmp_path, args, option):
    # a file is written beside its target and renamed onto it: with --force a named pipe (or, for root, a device
    # such as /dev/null) had become a plain file, and a link looping onto itself was replaced without --force
    import os

    from test_cli import errors

    args = [str(Path(__file__).parents[1] / a) if a.endswith(".json") else a for a in args]
    pipe, loop = tmp_path / "pipe.yaml", tmp_path / "loop.yaml"
    os.mkfifo(pipe)
    loop.symlink_to(loop.name)
    assert errors(run(*args, str(pipe), "--force")) == [
        f"Error: {option} {pipe}: is not a regular file (a device, a pipe or a socket); give a file name"]
    assert errors(run(*args, str(loop))) == [
        f"Error: {option} {loop}: is a link that cannot be followed (a loop); give a file name"]
    # a link into a folder that is not there had been written through after the work, and failed then
    dangling = tmp_path / "dangling.yaml"
    dangling.symlink_to(tmp_path / "missing" / "x.yaml")
    assert errors(run(*args, str(dangling))) == [
        f"Error: {option} {dangling}: the folder {tmp_path / 'missing'} does not exist"]
    assert pipe.is_fifo() and loop.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == [
        "dangling.yaml", "loop.yaml", "pipe.yaml"]


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
    assert errors(run("plot", "memory", "gpt2-small", "--tokens", "1e9", "-o", str(path), "--force")) == [
        f"Error: --output {path}: cannot write: No space left on device"]
    assert path.read_bytes() == b"a good figure"
    assert [p.name for p in tmp_path.iterdir()] == ["memory.png"]


# ---------------------------------------------------------------------------------------------- readability
def _law_points(names):
    return [law_point(costplan.load_spec(name)) for name in names]


def _text_boxes(figure, texts):
    """Each text's rendered extent, without an annotation's leader line (which may run beside other labels)."""
    from matplotlib.text import Text

    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    return [(text.get_text(), Text.get_window_extent(text, renderer)) for text in texts if text.get_text()]


def _overlapping(boxes):
    return [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:] if box_a.overlaps(box_b)]


def test_memory_of_thirty_specs_stays_readable():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from costplan import plots

    names = sorted(p.stem for p in (Path(costplan.__file__).parent / "presets").glob("*.yaml"))
    estimates = [costplan.estimate(costplan.load_spec(name)) for name in (names * 3)[:30]]
    figure = plots.memory(estimates)
    width, height = figure.get_size_inches() * plots.DPI
    assert width <= 1600 and height <= 1700                  # a screen or a page, not 3,000 px
    axes = figure.axes[0]
    labels = _text_boxes(figure, axes.get_yticklabels())
    assert len(labels) == 30 and not _overlapping(labels)   # one row per spec, every name legible
    assert min(box.height for _, box in labels) > 8         # pixels at the figure's dpi: not squashed
    plt.close(figure)


def test_memory_stacks_training_memory_only():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from costplan import plots

    estimates = [costplan.estimate(costplan.load_spec(name)) for name in ["llama2-7b", "mixtral-8x7b"]]
    figure = plots.memory(estimates)
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert not any("KV" in label for label in legend)
    # the legend names what the bars hold: neither peaks at the optimizer step or gathers weights (ZeRO-3)
    assert sorted(legend) == sorted(["weights", "gradients", "optimizer states", "activations",
                                     "backward transients (loss, head, recomputation)", "the GPU's usable memory"])
    assert "KV cache not included" in figure.axes[0].get_title()
    bars = [patch for patch in figure.axes[0].patches]
    for row, e in enumerate(estimates):                      # each row's segments add up to the training total
        ends = max(bar.get_x() + bar.get_width() for bar in bars if round(bar.get_y() + bar.get_height() / 2) == row)
        assert ends * plots.GIB == pytest.approx(e.memory.total_per_gpu)
    plt.close(figure)


def test_scaling_labels_do_not_overlap_in_the_readme_example():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from costplan import plots

    names = ["llama2-7b", "gpt3-175b", "mixtral-8x7b"]        # README: plot scaling llama2-7b gpt3-175b mixtral-8x7b
    figure = plots.scaling_law(EPOCH, _law_points(names))
    for axes in figure.axes:
        labels = _text_boxes(figure, axes.texts)
        assert sorted(text for text, _ in labels) == sorted(names)     # every spec named on both panels
        assert not _overlapping(labels)
        legend = axes.get_legend().get_window_extent(figure.canvas.get_renderer())
        frame = axes.get_window_extent(figure.canvas.get_renderer())
        for text, box in labels:
            assert not box.overlaps(legend), text
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text
    plt.close(figure)


def test_crowded_scaling_labels_never_overlap():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from costplan import plots

    names = sorted(p.stem for p in (Path(costplan.__file__).parent / "presets").glob("*.yaml"))
    figure = plots.scaling_law(EPOCH, _law_points(names))
    for axes in figure.axes:
        assert not _overlapping(_text_boxes(figure, axes.texts))   # a name with no room is left to the legend
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == names
    plt.close(figure)


def test_iso_flop_budgets_read_as_powers_of_ten():
    from costplan import report

    assert report.flop_power(1e21) == "$10^{21}$ FLOPs"
    assert report.flop_power(3e19) == "$3\\times10^{19}$ FLOPs"


def test_no_room_for_the_temporary_file_is_one_error_line(run, tmp_path, monkeypatch):
    import errno

    pytest.importorskip("matplotlib")
    import tempfile

    from test_cli import errors

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)   # costplan/files.py imports tempfile when it writes
    path = tmp_path / "memory.png"
    assert errors(run("plot", "memory", "gpt2-small", "--tokens", "1e9", "-o", str(path))) == [
        f"Error: --output {path}: cannot write: Read-only file system"]
    assert not path.exists()


def test_plots_warn_as_estimate_does_and_show_every_spec(run, tmp_path):
    pytest.importorskip("matplotlib")
    from test_cli import errors

    # gpt2-small without training.tokens: the memory plot says what it assumed, as estimate does
    result = run("plot", "memory", "gpt2-small", "-o", str(tmp_path / "m.png"))
    assert result.exit_code == 0 and "warning: gpt2-small: no training.tokens" in result.stderr
    # options that change specs need a spec to change
    (line,) = errors(run("plot", "scaling", "--set", "bogus=1", "-o", str(tmp_path / "s.png")))
    assert line.startswith("Error: --set and --tokens change the specs plotted")


def test_the_loss_axis_reaches_every_spec():
    pytest.importorskip("matplotlib")
    from costplan import plots

    # GPT-2 small on 1e8 tokens predicts a loss of 5.0, above the frontier's window (its lowest + 2)
    point = law_point(costplan.load_spec("gpt2-small", ["training.tokens=1e8"]))
    figure = plots.scaling_law(scaling.resolve(None), [point])
    for axes in figure.axes[:2]:
        assert axes.get_ylim()[1] > point.scaling.loss


def test_a_scaling_point_needs_no_layout_and_agrees_with_estimate(run, tmp_path):
    pytest.importorskip("matplotlib")
    # 7 GPUs split no batch of llama2-7b: estimate refuses, but the loss against compute does not depend on GPUs
    assert run("estimate", "llama2-7b", "--gpus", "7").exit_code == 2
    result = run("plot", "scaling", "llama2-7b", "gpt2-small", "--set", "hardware.count=7", "-o",
                 str(tmp_path / "s.png"))
    assert result.exit_code == 0, result.stderr
    assert "warning: gpt2-small: no training.tokens" in result.stderr     # what a point assumes is still said
    spec = costplan.load_spec("mixtral-8x7b", ["training.tokens=1e12"])
    point, e = law_point(spec), costplan.estimate(spec)
    assert (point.tokens, point.scaling) == (e.assumptions.tokens, e.scaling)


def test_a_law_of_huge_losses_plots_without_a_warning(run, tmp_path):
    pytest.importorskip("matplotlib")
    # losses near 1e20: the axis's 2 nats above the frontier vanished in the float, and matplotlib's warning of
    # identical limits (a Python warning with a source line) reached the user
    import warnings

    law = tmp_path / "law.yaml"
    law.write_text("E: 1.0e+20\nA: 1.0\nB: 1.0\nalpha: 0.3\nbeta: 0.3\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run("plot", "scaling", "llama2-7b", "--law", str(law), "-o", str(tmp_path / "s.png"))
    assert result.exit_code == 0, result.stderr
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == []


def test_lengths_are_plotted_in_order_each_once(run):
    from costplan.cli.options import parse_lengths

    class Param:
        opts = ["--lengths"]
    assert parse_lengths(None, Param, "16384,512,2048,512") == [512, 2048, 16384]


def test_two_specs_of_one_name_are_told_apart_as_compare_does(run, tmp_path, monkeypatch):
    # a preset and an edited copy of it keep the preset's name: the bars and lines must not both say llama2-7b
    from costplan import plots

    drawn = {}
    monkeypatch.setattr(plots, "save", lambda figure, output, force=False: drawn.update(figure=figure))
    copy = tmp_path / "my.yaml"
    copy.write_text("name: llama2-7b\nmodel: {n_layers: 8, d_model: 4096, n_heads: 32, vocab_size: 32000, "
                    "max_seq_len: 4096}\ntraining: {seq_len: 4096}\n")
    expected = ["llama2-7b (llama2-7b)", f"llama2-7b ({copy})"]
    assert run("plot", "memory", "llama2-7b", str(copy), "-o", str(tmp_path / "m.png")).exit_code == 0
    axes = drawn["figure"].axes[0]
    assert [label.get_text() for label in axes.get_yticklabels()] == expected
    assert run("plot", "seq-scaling", "llama2-7b", str(copy), "--lengths", "512,1024", "-o",
               str(tmp_path / "s.png")).exit_code == 0
    left = drawn["figure"].axes[0]
    assert [line.get_label() for line in left.get_lines()] == [f"{expected[0]} (flash)", f"{expected[1]} (dense)"]


@pytest.mark.parametrize("figure, args, named", [
    ("scaling", ["--mfu", "0.3", "--gpu", "h100-sxm"], "--gpu, --mfu"),
    ("scaling", ["--gpus", "8"], "--gpus"),
    ("seq-scaling", ["--tokens", "5", "--mfu", "0.9"], "--tokens, --mfu"),
])
def test_options_a_figure_does_not_use_are_refused(run, tmp_path, figure, args, named):
    # the figure had come out byte for byte as without them
    from test_cli import errors

    (line,) = errors(run("plot", figure, "llama2-7b", *args, "-o", str(tmp_path / "f.png")))
    assert line.startswith(f"Error: {named}: not used by this figure (") and line.endswith("out")
    assert not (tmp_path / "f.png").exists()
