"""`costplan plan`: the shape rule, budgets in FLOPs, GPU-hours and dollars, and deadlines."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import costplan
from costplan import hardware, planner, scaling, sizing
from costplan.costs import layouts
from test_cli import errors

ROOT = Path(__file__).parents[1]

EPOCH = scaling.LAWS["epoch"]


# ---------------------------------------------------------------------------------------------- shape rule
@pytest.mark.parametrize("preset", ["llama2-7b", "llama2-13b"])
def test_shape_rule_reproduces_llama2(preset):
    # Llama 2 7B and 13B (Touvron et al. 2023, Table 1 and HF configs) follow the rule exactly: 128-wide heads,
    # d_model/n_layers = 128, d_ff = 8/3·d_model rounded up to a multiple of 256. Given their parameter count,
    # the rule returns their shape.
    llama = costplan.load_spec(preset).model
    proposed = sizing.architecture(costplan.estimate(costplan.load_spec(preset)).params.total, 32000, 4096)
    assert (proposed["d_model"], proposed["n_layers"], proposed["n_heads"], proposed["d_ff"]) == (
        llama.d_model, llama.n_layers, llama.n_heads, llama.d_ff)


@pytest.mark.parametrize("target", [3e8, 1.3e9, 7.2e10, 3.1e11, 2e12])
def test_shape_rule_lands_within_half_a_layer(target):
    model = sizing.architecture(target)
    spec = costplan.load_spec({"model": model})
    params = costplan.estimate(spec).params.total
    per_layer = costplan.estimate(costplan.load_spec({"model": model}, ["model.n_layers=2"])).params.total \
        - costplan.estimate(costplan.load_spec({"model": model}, ["model.n_layers=1"])).params.total
    assert abs(params - target) <= per_layer / 2
    assert model["d_model"] == 128 * model["n_heads"] and model["d_ff"] % 256 == 0
    assert model["n_heads"] < 16 or model["n_heads"] % (4 if model["n_heads"] < 64 else 8) == 0
    assert 85 <= model["d_model"] / model["n_layers"] <= 190          # near 128, as the width steps allow


# ---------------------------------------------------------------------------------------------- budgets
def test_flops_budget_json_contract(run):
    data = json.loads(run("plan", "--budget", "5.76e23", "--format", "json").stdout)
    assert {"params", "tokens", "flops", "loss", "gpu_hours", "cost_usd", "spec"} <= set(data)
    # The law's optimum (issue test vector) and a concrete model within 1% of it
    assert data["optimum"]["params"] == pytest.approx(7.23e10, rel=5e-3)
    assert data["optimum"]["tokens"] == pytest.approx(1.33e12, rel=5e-3)
    assert data["params"] == pytest.approx(7.23e10, rel=0.01) and isinstance(data["params"], int)
    # Spending the budget: real training FLOPs (attention included) within one token of 5.76e23
    per_token = data["flops"] / data["tokens"]
    assert 5.76e23 - per_token < data["flops"] <= 5.76e23
    assert data["loss"] == pytest.approx(EPOCH.loss(data["params"], data["tokens"]))
    assert data["tokens"] == pytest.approx(1.33e12, rel=0.05)   # fewer than 6ND's: attention costs FLOPs too


def test_proposed_spec_prices_as_reported(run, tmp_path):
    path = tmp_path / "proposal.yaml"
    data = json.loads(run("plan", "--budget", "100000", "--unit", "gpu-hours", "--gpu", "h100-sxm", "--gpus",
                          "64", "--write", str(path), "--format", "json").stdout)
    text = path.read_text()
    assert text.startswith("# proposed by costplan plan --budget 100000 --unit gpu-hours")
    e = costplan.estimate(costplan.load_spec(str(path)))
    assert (e.params.total, e.assumptions.tokens) == (data["params"], data["tokens"])
    # the layout its time and memory are for, which the table names beside the wall clock
    par = e.parallelism
    assert data["layout"] == {"tensor": par.tensor, "pipeline": par.pipeline, "zero": par.zero, "context": 1,
                              "sequence_parallel": par.sequence_parallel,
                              "data": par.data}
    table = run("plan", "--budget", "100000", "--unit", "gpu-hours", "--gpu", "h100-sxm", "--gpus", "64").stdout
    wall = next(line for line in table.splitlines() if "wall clock" in line)
    assert wall.rstrip().endswith(f"on 64 GPUs: {par.tensor} × {par.pipeline} × {par.data}, ZeRO {par.zero}")
    tokens = next(line for line in table.splitlines() if "tokens" in line and "per parameter;" in line)
    assert tokens.rstrip().endswith("what the budget buys in GPU-hours at the time below")
    assert e.time.gpu_hours == pytest.approx(data["gpu_hours"]) and e.time.wall_clock_days == pytest.approx(
        data["wall_clock_days"])
    # the step model's GPU-hours buy the FLOPs the law sizes the model for: the proposal spends them, to the token
    assert data["flops"] == pytest.approx(data["budget"]["flops"], rel=0.01)
    assert data["gpu_hours"] == pytest.approx(100000, rel=1e-6) and data["gpu_hours"] <= 100000
    # at a given MFU, 100k H100-hours at 989 TFLOP/s buy 100000 × 3600 × 989e12 × MFU FLOPs
    fixed = json.loads(run("plan", "--budget", "100000", "--unit", "gpu-hours", "--gpu", "h100-sxm", "--gpus", "64",
                           "--mfu", "0.4", "--format", "json").stdout)
    assert fixed["budget"]["flops"] == pytest.approx(100000 * 3600 * 989e12 * 0.40)
    assert fixed["flops"] == pytest.approx(fixed["budget"]["flops"], rel=1e-3)


def test_a_proposal_that_does_not_fit_its_gpus_says_so(run):
    # Gopher's budget on one A100 (the default --gpus): a 72 B model's 16 bytes a parameter of weights,
    # gradients and Adam states alone are 1.1 TB, far past 80 GiB
    result = run("plan", "--budget", "5.76e23", "--format", "json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and not data["fits"] and data["memory_per_gpu"] > 16 * data["params"]
    assert data["gpu_memory"] == int(79.14 * 2**30)      # what PyTorch has of an A100's 80 GiB
    assert result.stderr.startswith("warning: the proposal needs ") and "cannot train on 1 GPU" in result.stderr
    fits = run("plan", "--budget", "5.76e23", "--gpu", "h100-sxm", "--gpus", "1024", "--format", "json")
    assert json.loads(fits.stdout)["fits"] and fits.stderr == ""


def test_a_budget_below_the_smallest_shape_says_the_proposal_is_not_compute_optimal(run):
    result = run("plan", "--budget", "1e10", "--format", "json")
    data = json.loads(result.stdout)
    assert data["params"] > 1000 * data["optimum"]["params"]
    assert "not compute-optimal" in result.stderr
    assert run("plan", "--budget", "1e21").stderr == ""


def test_dollar_budget(run):
    data = json.loads(run("plan", "--budget", "250000", "--unit", "usd", "--gpu", "h100-sxm",
                          "--format", "json").stdout)
    # the budget's FLOPs are what the dollars buy as the step model times the proposal, and what it trains
    assert data["flops"] == pytest.approx(data["budget"]["flops"], rel=0.01)
    assert data["cost_usd"] == pytest.approx(250000, rel=1e-6)
    gpu = hardware.resolve("h100-sxm")
    hours = 250000 / gpu.usd_per_gpu_hour
    assert data["gpu_hours"] == pytest.approx(hours, rel=1e-6)
    # the README's: $1 M on 512 H100s buys 701 ZFLOP as the step model times it, where the catalogue's 40% MFU
    # would have said 483
    million = json.loads(run("plan", "--budget", "1e6", "--unit", "usd", "--gpu", "h100-sxm", "--gpus", "512",
                             "--format", "json").stdout)
    assert million["budget"]["flops"] == pytest.approx(7.01e23, rel=1e-3)
    assert (million["params"], million["optimum"]["params"]) == (pytest.approx(78.05e9, rel=1e-3),
                                                                 pytest.approx(79.9e9, rel=1e-3))
    assert 1e6 / gpu.usd_per_gpu_hour * 3600 * 989e12 * 0.40 == pytest.approx(4.83e23, rel=1e-3)


def test_a_budget_in_hours_trains_the_size_of_lowest_loss_on_the_flops_it_shows(run):
    # 64 L4s time a 44 B first guess at 5% MFU, and the size sized once more for what that bought trained 4x the
    # header's FLOPs at 76 tokens a parameter, under an optimum of 20. Now the header's FLOPs are the proposal's,
    # the optimum the law's for them, and no size around it trains to a lower loss on the same dollars
    args = ("plan", "--budget", "1e6", "--unit", "usd", "--gpu", "l4", "--gpus", "64", "--format", "json")
    data = json.loads(run(*args).stdout)
    assert data["flops"] == pytest.approx(data["budget"]["flops"], rel=1e-12)
    # the README's: 26.1 B parameters at 265.6 ZFLOP, the optimum for those FLOPs 48.6 B
    assert (data["params"], data["flops"], data["optimum"]["params"]) == (
        pytest.approx(26.1e9, rel=2e-3), pytest.approx(265.6e21, rel=2e-4), pytest.approx(48.6e9, rel=2e-3))
    assert data["cost_usd"] == pytest.approx(1e6, rel=1e-6)
    law = scaling.LAWS["epoch"]
    assert data["optimum"]["params"] == pytest.approx(law.compute_optimal(data["flops"])[0])
    assert data["loss"] == pytest.approx(law.loss(data["params"], data["tokens"]))
    hours = 1e6 / hardware.resolve("l4").usd_per_gpu_hour
    for params in (data["optimum"]["params"], data["params"] / 2, data["params"] * 2):
        model = sizing.architecture(params)
        spec = costplan.load_spec({"model": model, "training": {"tokens": 10**9},
                                   "hardware": {"gpu": "l4", "count": 64}})
        other = costplan.estimate(spec)
        tokens = hours / other.time.gpu_hours * 10**9
        assert law.loss(other.params.total, tokens) > data["loss"] - 5e-4
    assert "the size the budget's GPU-hours train to the lowest loss" in run(*args[:-2]).stdout


def test_a_budget_in_hours_below_one_token_names_the_step_models_floor(run):
    # the floor had been named at the catalogue MFU, and a budget above it failed on training.tokens: 0
    (line,) = run("plan", "--budget", "1e-10", "--unit", "gpu-hours", "--gpu", "h100-sxm").stderr.splitlines()
    assert line.startswith("Error: --budget 1e-10 gpu-hours: less than the smallest budget the shape rule can serve "
                           "as the step model times it, ")
    least = float(line.split("times it, ")[1].split()[0])
    assert least > 1e-10 and run("plan", "--budget", f"{least * 1.01}", "--unit", "gpu-hours", "--gpu",
                                 "h100-sxm").exit_code == 0
    # below the catalogue MFU's floor too, the same floor (the first message had named one 7x lower)
    (lower,) = run("plan", "--budget", "2e-11", "--unit", "gpu-hours", "--gpu", "h100-sxm").stderr.splitlines()
    assert lower.split("gpu-hours: ")[1] == line.split("gpu-hours: ")[1]


def test_a_budget_in_hours_tries_no_size_a_spec_refuses(run):
    # eight times the first guess of 1e17 GPU-hours has over 1,048,576 layers: it had stopped the plan with
    # <spec>'s model.n_layers error
    assert run("plan", "--budget", "1e17", "--unit", "gpu-hours", "--gpu", "h100-sxm").exit_code == 0


def test_budget_table_and_law(run):
    out = run("plan", "--budget", "1e21", "--law", "chinchilla").stdout
    assert out.startswith("Budget 1 ZFLOP")
    for text in ("optimum", "1.824 B", "chinchilla law", "proposal", "architecture", "GPU-hours", "cost"):
        assert text in out, text


def test_a_written_proposal_says_which_law_its_loss_is(run, tmp_path):
    # A spec names no law, so estimate takes the default (epoch): a proposal of another law says how to get the
    # plan's loss back from the file it wrote
    path = tmp_path / "chinchilla.yaml"
    data = json.loads(run("plan", "--budget", "1e21", "--law", "chinchilla", "--write", str(path),
                          "--format", "json").stdout)
    assert "# its predicted loss is the chinchilla law's: costplan estimate FILE --law chinchilla" in path.read_text()
    spec = costplan.load_spec(str(path))
    assert costplan.estimate(spec, law="chinchilla").scaling.loss == pytest.approx(data["loss"])
    assert costplan.estimate(spec).scaling.loss != pytest.approx(data["loss"])
    default = tmp_path / "epoch.yaml"
    run("plan", "--budget", "1e21", "--write", str(default))
    assert "--law" not in default.read_text()


# ---------------------------------------------------------------------------------------------- deadline
def test_deadline_options_are_minimal_and_sorted(run):
    data = json.loads(run("plan", "llama2-7b", "--deadline", "30d", "--gpu", "h100-sxm", "--gpu", "a100-80gb",
                          "--gpu", "v100", "--format", "json").stdout)
    assert [o["gpu"] for o in data] == ["h100-sxm", "a100-80gb", "v100"]      # by cost; v100 has no bf16
    assert data[2]["gpus"] is None
    assert data[2]["note"] == "no bf16 peak FLOP/s (it has fp32, fp16): --set training.precision=..."
    spec = costplan.load_spec("llama2-7b")
    for option in data[:2]:
        assert option["wall_clock_days"] <= 30 and option["memory_per_gpu"] <= option["gpu_memory"]
        # The batch of 1024 sequences splits over power-of-two data-parallel degrees only, so the next smaller
        # count is half: with the same layout it misses the deadline or does not fit.
        layout = {k: option["layout"][k] for k in ("tensor", "pipeline", "zero", "sequence_parallel")}
        fewer = layouts.variant(spec, option["gpu"], option["gpus"] // 2, layout)
        e = costplan.estimate(fewer)
        assert e.time.wall_clock_days > 30 or not e.memory.fits


@pytest.mark.parametrize("args, deadline_days, gpus", [
    # no fixed global batch: a smaller run steps its optimizer more often, so one GPU's GPU-hours (51.2 k) are
    # more than 64's (42.2 k), and no count is ruled out by them
    (["llama2-7b", "--set", "training.global_batch_size=null", "--deadline", "30d"], 30, 64),
    # micro-batch 8 (chosen by the tuning) meets an hour on half the GPUs that micro-batch 1 needs (the README's)
    (["gpt2-small", "--set", "training.tokens=1e10", "--deadline", "1h"], 1 / 24, 16),
])
def test_deadline_finds_the_fewest_gpus_of_its_layout(run, args, deadline_days, gpus):
    """Every smaller count the layout runs on (above a node, whole nodes), with the chosen micro-batch and
    recomputation, misses the deadline or does not fit: estimated one by one, not by the planner's search."""
    option = json.loads(run("plan", *args, "--gpu", "h100-sxm", "--format", "json").stdout)[0]
    assert option["wall_clock_days"] <= deadline_days and option["gpus"] == gpus
    layout = {k: option["layout"][k] for k in ("tensor", "pipeline", "zero", "sequence_parallel")}
    spec = costplan.load_spec(args[0], [*args[2:3], f"training.micro_batch_size={option['micro_batch_size']}",
                                        f"training.recompute={option['recompute']}"])
    step, node = layout["tensor"] * layout["pipeline"], hardware.resolve("h100-sxm").node_size
    for count in (c for c in range(step, option["gpus"], step) if c < node or c % node == 0):
        e = costplan.estimate(layouts.variant(spec, "h100-sxm", count, layout))
        assert e.time.wall_clock_days > deadline_days or not e.memory.fits, count


