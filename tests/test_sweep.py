"""`costplan sweep`: the cartesian product, every point validated and estimated like a spec of its own."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import costplan
from test_cli import TINY, errors, write

GPT = "model: {vocab_size: 1000, d_model: 64, n_layers: 2, n_heads: 4, max_seq_len: 128}\ntraining: {tokens: 1e9}\n"


def test_product_order_and_values_match_single_estimates(run):
    data = json.loads(run("sweep", TINY, "--vary", "model.n_layers=1,2,3", "--vary", "training.micro_batch_size=1,4",
                          "--format", "json").stdout)
    assert [(d["model.n_layers"], d["training.micro_batch_size"]) for d in data] == [
        (1, 1), (1, 4), (2, 1), (2, 4), (3, 1), (3, 4)]                    # the last --vary varies fastest
    for d in data:
        e = costplan.estimate(costplan.load_spec(TINY, [f"model.n_layers={d['model.n_layers']}",
                                                        f"training.micro_batch_size={d['training.micro_batch_size']}"]))
        assert (d["params"], d["memory_per_gpu"], d["cost_usd"], d["loss"]) == (
            e.params.total, e.memory.total_per_gpu, e.time.cost_usd, e.scaling.loss)
        assert isinstance(d["params"], int)


def test_derived_defaults_follow_the_swept_value(run, tmp_path):
    # d_ff defaults to 4·d_model: sweeping d_model re-derives it. GPT-2 shape, tied head, learned positions:
    # N = V·d + S·d + L·(12d² + 13d) + 2d (Kaplan's 12·L·d² plus biases and LayerNorms).
    path = write(tmp_path, GPT)
    rows = list(csv.DictReader(io.StringIO(run("sweep", path, "--vary", "d_model=64,128", "--format", "csv").stdout)))
    for row in rows:
        d = int(row["model.d_model"])
        assert int(row["params"]) == 1000 * d + 128 * d + 2 * (12 * d * d + 13 * d) + 2 * d


def test_runs_that_do_not_fit_sort_last_by_time_and_cost(run):
    # ZeRO 0 at micro-batch 8 is the cheapest run on paper and holds 262.8 GiB a GPU: it cannot run at all
    data = json.loads(run("sweep", "llama2-7b", "--gpus", "8", "--vary", "parallelism.zero=0,3", "--vary",
                          "training.micro_batch_size=1,8", "--sort-by", "cost_usd", "--format", "json").stdout)
    assert [d["fits"] for d in data] == [True, False, False, False]
    unfit = [d["cost_usd"] for d in data[1:]]
    assert unfit == sorted(unfit) and unfit[0] < data[0]["cost_usd"]


def test_a_replica_that_does_not_fit_meets_no_target(run):
    # Llama 2 70B's bf16 weights (138 GB) on one H100: no batch fits, so no latency target is met
    data = json.loads(run("sweep", "llama2-70b", "--vary", "serving.tensor=1,8", "--gpu", "h100-sxm", "--serving",
                          "--format", "json").stdout)
    assert [(d["serving_fits"], d["meets_targets"]) for d in data] == [(False, False), (True, True)]


def test_list_values_are_varied_whole(run):
    # commas inside brackets belong to one value: two uneven splits of 32 layers over 2 stages
    data = json.loads(run("sweep", "llama2-7b", "--set", "hardware.count=64", "--set", "parallelism.pipeline=2",
                          "--vary", "parallelism.stage_layers=[16, 16],[12,20]", "--format", "json").stdout)
    assert [d["parallelism.stage_layers"] for d in data] == [[16, 16], [12, 20]]
    assert data[0]["memory_per_gpu"] < data[1]["memory_per_gpu"]      # 20 layers on a stage hold more


def test_sort_by_and_limit(run):
    data = json.loads(run("sweep", TINY, "--vary", "model.n_layers=3,1,2", "--sort-by", "params",
                          "--format", "json").stdout)
    assert [d["model.n_layers"] for d in data] == [1, 2, 3]
    data = json.loads(run("sweep", TINY, "--vary", "n_layers=3,1,2", "--sort-by", "n_layers", "--format",
                          "json").stdout)
    assert [d["model.n_layers"] for d in data] == [1, 2, 3]
    limited = run("sweep", TINY, "--vary", "model.n_layers=1,2,3", "--vary", "model.d_ff=64,128", "--limit", "3",
                  "--format", "json")
    data = json.loads(limited.stdout)
    assert [(d["model.n_layers"], d["model.d_ff"]) for d in data] == [(1, 64), (1, 128), (2, 64)]
    # the rest are nowhere else (then the tiny spec's own warning: no training.seq_len)
    assert limited.stderr.splitlines()[0] == "sweep: the first 3 of 6 points (--limit)"
    assert "--limit" not in run("sweep", TINY, "--vary", "n_layers=1,2", "--limit", "5").stderr


def test_moe_shorthand_and_table(run):
    out = run("sweep", "mixtral-8x7b", "--vary", "moe.n_experts=2,8,64", "--vary", "parallelism.expert=1,2",
              "--gpus", "8", "--tokens", "1e12").stdout
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["model.moe.n_experts", "parallelism.expert"] and len(lines) == 2 + 6
    assert "46.7 B" in out and "12.88 B" in out          # Mixtral's total and active at 8 experts


@pytest.mark.parametrize("args, expected", [
    (["--vary", "model.n_layer=1,2"], "Error: --vary model.n_layer=1,2: model.n_layer: unknown field (did you mean "
     "'n_layers'?); model has attention, attention_sinks, bias, block, clip_qkv, d_ff, d_model, embedding_norm, "
     "head_bias, head_dim, max_seq_len, mlp, moe, n_heads, n_kv_heads, n_layers, norm, o_bias, position, qk_norm, "
     "qkv_bias, rope_dim, tie_embeddings, vocab_size"),
    (["--vary", "n_layers"], "Error: --vary n_layers: expected KEY=V1,V2,..., e.g. model.n_layers=12,24,48"),
    (["--vary", "model.n_layers=1,,2"], "Error: --vary model.n_layers=1,,2: an empty value; write values "
     "separated by commas"),
    (["--vary", "model.n_layers.x=1"], "Error: --vary model.n_layers.x=1: model.n_layers: is a value, not a "
     "section with fields"),
    (["--vary", "model.n_layers=1,2", "--sort-by", "speed"], "Error: --sort-by: 'speed' is not a column; one of "
     "params, active_params, training_flops, memory_per_gpu, fits, layout, gpu_hours, wall_clock_days, cost_usd, "
     "loss, model.n_layers"),
    (["--vary", "model.n_layers=1,2", "--sort-by", "gpu-hours"], "Error: --sort-by: 'gpu-hours' is not a column "
     "(did you mean 'gpu_hours'?); one of params, active_params, training_flops, memory_per_gpu, fits, layout, "
     "gpu_hours, wall_clock_days, cost_usd, loss, model.n_layers"),
    (["--vary", "model.n_layers=1,2", "--limit", "0"], "Error: --limit: must be greater than 0, got 0"),
])
def test_bad_vary_sort_and_limit(run, args, expected):
    assert errors(run("sweep", TINY, *args)) == [expected]


def test_bad_values_name_the_point(run):
    lines = errors(run("sweep", TINY, "--vary", "model.n_layers=2,abc,-1", "--vary", "parallelism.tensor=1,3"))
    assert f"Error: {TINY} [model.n_layers=2, parallelism.tensor=3]: parallelism.tensor: 3 does not divide " \
           "model.n_heads (4)" in lines
    assert f"Error: {TINY} [model.n_layers=abc, parallelism.tensor=1]: model.n_layers: expected a whole number, " \
           "got 'abc'" in lines
    assert f"Error: {TINY} [model.n_layers=-1, parallelism.tensor=1]: model.n_layers: must be greater than 0, " \
           "got -1" in lines


def test_a_million_points_need_a_limit(run):
    ten = ",".join(str(i) for i in range(1, 11))
    args = ["--vary", f"model.n_layers={ten}", "--vary", f"training.micro_batch_size={ten}",
            "--vary", f"training.tokens={ten}", "--vary", f"hardware.count={ten}", "--vary", f"model.vocab_size={ten}",
            "--vary", f"model.max_seq_len={ten}"]
    assert errors(run("sweep", TINY, *args)) == [
        "Error: --vary: 1,000,000 points; more than 100,000 need --limit N (the first N points are evaluated)"]
    data = json.loads(run("sweep", TINY, *args, "--limit", "5", "--format", "json").stdout)
    assert len(data) == 5


def test_points_sharing_a_model_get_the_costs_of_their_own_shape(run):
    # Points share component costs only when model and shape are equal: precision, recompute and seq_len change
    # the shape, micro-batch and pipeline stages do not; each point must equal an estimate made on its own.
    varies = ["training.precision=bf16,fp32", "training.recompute=none,full", "training.seq_len=64,128",
              "training.micro_batch_size=1,2"]
    args = ["sweep", TINY, "--gpus", "2", "--set", "parallelism.pipeline=2", "--set", "model.n_layers=2",
            "--format", "json"]
    for vary in varies:
        args += ["--vary", vary]
    data = json.loads(run(*args).stdout)
    assert len(data) == 16
    for d in data:
        sets = [f"{key}={d[key]}" for key in ("training.precision", "training.recompute", "training.seq_len",
                                                "training.micro_batch_size")]
        e = costplan.estimate(costplan.load_spec(TINY, ["hardware.count=2", "parallelism.pipeline=2",
                                                        "model.n_layers=2", *sets]))
        assert (d["training_flops"], d["memory_per_gpu"], d["gpu_hours"]) == (
            e.flops.training_total, e.memory.total_per_gpu, e.time.gpu_hours), sets


def test_worker_processes_give_the_points_and_problems_of_one(monkeypatch):
    from costplan import sweep
    from costplan.errors import CostplanError
    from costplan.loading import read_source

    monkeypatch.setattr(sweep, "CHUNK", 2)               # several chunks per worker, taken in turn
    raw = read_source(TINY)
    axes = [sweep.parse_vary("model.n_layers=1,2,3,4,5"), sweep.parse_vary("training.micro_batch_size=1,2,4")]
    calls = {1: [], 2: []}
    serial = sweep.run(raw, axes, jobs=1, progress=lambda *args: calls[1].append(args))
    assert len(serial) == 15 and sweep.run(raw, axes, jobs=2, progress=lambda *args: calls[2].append(args)) == serial
    assert calls[1] == calls[2] == [(done, 15) for done in (2, 4, 6, 8, 10, 12, 14, 15)]
    bad = [sweep.parse_vary("model.n_layers=1,x,3,-1,5"), sweep.parse_vary("parallelism.tensor=1,3")]
    messages = []
    for jobs in (1, 2):
        with pytest.raises(CostplanError) as caught:
            sweep.run(raw, bad, jobs=jobs)
        messages.append(str(caught.value))
    lines = messages[0].splitlines()
    assert messages[0] == messages[1] and len(lines) >= 3 and len(set(lines)) == len(lines)
    assert "[model.n_layers=1, parallelism.tensor=3]" in messages[0]     # with the first point that shows it


def test_a_long_sweep_says_how_far_it_is(run, monkeypatch):
    from costplan.cli import sweep as command

    args = ["sweep", TINY, "--vary", "model.n_layers=1,2,3", "--format", "csv"]
    assert "points (" not in run(*args).stderr                       # 3 points: nothing to say
    monkeypatch.setattr(command, "PROGRESS_FROM", 3)
    monkeypatch.setattr(command, "PROGRESS_EVERY", 0.0)
    result = run(*args)
    progress = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert result.exit_code == 0 and progress[-1].startswith("sweep: 3 of 3 points (")
    assert result.stdout == run(*args, "--jobs", "1").stdout


def test_jobs_option(run):
    args = ["sweep", TINY, "--vary", "model.n_layers=1,2,3", "--format", "csv"]
    assert run(*args, "--jobs", "2").stdout == run(*args, "--jobs", "1").stdout == run(*args).stdout
    assert errors(run(*args, "--jobs", "0")) == ["Error: --jobs: must be greater than 0, got 0"]


def test_a_held_layout_serves_only_points_it_tiles_and_splits(run):
    # Mixtral on 64 GPUs lays out 4 × 1 × 16 with expert 8; a point with 2 experts cannot spread them over 8
    # ranks (`estimate` refuses that section), so it searches its own layout, and gets estimate's numbers
    data = json.loads(run("sweep", "mixtral-8x7b", "--vary", "moe.n_experts=2,8", "--gpus", "64",
                          "--format", "json").stdout)
    for d in data:
        e = costplan.estimate(costplan.load_spec("mixtral-8x7b", ["hardware.count=64",
                                                                   f"moe.n_experts={d['model.moe.n_experts']}"]))
        assert (d["memory_per_gpu"], d["gpu_hours"]) == (e.memory.total_per_gpu, e.time.gpu_hours)
    # each expert whole on its rank (expert tensor 1 where the tensor degree is 4); 2 experts hold less, and shard
    # only gradients and states (ZeRO 2), 8 shard the weights too
    assert [d["layout"] for d in data] == ["4 × 1 × 16 expert 2 expert tensor 1 ZeRO 2 SP",
                                           "4 × 1 × 16 expert 8 expert tensor 1 ZeRO 3 SP"]
    # and a note says which ran on the base spec's layout (only the second), where an estimate searches its own
    note = run("sweep", "mixtral-8x7b", "--vary", "moe.n_experts=2,8", "--gpus", "64").stderr
    assert ("note: 1 of 2 points ran on the base spec's layout, 4 × 1 × 16 expert 8 expert tensor 1 ZeRO 3 SP, "
            "as a point does where it splits the point's model and batch and fits") in note


def test_a_held_pipeline_keeps_the_micro_batches_that_make_a_batch_without_a_global_one(run):
    # Gemma 2 9B on 16 L4s lays out 8 × 2 × 1 with micro-batches the search chose; without a global batch they
    # make each step's batch. The held layout had cleared them: the unchanged base point trained one micro-batch a
    # step through two stages, 9.0 M GPU-hours against estimate's 4.9 M, on the layout the column shows alike.
    (base,) = json.loads(run("sweep", "gemma2-9b", "--gpu", "l4", "--gpus", "16", "--vary", "n_layers=42",
                             "--format", "json").stdout)
    e = costplan.estimate(costplan.load_spec("gemma2-9b", ["hardware.gpu=l4", "hardware.count=16"]))
    assert e.assumptions.global_batch_source != "training.global_batch_size"
    assert (e.parallelism.pipeline, base["layout"]) == (2, "8 × 2 × 1 SP") and e.parallelism.micro_batches > 1
    assert (base["memory_per_gpu"], base["gpu_hours"]) == (e.memory.total_per_gpu, e.time.gpu_hours)


def test_the_layout_column_tells_apart_what_memory_depends_on(run):
    # Two points on the same grid whose estimates differ in ZeRO stage (and so in memory per GPU) must not read
    # alike: Llama 3 8B on 8 A100 40GBs (39.39 GiB for PyTorch) shards its weights too (ZeRO 3), on 8 L40Ss
    # (44.99 GiB) only gradients and states, both over 2 tensor ranks with sequence parallelism
    data = json.loads(run("sweep", "llama3-8b", "--gpus", "8", "--vary", "hardware.gpu=a100-40gb,l40s",
                          "--search-layouts", "--format", "json").stdout)
    for d in data:
        e = costplan.estimate(costplan.load_spec("llama3-8b", ["hardware.count=8",
                                                                f"hardware.gpu={d['hardware.gpu']}"]))
        par = e.parallelism
        assert d["layout"] == f"{par.tensor} × {par.pipeline} × {par.data} ZeRO {par.zero} SP"
    assert [d["layout"] for d in data] == ["2 × 1 × 4 ZeRO 3 SP", "2 × 1 × 4 ZeRO 2 SP"]


def test_points_keep_the_base_layout_unless_told_to_search(run):
    # 8 of Llama 2 70B's 80 layers fit on the base spec's tensor 2; their own search takes tensor 1, as estimate
    args = ("sweep", "llama2-70b", "--gpus", "512", "--vary", "n_layers=8", "--format", "json")
    held, searched = (json.loads(run(*args, *extra).stdout)[0] for extra in ((), ("--search-layouts",)))
    e = costplan.estimate(costplan.load_spec("llama2-70b", ["hardware.count=512", "n_layers=8"]))
    assert held["layout"] == "2 × 1 × 256 ZeRO 3 SP" and searched["layout"] == "1 × 1 × 512 ZeRO 1"
    assert (e.parallelism.tensor, e.parallelism.pipeline, e.parallelism.data) == (1, 1, 512)
    assert searched["gpu_hours"] == e.time.gpu_hours != held["gpu_hours"]
    # the README's figures for it
    assert (round(held["gpu_hours"] / 100) / 10, round(searched["gpu_hours"] / 100) / 10) == (121.5, 106.4)
    # the table says so (it had not: the sweep's and estimate's figures differed without a word), unless searched
    assert "note: every point ran on the base spec's layout, 2 × 1 × 256 ZeRO 3 SP" in run(*args).stderr
    assert "note:" not in run(*args, "--search-layouts").stderr


def test_a_sweep_warns_of_a_defaulted_training_length_as_estimate_does(run):
    # ci-flash gives no training.seq_len: every point trains at model.max_seq_len, which estimate warns of
    said = "warning: ci-flash: no training.seq_len; training on sequences of model.max_seq_len, "
    flash = str(Path(__file__).parents[1] / "specs" / "ci" / "flash.yaml")
    assert said + "128 tokens" in run("sweep", flash, "--vary", "n_layers=1,2").stderr
    assert said + "each point's" in run("sweep", flash, "--vary", "max_seq_len=64,128").stderr
    assert "seq_len" not in run("sweep", flash, "--vary", "training.seq_len=64,128").stderr
    assert said + "128 tokens" in run("estimate", flash).stderr


def test_a_value_given_twice_is_refused_not_evaluated_twice(run):
    assert errors(run("sweep", TINY, "--vary", "n_layers=1,2,2.0")) == [
        "Error: --vary model.n_layers: 2 and 2.0 are the same value; give each once (every point would be "
        "evaluated twice)"]
    assert errors(run("sweep", TINY, "--vary", "parallelism.pipeline=2", "--vary",
                      "parallelism.stage_layers=[1, 1],[1,1.0]"))[0].startswith(
        "Error: --vary parallelism.stage_layers: [1, 1] and [1,1.0] are the same value")
    # a flag and a number are not the same value (validation judges the 1)
    assert "the same value" not in run("sweep", TINY, "--vary", "training.autocast=true,1").stderr


def test_echoed_values_are_cut_short(run):
    # a --vary's text and a point's label repeat the user's input: a long one is cut, as --set's values are
    seeds = ",".join(str(i) for i in range(2000))
    (line,) = errors(run("sweep", TINY, "--vary", f"training.seeds={seeds}"))
    assert len(line) < 600 and "…" in line
    lines = errors(run("sweep", TINY, "--vary", "n_layers=" + "x" * 5000))
    assert all(len(line) < 400 for line in lines)


def test_varied_values_read_as_the_vary_wrote_them(run):
    # the table's varied columns: null and a large float as written, not Python's None and 1000000000000.0
    lines = run("sweep", TINY, "--vary", "training.tokens=1e12,2e6", "--vary",
                "hardware.mfu=null,0.123456789").stdout.splitlines()
    cells = [line.split()[:2] for line in lines[2:]]
    assert cells == [["1e12", "null"], ["1e12", "0.123456789"], ["2e6", "null"], ["2e6", "0.123456789"]]
    # sorted, each row keeps its own values' text
    lines = run("sweep", TINY, "--vary", "training.tokens=2e6,1e12", "--sort-by", "training.tokens").stdout
    assert [line.split()[0] for line in lines.splitlines()[2:]] == ["2e6", "1e12"]


def test_a_point_the_held_layout_cannot_hold_searches_its_own(run):
    # 192 of Llama 2 7B's layers outgrow the base spec's ZeRO 2 on tensor 2 (the held layout is sized before the
    # point is estimated on it): that point searches its own layout and gets estimate's figures
    args = ("sweep", "llama2-7b", "--vary", "model.n_layers=32,192", "--format", "json")
    result = run(*args)
    shallow, deep = json.loads(result.stdout)
    held = ["parallelism.tensor=2", "parallelism.zero=2", "parallelism.sequence_parallel=true"]
    assert not costplan.estimate(costplan.load_spec("llama2-7b", ["model.n_layers=192", *held])).memory.fits
    e = costplan.estimate(costplan.load_spec("llama2-7b", ["model.n_layers=192"]))
    assert shallow["layout"] == "2 × 1 × 1024 ZeRO 2 SP" and deep["layout"] == "2 × 1 × 1024 ZeRO 3 SP"
    assert (deep["gpu_hours"], deep["memory_per_gpu"]) == (e.time.gpu_hours, e.memory.total_per_gpu)
    assert "note: 1 of 2 points ran on the base spec's layout, 2 × 1 × 1024 ZeRO 2 SP" in result.stderr


def test_a_varied_whole_number_written_with_an_exponent_is_the_specs_number(run):
    # 1e9 reads as a float; the spec keeps the whole number (estimate prints 1000000000), and so does the point
    data = json.loads(run("sweep", TINY, "--vary", "training.tokens=1e9,2_000_000_000,1.5e9", "--vary",
                          "hardware.mfu=0.5,1.0", "--format", "json").stdout)
    assert [d["training.tokens"] for d in data[::2]] == [1_000_000_000, 2_000_000_000, 1_500_000_000]
    assert all(isinstance(d["training.tokens"], int) for d in data)
    e = costplan.estimate(costplan.load_spec(TINY, ["training.tokens=1e9"]))
    assert e.assumptions.tokens == data[0]["training.tokens"]
    assert [d["hardware.mfu"] for d in data[:2]] == [0.5, 1.0]      # a float field keeps its floats


def test_a_varied_section_is_one_csv_cell_as_json_writes_it(run):
    # a mapping value of the axis stays in its own column (as a list does), not spread into columns of its fields
    # beside an empty one
    result = run("sweep", "mixtral-8x7b", "--vary", "moe={n_experts: 8, top_k: 2},{n_experts: 4, top_k: 1}",
                 "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [json.loads(r["model.moe"]) for r in rows] == [{"n_experts": 8, "top_k": 2}, {"n_experts": 4, "top_k": 1}]
    assert not any(key.startswith("model.moe.") for key in rows[0])