def test_deadline_says_which_of_the_specs_hardware_settings_it_took(run):
    # the spec's hardware.mfu and price are its own GPU type's; another type is timed by the step model at its
    # catalogue price, and the row says so
    data = json.loads(run("plan", "llama2-7b", "--deadline", "30d", "--gpu", "h100-sxm", "--gpu", "a100-80gb",
                          "--set", "hardware.mfu=0.4", "--set", "hardware.usd_per_gpu_hour=1.0",
                          "--format", "json").stdout)
    own, other = (next(o for o in data if o["gpu"] == key) for key in ("a100-80gb", "h100-sxm"))
    assert (own["mfu"], own["mfu_source"]) == (0.4, "hardware.mfu")
    assert own["note"].startswith("at 40.0% MFU (hardware.mfu); ")      # the table's note, runner-up included
    assert own["cost_usd"] == pytest.approx(own["gpu_hours"] * 1.0)
    assert other["mfu"] is None and other["note"].startswith("the spec's hardware.mfu, usd_per_gpu_hour are its "
                                                             "a100-80gb's, not taken here; ")
    assert other["cost_usd"] == pytest.approx(other["gpu_hours"] * hardware.resolve("h100-sxm").usd_per_gpu_hour)
    forced = json.loads(run("plan", "llama2-7b", "--deadline", "30d", "--gpu", "h100-sxm", "--mfu", "0.5",
                            "--format", "json").stdout)[0]
    assert (forced["mfu"], forced["mfu_source"]) == (0.5, "--mfu")


def test_a_gpu_type_named_twice_is_one_row(run):
    data = json.loads(run("plan", "gpt2-small", "--deadline", "1d", "--gpu", "a100-80gb", "--gpu", "a100-80gb",
                          "--format", "json").stdout)
    assert [o["gpu"] for o in data] == ["a100-80gb"]


def test_deadline_table(run):
    out = run("plan", "gpt2-small", "--deadline", "12h", "--gpu", "a100-80gb").stdout
    assert out.splitlines()[0].split()[:3] == ["GPU", "GPUs", "tensor"]
    assert "a100-80gb" in out and "ZeRO" not in out          # one GPU: nothing to shard
    out = run("plan", "llama2-7b", "--deadline", "30d", "--gpu", "a100-80gb").stdout
    assert "1 × 1 × 256, ZeRO 3" in out


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("args, lines", [
    (["--budget", "-5"], ["Error: --budget: must be greater than 0, got -5"]),
    (["--budget", "0"], ["Error: --budget: must be greater than 0, got 0"]),
    (["--budget", "lots"], ["Error: --budget: expected a number, got 'lots'"]),
    (["--budget", "1e21", "--unit", "hours"],
     ["Error: --unit: 'hours' is not one of flops, gpu-hours, usd (did you mean 'gpu-hours'?)"]),
    (["--budget", "-1", "--unit", "euro", "--gpus", "0"],
     ["Error: --budget: must be greater than 0, got -1", "Error: --unit: 'euro' is not one of flops, gpu-hours, usd",
      "Error: --gpus: must be greater than 0, got 0"]),
    (["gpt2-small", "--deadline", "30x"],
     ["Error: --deadline: '30x' is not a duration; write a number and a unit, e.g. 30d, 12h, 2w, 90min or 1y"]),
    (["gpt2-small", "--deadline", "soon"],
     ["Error: --deadline: 'soon' is not a duration; write a number and a unit, e.g. 30d, 12h, 2w, 90min or 1y"]),
    (["gpt2-small", "--deadline", "0d"], ["Error: --deadline: must be longer than zero, got '0d'"]),
    (["gpt2-small", "--deadline", "3m"],     # months or minutes: neither is guessed
     ["Error: --deadline: '3m' is not a duration; write a number and a unit, e.g. 30d, 12h, 2w, 90min or 1y"]),
    ([], ["Error: plan needs --budget AMOUNT, or SPEC and --deadline DURATION"]),
    (["gpt2-small"], ["Error: with SPEC, plan needs --deadline DURATION (and no --budget)"]),
    (["gpt2-small", "--deadline", "1d", "--gpu", "h100"],
     ["Error: --gpu: unknown GPU 'h100' (did you mean 'h100-sxm'?); `costplan hardware` lists the catalogue, or "
      "give a path to a hardware YAML file"]),
    (["--budget", "1e22", "--gpu", "h100"],
     ["Error: --gpu: unknown GPU 'h100' (did you mean 'h100-sxm'?); `costplan hardware` lists the catalogue, or "
      "give a path to a hardware YAML file"]),
    (["gpt2-small", "--deadline", "-1d"], ["Error: --deadline: must be longer than zero, got '-1d'"]),
])
def test_bad_plan_input(run, args, lines):
    assert errors(run("plan", *args)) == lines


@pytest.mark.parametrize("preset", ["gpt2-small", "mixtral-8x7b", "deepseek-v3"])
def test_every_layout_the_planner_tries_is_a_valid_spec(preset):
    # The planner's grid and spec validation share the divisibility rule: each layout tried must validate, and a
    # layout the grid leaves out (a tensor degree not dividing the heads) must not.
    spec = costplan.load_spec(preset)
    tried = layouts.grid(spec)
    assert tried
    for layout in tried:
        t, p = layout["tensor"], layout["pipeline"]
        experts = [f"parallelism.expert_tensor={layout['expert_tensor']}"] if "expert_tensor" in layout else []
        costplan.load_spec(preset, [f"hardware.count={8 * t * p}", f"parallelism.tensor={t}",
                                    f"parallelism.pipeline={p}", f"parallelism.sequence_parallel={t > 1}",
                                    *experts])
    with pytest.raises(costplan.SpecError, match="does not divide model.n_heads"):
        costplan.load_spec(preset, ["hardware.count=7", "parallelism.tensor=7"])


def test_deadline_tunes_micro_batch_and_recompute_and_names_the_runner_up(run):
    data = json.loads(run("plan", "llama2-7b", "--deadline", "30d", "--gpu", "a100-80gb", "--format",
                          "json").stdout)[0]
    assert data["micro_batch_size"] in (1, 2, 4, 8) and data["recompute"] in ("none", "selective", "full")
    assert data["cost_usd"] <= data["untuned_cost_usd"]
    # the runner-up is priced with its own tuning too: no cheaper at as few GPUs, or it would have been chosen
    runner = data["runner_up"]
    assert runner["gpus"] > data["gpus"] or runner["cost_usd"] >= data["cost_usd"]
    # the option prices as the estimate of the same spec with that layout, micro-batch and recomputation; and so
    # does the runner-up, at the micro-batch and recomputation it names (it had not been reproducible from what
    # was printed)
    for layout, settled in ((data["layout"], data), (runner, runner)):
        spec = costplan.load_spec("llama2-7b", [
            "hardware.gpu=a100-80gb", f"hardware.count={settled['gpus']}", f"parallelism.tensor={layout['tensor']}",
            f"parallelism.pipeline={layout['pipeline']}", f"parallelism.zero={layout['zero']}",
            f"parallelism.sequence_parallel={str(layout['sequence_parallel']).lower()}",
            f"training.micro_batch_size={settled['micro_batch_size']}", f"training.recompute={settled['recompute']}"])
        assert costplan.estimate(spec).time.cost_usd == pytest.approx(settled["cost_usd"])
    out = run("plan", "llama2-7b", "--deadline", "30d", "--gpu", "a100-80gb").stdout
    assert f"at micro-batch {runner['micro_batch_size']}, recompute {runner['recompute']}: $" in out


def test_deadline_note_says_when_the_runner_up_is_cheaper_on_more_gpus():
    # The fewest GPUs are chosen, not the cheapest run: where the runner-up, on more GPUs, would cost less, the
    # note says so; where it costs more, it does not.
    from costplan.tables.plan import why
    chosen = dict(gpu="h100-sxm", gpus=64, layout={"tensor": 2, "pipeline": 1, "data": 32, "zero": 1},
                  memory_per_gpu=1.0, gpu_memory=2.0, gpu_memory_stated=2.0, wall_clock_days=1.0, gpu_hours=1536.0,
                  cost_usd=4530.0,
                  micro_batch_size=1, recompute="none", untuned_cost_usd=4530.0)
    settled = {"micro_batch_size": 2, "recompute": "selective", "recompute_layers": None}
    for cost, said in ((4000.0, True), (5000.0, False)):
        runner_up = {"tensor": 1, "pipeline": 1, "zero": 3, "data": 128, "gpus": 128, "cost_usd": cost, **settled}
        note = why(planner.Option(**chosen, runner_up=runner_up))
        assert note.startswith("runner-up 1 × 1 × 128, ZeRO 3 on 128 at micro-batch 2, recompute selective: $")
        assert note.endswith("(cheaper, on more GPUs)") == said
    # a runner-up names its experts' split as the chosen layout's column does: the expert degree, and an expert
    # tensor degree other than its tensor degree
    moe = {**chosen, "layout": {**chosen["layout"], "expert": 8, "expert_tensor": 2}}
    runner_up = {"tensor": 2, "pipeline": 1, "zero": 1, "data": 32, "gpus": 64, "cost_usd": 5000.0,
                 "expert": 8, "expert_tensor": 1, **settled}
    assert why(planner.Option(**moe, runner_up=runner_up)).startswith(
        "runner-up 2 × 1 × 32, expert 8, expert tensor 1, ZeRO 1 on 64")


def test_deadline_tries_per_op_checkpointing_where_it_is_modelled(run):
    # Llama 2 13B on H100 PCIe in 30 days, without tensor parallelism: torchtitan's per-op checkpointing lets
    # micro-batch 4 fit (where none does not), and the planner prices it beside every other choice on that layout;
    # micro-batch 1 without recomputation is a few percent cheaper (it was the other way round while the H100's
    # GEMMs ran at their burst rate), which the loop below checks one by one.
    data = json.loads(run("plan", "llama2-13b", "--deadline", "30d", "--gpu", "h100-pcie", "--format",
                          "json").stdout)[0]
    lay = data["layout"]
    assert lay["tensor"] == 1
    base = ["hardware.gpu=h100-pcie", f"hardware.count={data['gpus']}", f"parallelism.pipeline={lay['pipeline']}",
            f"parallelism.zero={lay['zero']}"]
    fits = {}
    for micro in (1, 2, 4):          # 8 does not divide the preset's global batch over 256 ranks
        for recompute in ("none", "selective", "full", "selective_op"):
            e = costplan.estimate(costplan.load_spec("llama2-13b", [
                *base, f"training.micro_batch_size={micro}", f"training.recompute={recompute}"]))
            if e.memory.fits and e.time.wall_clock_days <= 30:
                assert e.time.cost_usd >= data["cost_usd"] * (1 - 1e-12), (micro, recompute)
    # on ZeRO 2's sharded gradients, per-op checkpointing is what lets micro-batch 4 fit
    for recompute in ("none", "selective", "selective_op"):
        e = costplan.estimate(costplan.load_spec("llama2-13b", [
            *base[:3], "parallelism.zero=2", "training.micro_batch_size=4", f"training.recompute={recompute}"]))
        fits[4, recompute] = e.memory.fits
    assert fits[4, "selective_op"] and not fits[4, "none"] and not fits[4, "selective"]
    # Not tried where it is not modelled: with tensor parallelism, for MoE, for biased matmuls.
    llama = costplan.load_spec("llama2-13b", ["hardware.count=8"])
    assert ("selective_op", None) in planner._recompute_choices(llama)
    for preset, sets in (("llama2-13b", ["hardware.count=8", "parallelism.tensor=2"]),
                         ("mixtral-8x7b", ["hardware.count=8"]), ("gpt2-small", ["hardware.count=8"])):
        choices = planner._recompute_choices(costplan.load_spec(preset, sets))
        assert ("selective_op", None) not in choices and ("none", None) in choices, preset


def test_deadline_tries_recomputing_half_of_each_stage(run):
    # Llama 2 70B on 512 H100s of ZeRO 3 alone (the spec's own layout) with full recomputation asked for:
    # recomputing the first 40 of each stage's 80 layers fits and costs less than recomputing all of them, and the
    # note says so. (With biased q, k, v projections, as Qwen's, so that per-op checkpointing, which is cheaper
    # still here, is not among the choices.)
    args = ["plan", "llama2-70b", "--deadline", "60d", "--gpu", "h100-sxm", "--set", "training.recompute=full",
            "--set", "model.qkv_bias=true", "--set", "parallelism.tensor=1", "--set", "parallelism.pipeline=1",
            "--set", "parallelism.zero=3", "--set", "hardware.count=512"]
    data = json.loads(run(*args, "--format", "json").stdout)[0]
    assert (data["recompute"], data["recompute_layers"]) == ("full", 40)
    lay = data["layout"]
    sets = ["hardware.gpu=h100-sxm", f"hardware.count={data['gpus']}", f"parallelism.tensor={lay['tensor']}",
            f"parallelism.pipeline={lay['pipeline']}", f"parallelism.zero={lay['zero']}",
            f"parallelism.sequence_parallel={str(lay['sequence_parallel']).lower()}",
            f"training.micro_batch_size={data['micro_batch_size']}", "training.recompute=full", "model.qkv_bias=true"]
    half = costplan.estimate(costplan.load_spec("llama2-70b", [*sets, "training.recompute_layers=40"]))
    every = costplan.estimate(costplan.load_spec("llama2-70b", sets))
    assert half.time.cost_usd == pytest.approx(data["cost_usd"]) and half.time.cost_usd < every.time.cost_usd
    assert half.memory.fits
    assert "recompute full of the first 40 layers of each stage" in run(*args).stdout


def test_deadline_counts_the_context_ranks_of_the_spec_layout(run):
    # A spec's own section with context parallelism: every GPU count tried is whole replicas of t × c × p
    # (counting t × p only tried one GPU for a replica of two, and crashed).
    data = json.loads(run("plan", "gpt2-small", "--deadline", "30d", "--gpu", "h100-sxm", "--set",
                          "parallelism.context=2", "--set", "hardware.count=2", "--format", "json").stdout)[0]
    lay = data["layout"]
    assert lay["context"] == 2
    assert data["gpus"] == lay["data"] * lay["tensor"] * lay["pipeline"] * lay["context"] == 2


def test_deadline_keeps_the_spec_layouts_folded_expert_ranks(run):
    # Mixtral on a spec layout of t = 2 with 8 expert ranks of whole experts: the 8 × 1 expert ranks fold into
    # 2 × d tensor and data ranks, so any d that is a multiple of 4 is a layout (8 would be needed unfolded).
    data = json.loads(run("plan", "mixtral-8x7b", "--deadline", "365d", "--gpu", "h100-sxm", "--set",
                          "parallelism.tensor=2", "--set", "parallelism.sequence_parallel=true", "--set",
                          "parallelism.expert=8", "--set", "parallelism.expert_tensor=1", "--set",
                          "parallelism.zero=1", "--set", "hardware.count=8", "--set", "training.seq_len=4096",
                          "--format", "json").stdout)[0]
    lay = data["layout"]
    assert (lay["tensor"], lay["expert"], lay["expert_tensor"]) == (2, 8, 1)
    assert lay["data"] % 4 == 0 and data["gpus"] == 2 * lay["pipeline"] * lay["data"]
    degrees = planner._data_degrees(costplan.load_spec("mixtral-8x7b"), {"tensor": 2, "pipeline": 1, "expert": 8,
                                                                         "expert_tensor": 1}, 8)
    assert list(degrees)[:3] == [4, 8, 12]


@pytest.mark.parametrize("sets", [["parallelism.tensor=8", "hardware.count=12"],
                                  ["parallelism.tensor=8", "parallelism.data=3", "hardware.count=16"],
                                  ["parallelism.tensor=2", "parallelism.expert=8", "parallelism.expert_tensor=1",
                                   "parallelism.sequence_parallel=true", "parallelism.zero=1", "hardware.count=2"]])
def test_deadline_does_not_check_a_spec_layout_against_the_count_it_searches(run, sets):
    # plan --deadline chooses the GPU count (and so the data degree): a section whose degrees do not tile the
    # spec's hardware.count, or whose data degree disagrees with it, is still planned, on whole replicas
    # (folded expert ranks included). The same section is refused where the count is used: estimate.
    model = "mixtral-8x7b" if any("expert" in s for s in sets) else "llama3-8b"
    args = [a for s in sets for a in ("--set", s)]
    assert run("estimate", model, *args).exit_code == 2
    result = run("plan", model, "--deadline", "365d", "--gpu", "h100-sxm", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)[0]
    lay = data["layout"]
    assert data["gpus"] == lay["data"] * lay["tensor"] * lay["pipeline"] * lay["context"]
    assert lay["tensor"] == int(sets[0].split("=")[1])
    if lay.get("expert", 1) > 1:
        assert lay["data"] % 4 == 0     # 8 whole-expert ranks folded into 2 × d tensor and data ranks


def test_a_searched_spec_keeps_its_pinned_micro_batches_and_its_errors(run, tmp_path):
    # A fixed batch of 1024 in 256 micro-batches a step of one sequence leaves 4 data ranks: the section is valid
    # there, whatever hardware.count says (it was refused, checked at one data rank).
    pinned = ["--set", "training.global_batch_size=1024", "--set", "parallelism.tensor=8", "--set",
              "parallelism.pipeline=2", "--set", "parallelism.micro_batches=256", "--set", "hardware.count=8"]
    assert run("plan", "llama3-8b", "--deadline", "365d", "--gpu", "h100-sxm", *pinned).exit_code in (0, 1)
    # values that are not valid are reported, not replaced by the search's
    spec = tmp_path / "bad.yaml"
    spec.write_text("model: {vocab_size: 1000, d_model: 64, n_layers: 4, n_heads: 4, max_seq_len: 128}\n"
                    "hardware: {count: -1}\nparallelism: {tensor: 2, data: -3}\n")
    assert errors(run("plan", str(spec), "--deadline", "1d", "--gpu", "l4")) == [
        f"Error: {spec}: hardware.count: must be greater than 0, got -1",
        f"Error: {spec}: parallelism.data: must be greater than 0, got -3"]


def test_deadline_chooses_the_layout_cheapest_once_each_is_tuned(run):
    # Llama 2 70B on H100s in 60 days: at 512 GPUs, ZeRO 3 alone is cheapest at the spec's full recomputation,
    # but tuned without recomputation tensor 2 on ZeRO 3 is cheaper (tensor 4 on ZeRO 2, the runner-up, within
    # 0.2%), and so than each of these layouts at the spec's recomputation; the runner-up is tuned alike
    data = json.loads(run("plan", "llama2-70b", "--deadline", "60d", "--gpu", "h100-sxm", "--set",
                          "training.recompute=full", "--set", "model.qkv_bias=true", "--format", "json").stdout)[0]
    assert (data["gpus"], data["layout"]["tensor"], data["layout"]["zero"], data["recompute"]) == (512, 2, 3, "none")
    for tensor, zero in ((1, 3), (2, 3), (4, 2), (4, 3)):
        same = json.loads(run("plan", "llama2-70b", "--deadline", "60d", "--gpu", "h100-sxm", "--set",
                              "training.recompute=full", "--set", "model.qkv_bias=true", "--set",
                              f"parallelism.tensor={tensor}", "--set", "parallelism.pipeline=1", "--set",
                              f"parallelism.zero={zero}", "--set", "hardware.count=512", "--format", "json").stdout)[0]
        assert same["cost_usd"] > data["cost_usd"]
    assert data["runner_up"]["cost_usd"] >= data["cost_usd"]


def test_deadline_hint_for_another_precision_unsets_fp8_inputs(run):
    # fp8 saved inputs need fp8 training: the hint to change precision says to turn them off too, and following it
    # gives a spec that plans
    spec = str(ROOT / "specs" / "ci" / "fp8-inputs.yaml")
    data = json.loads(run("plan", spec, "--deadline", "30d", "--gpu", "a100-80gb", "--format", "json").stdout)
    assert data[0]["note"] == ("no fp8 peak FLOP/s (it has fp32, tf32, fp16, bf16): --set training.precision=... "
                               "--set training.fp8_saved_inputs=false")
    followed = run("plan", spec, "--deadline", "30d", "--gpu", "a100-80gb", "--set", "training.precision=bf16",
                   "--set", "training.fp8_saved_inputs=false", "--format", "json")
    assert followed.exit_code == 0, followed.stderr
    assert json.loads(followed.stdout)[0]["gpus"]


def test_deadline_finds_layouts_that_fit_only_with_recomputation(run):
    # Llama 3 70B on L4s (24 GiB) in a year: without recomputation no layout of few GPUs fits; with one sequence a
    # micro-batch and full recomputation ZeRO 3 does. The plan takes that, says the spec's own settings do not
    # meet the deadline there, and the run it reports fits and finishes in time; the spec's own settings on
    # the same GPUs do not.
    data = json.loads(run("plan", "llama3-70b", "--deadline", "365d", "--gpu", "l4", "--format", "json").stdout)[0]
    assert data["recompute"] == "full" and data["untuned_cost_usd"] is None
    assert data["gpus"] == 3544          # the README's figure (the 22.49 GiB an L4 reports of its 24)
    lay = data["layout"]
    fixed = ["hardware.gpu=l4", f"hardware.count={data['gpus']}", f"parallelism.tensor={lay['tensor']}",
             f"parallelism.pipeline={lay['pipeline']}", f"parallelism.zero={lay['zero']}",
             f"parallelism.sequence_parallel={str(lay['sequence_parallel']).lower()}"]
    chosen = costplan.estimate(costplan.load_spec("llama3-70b", [
        *fixed, f"training.micro_batch_size={data['micro_batch_size']}", "training.recompute=full"]))
    assert chosen.memory.fits and chosen.time.wall_clock_days <= 365
    assert chosen.time.cost_usd == pytest.approx(data["cost_usd"])
    own = costplan.estimate(costplan.load_spec("llama3-70b", fixed))
    assert not own.memory.fits and data["untuned_fits"] is False
    table = run("plan", "llama3-70b", "--deadline", "365d", "--gpu", "l4").stdout
    # the note names the constraint the spec's own settings fail: memory (it had said the deadline)
    assert "recompute full (the spec's own do not fit here)" in table


def test_the_runner_up_is_another_layout(run):
    # With the spec's own layout the grid holds one layout: there is no runner-up, not the same layout again on
    # the count it needed before its micro-batch and recomputation were tuned.
    data = json.loads(run("plan", "llama3-70b", "--deadline", "90d", "--gpu", "h100-sxm", "--set",
                          "parallelism.tensor=8", "--set", "parallelism.pipeline=4", "--set",
                          "parallelism.sequence_parallel=true", "--format", "json").stdout)[0]
    assert data["runner_up"] is None


def test_tuning_keeps_an_open_batchs_micro_batches():
    # Without a global batch a pipeline layout runs 4·p micro-batches a step (layouts.grid); trying another
    # micro-batch size or recomputation keeps them (one micro-batch a step would leave a 1F1B pipeline idle).
    spec = costplan.load_spec("llama3-70b", ["hardware.count=1920", "parallelism.tensor=4", "parallelism.pipeline=4",
                                             "parallelism.zero=1", "parallelism.sequence_parallel=true",
                                             "parallelism.micro_batches=16"])
    assert spec.training.global_batch_size is None
    assert planner._trained(spec, 2, "full", None).parallelism.micro_batches == 16


def test_deadline_counts_meet_it_with_any_micro_batch(run):
    # GPT-2 large on RTX 4090s within 3 hours, its batch of 512 fixed: 128 GPUs meet the deadline at micro-batch 4
    # (neither the spec's own nor one sequence a micro-batch does there); on 64, no micro-batch size and
    # recomputation the planner tries fits and finishes in time.
    data = json.loads(run("plan", "gpt2-large", "--deadline", "3h", "--gpu", "rtx-4090", "--format",
                          "json").stdout)[0]
    assert (data["gpus"], data["micro_batch_size"]) == (128, 4)
    lay = data["layout"]
    for micro in (1, 2, 4, 8):
        for recompute in ("none", "selective", "full"):
            e = costplan.estimate(costplan.load_spec("gpt2-large", [
                "hardware.gpu=rtx-4090", "hardware.count=64", f"parallelism.tensor={lay['tensor']}",
                f"parallelism.pipeline={lay['pipeline']}", f"parallelism.zero={lay['zero']}",
                f"training.micro_batch_size={micro}", f"training.recompute={recompute}"]))
            assert not e.memory.fits or e.time.wall_clock_days * 24 > 3


ONE_WAY = {"tensor": 1, "pipeline": 1, "sequence_parallel": False, "micro_batches": None}


@pytest.mark.parametrize("preset, gpu, count, layout, days", [
    ("llama3-70b", "rtx-4090", 3216, {**ONE_WAY, "zero": 3}, 365),   # only full recomputation at micro-batch 1 meets it
    ("llama3-70b", "rtx-4090", 2048, {**ONE_WAY, "zero": 3}, 365),   # it fits, too slowly
    ("llama3-70b", "l4", 3216, {**ONE_WAY, "zero": 3}, 365),      # nothing fits in an L4's 22.49 GiB
    ("llama3-70b", "a100-40gb", 1536, {"tensor": 4, "pipeline": 2, "zero": 1, "sequence_parallel": True,
                                       "micro_batches": 8}, 360),  # micro-batch 2 with full recomputation
    ("llama3-70b", "a100-40gb", 1536, {"tensor": 4, "pipeline": 2, "zero": 1, "sequence_parallel": True,
                                       "micro_batches": 8}, 400),  # micro-batch 1 or 2 with it: 2 is cheaper
    ("llama3-8b", "h100-sxm", 64, {**ONE_WAY, "zero": 1}, 365),   # nine settings, none the cheapest
    ("llama3-8b", "a100-40gb", 128, {"tensor": 2, "pipeline": 2, "zero": 1, "sequence_parallel": True,
                                     "micro_batches": 8}, 500),    # larger micro-batches fit only with recomputation
])
def test_the_pruned_search_finds_what_trying_every_setting_finds(preset, gpu, count, layout, days):
    # The planner skips recomputation where a micro-batch size runs too slowly without it, or fits without it
    # (recomputing only adds work): the layout meets the deadline on a count exactly where one of every micro-batch
    # size and recomputation it tries does, and tuning finds the cheapest of them.
    spec = costplan.load_spec(preset)
    laid = layouts.variant(spec, gpu, count, layout, None)
    every = [costplan.estimate(planner._trained(laid, micro, recompute, layers))
             for micro in planner._micro_batches(laid) for recompute, layers in planner._recompute_choices(laid)]
    meeting = [e for e in every if planner._meets(e, days * 24)]
    found = planner._meeting(spec, gpu, count, layout, days * 24, None)
    assert (found is not None) == bool(meeting)
    if found is not None:
        assert planner._meets(found, days * 24)
        tuned = planner._tune(laid, found, days * 24)
        assert tuned.time.cost_usd == min(e.time.cost_usd for e in meeting)


def test_a_search_over_several_gpu_types_says_how_far_it_is(run, monkeypatch, capsys):
    # Each GPU type reports as its search is in (the catalogue takes tens of seconds on two cores): on a terminal's
    # standard error, never on standard output, and not at all in a pipe.
    told = []
    options = planner.deadline_options(costplan.load_spec("gpt2-small"), 24.0, ["h100-sxm", "l4", "a100-80gb"],
                                       progress=lambda gpu, done, total: told.append((gpu, done, total)))
    assert sorted(gpu for gpu, _, _ in told) == sorted(o.gpu for o in options)
    assert [(done, total) for _, done, total in told] == [(1, 3), (2, 3), (3, 3)]
    args = ("plan", "gpt2-small", "--deadline", "1d", "--gpu", "h100-sxm", "--gpu", "l4")
    assert run(*args).stderr == ""              # a pipe (the test runner's) gets no progress
    from costplan.cli import plan as plan_command

    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    progress = plan_command.progress_lines()
    progress("l4", 2, 14)
    assert "plan: l4 searched, 2 of 14 GPU types (" in capsys.readouterr().err
    progress("l4", 1, 1)                        # one GPU type: nothing to count
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("text, hours", [("90min", 1.5), ("30 minutes", 0.5), ("12h", 12), ("1.5 days", 36),
                                         ("2w", 336), ("1y", 8760), ("2 years", 17520), ("45 mins", 0.75),
                                         ("1 yr", 8760)])
def test_deadline_units(text, hours):
    from costplan.validation import parse_duration

    assert parse_duration("--deadline", text) == pytest.approx(hours)



def test_an_open_batch_past_any_published_runs_is_said(run):
    # Llama 3 8B within an hour takes so many data ranks that its open batch (one sequence of 8,192 tokens a rank)
    # passes DeepSeek-V3's 15,360 × 4,096 tokens, the largest published batch: the plan says so, and how to fix it
    data = json.loads(run("plan", "llama3-8b", "--deadline", "1h", "--gpu", "h100-sxm", "--format", "json").stdout)[0]
    tokens = data["oversized_batch"]
    assert tokens > 15_360 * 4_096 and tokens % 8192 == 0 and f"{tokens / 1e9:.1f}" == "3.2"   # the README's
    assert data["note"].endswith(", DeepSeek-V3's): set training.global_batch_size")
    # a fixed batch is its author's; a month needs a batch no one would question
    fixed = json.loads(run("plan", "llama3-8b", "--deadline", "1h", "--gpu", "h100-sxm", "--set",
                           "training.global_batch_size=100000", "--format", "json").stdout)[0]
    assert fixed["oversized_batch"] is None
    month = json.loads(run("plan", "llama3-8b", "--deadline", "30d", "--gpu", "h100-sxm", "--format",
                           "json").stdout)[0]
    assert month["oversized_batch"] is None and "open batch" not in month["note"]


def test_a_proposal_on_so_many_gpus_that_its_batch_is_past_any_published_runs_says_so(run):
    # 1e24 FLOPs on 100,000 GPUs: the proposed spec fixes no batch, so one 2,048-token sequence a GPU makes 204.8 M
    # tokens a step; on 1,000 GPUs it is 2 M, and nothing is said
    warned = run("plan", "--budget", "1e24", "--gpus", "100000").stderr
    assert "warning: the proposed run has an open batch of 204.8 M tokens a step, past the largest published" in warned
    assert "open batch" not in run("plan", "--budget", "1e24", "--gpus", "1000").stderr
    data = json.loads(run("plan", "--budget", "1e24", "--gpus", "100000", "--format", "json").stdout)
    assert data["oversized_batch"] == 100_000 * 2048


@pytest.mark.parametrize("preset, gpu, days", [("llama2-7b", "a100-80gb", 5), ("mixtral-8x7b", "h100-sxm", 20)])
def test_a_search_sharing_its_costs_answers_as_separate_estimates_do(preset, gpu, days, monkeypatch):
    # one GPU type's search shares component costs and layer times across its estimates (memo.shared): every
    # memo key must name all a result depends on, or a layout would be priced with another's figures
    import contextlib
    spec = costplan.load_spec(preset)
    shared = planner.fewest_gpus(spec, gpu, days * 24)
    monkeypatch.setattr(planner, "shared_components", contextlib.nullcontext)
    assert planner.fewest_gpus(spec, gpu, days * 24) == shared
    assert shared.gpus is not None


@pytest.mark.parametrize("batch, zero", [(256, 1), (32, 2)])
def test_at_a_fixed_mfu_the_plan_lays_out_its_gpus_as_estimate_does(tmp_path, batch, zero):
    # A fixed MFU times every layout alike, so cost ties across layouts: the plan must then choose as estimate
    # does on the same GPUs (the fewest model-parallel GPUs, then the lowest ZeRO stage, but not ZeRO 1 on a step
    # of one micro-batch: 32 sequences on 32 ranks), not the layout holding least memory (tensor 4 × pipeline 8
    # for a 1.2B model), which estimate would never print for those GPUs.
    path = tmp_path / "small.yaml"
    path.write_text("name: small\nmodel: {n_layers: 24, d_model: 2048, n_heads: 16, n_kv_heads: 4, d_ff: 5632, "
                    "vocab_size: 32000, max_seq_len: 4096, mlp: swiglu, norm: rmsnorm, position: rope}\n"
                    f"training: {{tokens: 2e10, seq_len: 4096, global_batch_size: {batch}}}\n")
    spec = costplan.load_spec(str(path))
    option = planner.fewest_gpus(spec, "h100-sxm", 6, mfu=0.4)
    assert (option.gpus, option.layout["tensor"], option.layout["pipeline"], option.layout["zero"]) == (32, 1, 1, zero)
    alone = costplan.estimate(costplan.load_spec(str(path), ["hardware.gpu=h100-sxm", "hardware.count=32",
                                                             "hardware.mfu=0.4"]))
    assert planner.layout_of(alone) == option.layout
    assert option.runner_up["cost_usd"] == option.cost_usd       # a tie, said as one


def test_a_gpu_type_timed_on_another_devices_curves_says_so(run):
    # no kernel benchmark of the MI300X or of the B200's attention was read: their rows rank on the H100's curves
    data = {o["gpu"]: o for o in json.loads(run("plan", "llama2-7b", "--deadline", "30d", "--gpu", "mi300x", "--gpu",
                                                "b200", "--gpu", "h100-sxm", "--format", "json").stdout)}
    assert data["mi300x"]["lenders"] == {"GEMM": "h100-sxm", "attention": "h100-sxm"}
    assert data["b200"]["lenders"] == {"attention": "h100-sxm"}
    assert data["h100-sxm"]["lenders"] == {}
    assert data["mi300x"]["note"].startswith("timed on h100-sxm's kernel curves (none of its own read)")
    assert data["b200"]["note"].startswith("its attention timed on h100-sxm's curves (none of its own read)")
    fixed = json.loads(run("plan", "llama2-7b", "--deadline", "30d", "--gpu", "mi300x", "--mfu", "0.4", "--format",
                           "json").stdout)
    assert fixed[0]["lenders"] == {}        # a fixed MFU runs on no curves
    # a missed deadline's quickest run was timed on them too
    (missed,) = json.loads(run("plan", "llama2-7b", "--deadline", "1h", "--gpu", "mi300x", "--format", "json").stdout)
    assert missed["gpus"] is None and missed["lenders"] == {"GEMM": "h100-sxm", "attention": "h100-sxm"}
    assert "timed on h100-sxm's kernel curves (none of its own read)" in run("plan", "llama2-7b", "--deadline", "1h",
                                                                              "--gpu", "mi300x").stdout


def test_a_search_keeps_an_interleaved_pipeline_to_micro_batches_it_can_run(run):
    # The spec's own interleaved pipeline (2 stages × 2 chunks) with a batch of 32: on 64 GPUs (32 data ranks) a
    # step is one micro-batch, which interleaving cannot run (validation refuses it); the search had taken it as
    # meeting half a day. 16 data ranks run two micro-batches, the fewest interleaving takes, and miss it.
    S = ["--set", "training.tokens=2e10", "--set", "training.global_batch_size=32", "--set", "training.seq_len=4096",
         "--set", "parallelism.tensor=1", "--set", "parallelism.pipeline=2", "--set", "parallelism.virtual_stages=2",
         "--set", "parallelism.zero=1"]
    (option,) = json.loads(run("plan", "llama2-7b", *S, "--deadline", "0.5d", "--gpu", "h100-sxm", "--format",
                               "json").stdout)
    assert option["gpus"] is None
    assert (option["fastest"]["gpus"], option["fastest"]["data"]) == (32, 16)
    refused = run("estimate", "llama2-7b", *S, "--gpu", "h100-sxm", "--gpus", "64")
    assert "interleaving needs micro-batches (1) in multiples of pipeline (2)" in refused.stderr


def test_a_long_context_proposal_warns_that_the_law_sized_it_without_attention(run):
    # at 131,072 tokens attention is most of a 875 M model's FLOPs, which C = 6·N·D leaves out: the proposal had
    # been printed as compute-optimal without a word
    data = json.loads(run("plan", "--budget", "1e20", "--seq-len", "131072", "--format", "json").stdout)
    ratio = data["flops"] / (6 * data["params"] * data["tokens"])
    assert ratio > 10
    warned = run("plan", "--budget", "1e20", "--seq-len", "131072").stderr
    assert f"warning: at context 131,072 attention makes the proposal's FLOPs {ratio:.4g}x 6·N a token" in warned
    assert "attention makes" not in run("plan", "--budget", "1e20").stderr


def test_deadline_hint_for_another_precision_unsets_the_fp8_weight_cache(run):
    # the fp8 weight cache needs the fp8 linears' saved inputs: the hint turns both off, and following it plans
    spec = str(ROOT / "specs" / "ci" / "fp8-inputs.yaml")
    cache = ["--set", "training.fp8_weight_cache=true"]
    data = json.loads(run("plan", spec, "--deadline", "30d", "--gpu", "a100-80gb", *cache, "--format", "json").stdout)
    assert data[0]["note"] == ("no fp8 peak FLOP/s (it has fp32, tf32, fp16, bf16): --set training.precision=... "
                               "--set training.fp8_saved_inputs=false --set training.fp8_weight_cache=false")
    followed = run("plan", spec, "--deadline", "30d", "--gpu", "a100-80gb", *cache, "--set",
                   "training.precision=bf16", "--set", "training.fp8_saved_inputs=false", "--set",
                   "training.fp8_weight_cache=false", "--format", "json")
    assert followed.exit_code == 0, followed.stderr


def test_a_deadline_plan_says_when_its_pipeline_idles(run):
    # the spec's own tensor 8 × pipeline 4 with a global batch of 2048 sequences: the deadline takes 65,536 A100s,
    # one micro-batch a step through four stages; the note says what estimate warns of (it had said nothing)
    fixed = ["--set", "parallelism.tensor=8", "--set", "parallelism.pipeline=4", "--set",
             "parallelism.sequence_parallel=true", "--set", "training.global_batch_size=2048"]
    (option,) = json.loads(run("plan", "llama3-70b", "--deadline", "30d", "--gpu", "a100-80gb", *fixed,
                               "--format", "json").stdout)
    (e,) = json.loads(run("estimate", "llama3-70b", "--gpu", "a100-80gb", "--gpus", str(option["gpus"]), *fixed,
                          "--format", "json").stdout)
    assert option["micro_batches"] == e["parallelism"]["micro_batches"] == 1
    assert option["bubble_fraction"] == pytest.approx(e["parallelism"]["bubble_fraction"]) and \
        option["bubble_fraction"] > 0.5
    assert (f"the pipeline idles {100 * option['bubble_fraction']:.1f}% of each step: 1 micro-batch a step "
            "through 4 stages") in option["note"]


def test_a_gpu_type_without_the_specs_attention_kernel_is_a_row_not_an_error(run):
    # FlashAttention-3 tables exist for Hopper only: planning over other types too had stopped with an error
    # naming a GPU the user had not chosen; that type is a row saying why, and following its hint plans there
    spec = str(ROOT / "specs" / "annotated.yaml")
    args = ("plan", spec, "--deadline", "30d", "--gpu", "h100-sxm", "--gpu", "a100-80gb", "--set",
            "training.attention_kernel=flash3", "--format", "json")
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    h100, a100 = sorted(json.loads(result.stdout), key=lambda o: o["gpu"] != "h100-sxm")
    assert h100["gpus"] and a100["gpus"] is None
    assert a100["note"] == ("no flash3 attention tables (its curves measure flash2): "
                            "--set training.attention_kernel=fastest")
    followed = run("plan", spec, "--deadline", "30d", "--gpu", "a100-80gb", "--set",
                   "training.attention_kernel=fastest", "--format", "json")
    assert followed.exit_code == 0 and json.loads(followed.stdout)[0]["gpus"]
    # a model whose attention no FlashAttention kernel runs reads no attention tables: the type plans
    dense = run("plan", spec, "--deadline", "30d", "--gpu", "a100-80gb", "--set", "model.attention=dense", "--set",
                "training.attention_kernel=flash3", "--format", "json")
    assert dense.exit_code == 0 and json.loads(dense.stdout)[0]["gpus"], dense.stdout
    # an estimate on that type still refuses the kernel, naming the field
    refused = run("estimate", spec, "--gpu", "a100-80gb", "--set", "training.attention_kernel=flash3")
    assert refused.exit_code == 2 and refused.stderr.strip().endswith(
        "training.attention_kernel: hardware a100-80gb has no flash3 attention tables (its curves measure flash2)")
