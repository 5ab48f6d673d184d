"""Numbers people read: each formatter at its extremes, and the commands that print them, as exact text."""
from __future__ import annotations

import re

import json

import pytest

from costplan import report


@pytest.mark.parametrize("value, text", [
    (124_439_808, "124.4 M"), (6_738_415_616, "6.738 B"), (2e12, "2 T"), (999, "999"), (1, "1"), (0, "0"),
    (1e15, "1e15"), (1e18, "1e18"), (1.45e19, "1.45e19"),     # past trillions: no "Q", no "1000 Q"
    (0.5, "0.5"), (8.036e-9, "8.036e-9"),
])
def test_count(value, text):
    assert report.count(value) == text


@pytest.mark.parametrize("value, text", [
    (15.36e9, "15.36 GFLOP"), (92.17e21, "92.17 ZFLOP"), (1e24, "1 YFLOP"), (4.445e29, "4.445e29 FLOP"),
    (0, "0 FLOP"), (870, "870 FLOP"),
])
def test_flop(value, text):
    assert report.flop(value) == text


@pytest.mark.parametrize("value, text", [
    (0, "0 bytes"), (1, "1 byte"), (512, "512 bytes"), (1024, "1 KiB"), (2**30 * 31.5, "31.5 GiB"),
    (2**60, "1 EiB"), (2**70, "1.181e21 bytes"),
])
def test_size_never_writes_bytes_as_b(value, text):
    assert report.size(value) == text


@pytest.mark.parametrize("days, text", [
    (3.71, "3.71 days"), (1, "1 day"), (0.1753, "4.207 hours"), (1 / 24, "1 hour"), (0.01, "14.4 min"),
    (7.044e-11, "6.086 µs"), (1e-15, "0.0864 ns"), (1e-20, "8.64e-7 ns"), (1000, "2.738 years"),
    (1.649e12, "4.515e9 years"), (0, "0 s"),
])
def test_wall_clock(days, text):
    assert report.human(days, "days") == text


@pytest.mark.parametrize("seconds, text", [(3.191, "3.191 s"), (0.2527, "252.7 ms"), (1.725e-5, "17.25 µs"),
                                           (90, "1.5 min"), (0, "0 s")])
def test_seconds(seconds, text):
    assert report.seconds(seconds) == text


@pytest.mark.parametrize("hours, text", [(182_400, "182.4 k GPU-hours"), (1, "1 GPU-hour"),
                                         (231.8, "231.8 GPU-hours"), (0.5, "30 min of GPU time"),
                                         (1.69e-9, "6.084 µs of GPU time"), (0, "0 GPU-hours")])
def test_gpu_hours(hours, text):
    assert report.human(hours, "hours") == text


def test_a_value_rounding_up_to_the_next_prefix_takes_it():
    assert report.usd(999_999.99) == "$1 M" and report.count(999_960) == "1 M"
    assert report.flop(999.99e21) == "1 YFLOP" and report.size(2**20 - 0.5) == "1 MiB"
    assert report.count(999_940) == "999.9 k"


@pytest.mark.parametrize("value, text", [(237_100, "$237.1 k"), (5.47, "$5.47"), (0.01, "$0.01"),
                                         (0.0049, "< $0.01"), (1e-12, "< $0.01"), (0, "$0"),
                                         (51.45e12, "$51.45 T"), (3e16, "$3e16")])
def test_usd(value, text):
    assert report.usd(value) == text


@pytest.mark.parametrize("value, text", [(1.3, "1.30"), (0.01, "0.01"), (0.0001, "0.0001"), (2e-7, "2e-7"),
                                         (0, "0.00")])
def test_price_keeps_a_price_below_a_cent(value, text):
    assert report.price(value) == text


@pytest.mark.parametrize("value, text", [(0.45, "45.0%"), (0, "0.0%"), (3.95e-5, "0.0039%"),
                                         (1e-7, "1e-05%")])
def test_percent_never_rounds_a_nonzero_share_to_zero(value, text):
    assert report.percent(value) == text


@pytest.mark.parametrize("text, noun, expected", [("1", "GPU", "1 GPU"), ("2048", "GPU", "2048 GPUs"),
                                                  ("0", "token", "0 tokens"), ("1.5", "day", "1.5 days")])
def test_plural(text, noun, expected):
    assert report.plural(text, noun) == expected


@pytest.mark.parametrize("stage, data, text", [(2, 1, ""), (0, 8, ""), (2, 8, "ZeRO 2"), (3, 2, "ZeRO 3")])
def test_zero_stage_named_only_with_something_to_shard(stage, data, text):
    assert report.zero_stage(stage, data) == text


# ---------------------------------------------------------------------------------------------- commands
def rows(out: str, item: str) -> str:
    """The first line of a table that holds `item` as whole words, its spaces collapsed."""
    found = [" ".join(row.split()) for row in out.splitlines() if f" {item} " in f" {' '.join(row.split())} "]
    assert found, (item, out)
    return found[0]


def test_one_token_on_one_gpu(run):
    out = run("estimate", "gpt2-small", "--tokens", "1", "--gpus", "1", "--mfu", "0.45").stdout
    assert out.splitlines()[0] == ("gpt2-small: 124.4 M parameters, 1 token, 1 × NVIDIA A100 80GB SXM "
                                   "(bf16, adamw, recompute none)")
    assert rows(out, "training total").endswith("854.4 MFLOP 1 token, 8.036e-9 per parameter")
    # 854.4 MFLOP / (312 TFLOP/s × 0.45) = 6.086 µs; one token of a step of 512 sequences of 1,024
    # a whole step, its token's share priced, as the note says
    assert rows(out, "GPU-hours") == ("GPU-hours 6.086 µs of GPU time 1 step, the last 1.907e-6 of a batch, timed at "
                                      "that share of a step; training steps only: no failures, restarts, checkpoints "
                                      "or evaluation")
    assert rows(out, "wall clock") == "wall clock 6.086 µs on 1 GPU"
    assert rows(out, "cost").startswith("cost < $0.01 at $1.30 per GPU-hour: specialty-cloud on-demand range")
    assert rows(out, "norms") == "norms 38.4 k 0.031%"


def test_most_tokens_accepted(run):
    out = run("estimate", "llama2-70b", "--tokens", "1e18", "--gpus", "1", "--mfu", "0.01").stdout
    assert out.startswith("llama2-70b: 68.98 B parameters, 1e18 tokens, 1 × ")
    assert rows(out, "training total") == "training total 4.445e29 FLOP 1e18 tokens, 1.45e7 per parameter"
    assert rows(out, "wall clock") == "wall clock 4.514e9 years on 1 GPU"
    assert rows(out, "tokens per parameter").startswith("tokens per parameter 1.45e7 ")


def test_a_price_below_a_cent(run):
    out = run("estimate", "gpt2-small", "--mfu", "0.45", "--set", "hardware.usd_per_gpu_hour=0.0001").stdout
    assert rows(out, "cost") == "cost < $0.01 at $0.0001 per GPU-hour: hardware.usd_per_gpu_hour"   # its source
    assert rows(out, "wall clock") == "wall clock 4.207 hours on 1 GPU"


def test_no_zero_stage_on_one_gpu(run):
    out = run("estimate", "gpt2-small", "--set", "parallelism.zero=2").stdout
    assert rows(out, "tensor × pipeline × data") == ("parallelism tensor × pipeline × data 1 × 1 × 1 "
                                                     "512 micro-batches per step")
    out = run("plan", "gpt2-small", "--deadline", "12h", "--gpu", "a100-80gb", "--set", "hardware.mfu=0.45").stdout
    # hardware.mfu times every layout alike, so the two-GPU runner-up costs the same
    assert rows(out, "a100-80gb") == ("a100-80gb 1 1 × 1 × 1 2.708 GiB of 79.14 GiB 4.207 hours 4.207 $5.47 "
                                      "at 45.0% MFU (hardware.mfu); runner-up 2 × 1 × 1, SP on 2 at micro-batch 1, "
                                      "recompute none: $5.47")


def test_parallel_notes_use_the_time_formatter(run):
    out = run("estimate", "llama2-7b", "--gpus", "64", "--set", "parallelism.tensor=2",
              "--set", "parallelism.pipeline=2", "--set", "parallelism.zero=1").stdout
    assert rows(out, "tensor × pipeline × data").endswith("2 × 2 × 16 ZeRO 1, 64 micro-batches per step")
    # 2 · 15/16 of the 3.37 B parameters each stage holds per tensor rank, in bf16; times in the time formatter
    assert re.fullmatch(r"data-parallel traffic per step 5\.884 GiB \d+(\.\d+)? ms on the wire, "
                        r"\d+(\.\d+)? (s|ms|µs) exposed, \d+(\.\d+)? (s|ms|µs) slowing the compute beside it",
                        rows(out, "data-parallel traffic per step"))
    assert re.fullmatch(r"time step time \d+(\.\d+)? s 1024 sequences of 4096; step model "
                        r"\(data/kernels\.yaml, a100-80gb\)", rows(out, "step time"))


def test_moe_default_tokens_follow_active_parameters(run):
    # 20 tokens per active parameter, as the scaling row counts them: with top_k fixed, more experts add
    # parameters a token never touches, and the default tokens move only by the router's few weights.
    tokens, totals = [], []
    for n in (2, 8, 64):
        e = json.loads(run("estimate", "mixtral-8x7b", "--set", f"model.moe.n_experts={n}", "--format",
                           "json").stdout)[0]
        assert e["assumptions"]["tokens"] == 20 * e["params"]["active"]
        assert e["scaling"]["tokens_per_param"] == 20
        tokens.append(e["assumptions"]["tokens"])
        totals.append(e["params"]["total"])
    assert totals[2] > 8 * totals[0]                                  # 64 experts: over 8 × the parameters,
    assert max(tokens) / min(tokens) < 1.002                          # the same training run
    assert tokens[1] == 20 * 12_879_925_248                           # Mixtral's 12.9B active, not 46.7B
    result = run("estimate", "mixtral-8x7b")
    assert "assuming 20 tokens per active parameter" in result.stderr
    assert rows(result.stdout, "training total").endswith("257.6 B tokens, 20 per active parameter")


# ---------------------------------------------------------------------------------------------- render
TABLE = report.Table(
    [report.Block(["name", "parameters"], [["a", "1.5 k"], ["b", "2 M"]], title="Two specs", footer="the end")],
    [{"name": "a", "parameters": 1500, "extra": {"x": 1}}, {"name": "b", "parameters": 2_000_000}])


def test_render_table_and_markdown():
    assert report.render(TABLE, "table") == ("Two specs\nname    parameters\n------  ------------\na       1.5 k\n"
                                             "b       2 M\n\nthe end")
    assert report.render(TABLE, "markdown") == ("### Two specs\n\n| name   | parameters   |\n"
                                                "|--------|--------------|\n| a      | 1.5 k        |\n"
                                                "| b      | 2 M          |\n\nthe end")


def test_render_json_and_csv_use_the_raw_records():
    assert report.render(TABLE, "json") == ('[\n  {\n    "name": "a",\n    "parameters": 1500,\n    "extra": {\n'
                                            '      "x": 1\n    }\n  },\n  {\n    "name": "b",\n'
                                            '    "parameters": 2000000\n  }\n]')
    assert report.render(TABLE, "csv") == "name,parameters,extra.x\na,1500,1\nb,2000000,"
    empty = report.Table([report.Block(["k", "v"], [])], [], columns=["k", "v"])
    assert report.render(empty, "csv") == "k,v"


def test_render_junit():
    suites = [report.Suite("tiny", [report.Case("params", "ok"), report.Case("peak", "FAIL", "estimate 1 KiB", "why"),
                                    report.Case("time", "skip", detail="not measured")]),
              report.Suite("broken", [report.Case("measurement", "ERROR", "no torch", "no torch <2.5")])]
    assert report.render(report.Table([], [], suites=suites), "junit") == "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>",
        '  <testsuite name="tiny" tests="3" failures="1" errors="0" skipped="1">',
        '    <testcase classname="costplan.tiny" name="params">', "    </testcase>",
        '    <testcase classname="costplan.tiny" name="peak">',
        '      <failure message="estimate 1 KiB">why</failure>', "    </testcase>",
        '    <testcase classname="costplan.tiny" name="time">', '      <skipped message="not measured"/>',
        "    </testcase>", "  </testsuite>",
        '  <testsuite name="broken" tests="1" failures="0" errors="1" skipped="0">',
        '    <testcase classname="costplan.broken" name="measurement">',
        '      <error message="no torch">no torch &lt;2.5</error>', "    </testcase>", "  </testsuite>",
        "</testsuites>"])


def fake_check(**fields):
    """A stand-in for profiling.compare.Check (tables/checks.py reads it by its fields), without torch."""
    from types import SimpleNamespace

    base = dict(metric="peak", item="peak memory", component="", estimate=54_999_040, measured=55_887_140,
                unit="bytes", tolerance=0.0001, status="FAIL", note="two steps", figures=(),
                relative_error=(55_887_140 - 54_999_040) / 54_999_040, name="peak memory", withheld=False)
    return SimpleNamespace(**{**base, **fields})


def test_check_failure_lines_and_notes_use_the_formatters():
    from costplan.tables import measurements

    flops = fake_check(metric="flops", item="training FLOPs", name="training FLOPs", estimate=2_645_000_000,
                       measured=2_645_000_001, unit="flop", tolerance=0, note="forward + backward",
                       figures=(("model FLOPs 3 × forward =", 2_422_210_560),))
    results = [{"name": "tiny", "checks": [fake_check(), flops]}]
    assert measurements.check_failures(results) == [
        "FAIL tiny: peak memory [peak]: estimate 52.45 MiB, measured 53.3 MiB (+1.61%, tolerance 0.01%)",
        "FAIL tiny: training FLOPs [flops]: estimate 2.645 GFLOP, measured 2.645 GFLOP (+1 FLOP, tolerance exact)"]
    weights = fake_check(metric="weights", estimate=4_000_000, measured=3_995_904, tolerance=0)
    assert measurements.check_error(weights) == "-4,096 bytes"        # exact, not a bare number
    assert measurements.check_note(flops) == "forward + backward; model FLOPs 3 × forward = 2.422 GFLOP"
    assert measurements.check_record(flops)["note"] == "forward + backward; model FLOPs 3 × forward = 2422210560"


def test_seq_len_markdown_titles_each_spec_like_every_other_table(run):
    out = run("estimate", "gpt2-small", "--seq-len", "256,512", "--format", "markdown").stdout
    assert out.startswith("### gpt2-small: activations (micro-batch 1) on one GPU\n\n| seq_len ")


def test_cli_leaves_formats_to_render():
    # one render path: no command branches on --format or writes JSON, CSV or tables itself
    from pathlib import Path

    for module in (Path(__file__).parents[1] / "costplan" / "cli").glob("*.py"):
        source = module.read_text(encoding="utf-8")
        for text in ("fmt ==", "fmt in", "fmt !=", "to_json", "csv_text", "tabulate", "grid("):
            assert text not in source, (module.name, text)


def test_aligned_text_is_tabulates_simple_layout():
    import random

    from tabulate import tabulate

    from costplan.report import Block, aligned_text

    rng = random.Random(7)

    def cell():  # noqa: ANN202
        return rng.choice([None, "", True, rng.randint(-5, 10**6), rng.random() * 1e5,
                           "".join(rng.choice("xy .-%×—µ") for _ in range(rng.randint(0, 9)))])

    compared = 0
    for _ in range(3000):
        n = rng.randint(1, 5)
        headers = ["".join(rng.choice("ab ") for _ in range(rng.randint(0, 6))) for _ in range(n)]
        body = [[cell() for _ in range(n)] for _ in range(rng.randint(0, 4))]
        align = rng.choice([None, tuple(rng.choice(["left", "right"]) for _ in range(n))])
        ours = aligned_text(Block(headers, body, align=align))
        if ours is not None:
            compared += 1
            assert ours == tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True, colalign=align)
    assert compared > 2000
    assert aligned_text(Block(["a"], [["two\nlines"]])) is None          # left to tabulate
    # a wide or combining character measures otherwise where wcwidth is installed: left to tabulate too
    assert aligned_text(Block(["a"], [["中"]])) is None and aligned_text(Block(["a"], [["e\u0301"]])) is None
    assert aligned_text(Block(["a"], [["a\u1161"]])) is None     # a vowel jamo joins what is before it: width 0
    assert aligned_text(Block(["layout"], [["2 × 1 × 1024 ZeRO 2"]])) is not None


def test_the_activations_row_names_the_micro_batches_a_pipeline_stage_holds(run):
    # GPT-3 on 8 pipeline stages (1F1B): the first stage holds p = 8 micro-batches' activations at its peak
    # (Narayanan et al. 2021 §2.2.1); without a pipeline, one micro-batch's
    lines = run("estimate", "gpt3-175b").stdout.splitlines()
    assert any(line.split()[:7] == ["activations", "(8", "micro-batches", "of", "1", "in", "flight)"]
               for line in lines)
    lines = run("estimate", "llama2-7b").stdout.splitlines()
    assert any(line.split()[:3] == ["activations", "(micro-batch", "1)"] for line in lines)


def test_a_network_the_spec_gives_is_not_called_assumed(run):
    given = [line for line in run("estimate", "llama2-70b", "--set", "hardware.network_gbs=12.5").stdout.splitlines()
             if "network between nodes" in line]
    catalogue = [line for line in run("estimate", "llama2-70b").stdout.splitlines() if "network between nodes" in line]
    assert given[0].split()[3:5] == ["spec", "hardware.network_gbs:"]
    assert catalogue[0].split()[3] == "assumed"


def test_serving_counts_are_whole_and_rates_prefixed(run):
    lines = run("serve", "llama3-8b", "--tensor", "16").stdout.splitlines()
    (batch,) = [line for line in lines if line.split()[:2] == ["max", "batch"]]
    # caches of 1,279 tokens (1,024 + 256 − 1) in the 79.11 GiB PyTorch has of an H100, less its 10% and the weights
    assert batch.split()[2] == "3,598"
    (rate,) = [line for line in lines if "output tokens/s per GPU" in line]
    assert rate.split()[4:6] == ["1.857", "k"]


@pytest.mark.parametrize("optimizer, states", [("adamw", "two moments"), ("sgd", "no state"),
                                               ("sgd_momentum", "a momentum"), ("adafactor", "factored moments")])
def test_the_bytes_rule_names_the_optimizers_own_state(optimizer, states):
    import costplan

    e = costplan.estimate(costplan.load_spec("gpt2-small", [f"training.optimizer={optimizer}"]))
    rule = e.assumptions.bytes_per_param["rule"]
    assert rule == f"16-bit weights and gradients, fp32 master copy, {states} (ZeRO §3.1)"


def test_markdown_escapes_a_pipe_in_a_cell(run):
    # a | in a spec's name would end its cell and shift every column after it
    lines = run("compare", "llama2-7b", "llama3-8b", "--set", "name=a|b", "--format", "markdown").stdout.splitlines()
    assert all(line.replace("\\|", "").count("|") == 4 for line in lines if line.startswith("|"))
    assert "a\\|b (llama2-7b) (baseline)" in lines[0]


def test_a_pipeline_idling_most_of_its_step_is_warned_of(run):
    # Llama 3 70B on 64 GPUs, tensor 8 × pipeline 4 and no global batch: one micro-batch a step through 4 stages
    # idles (p − 1)/(m + p − 1) = 3/4 of the ideal step (71.8% with the traffic); two micro-batches a step on
    # pipeline 2 idle a third, which is not worth a warning
    args = ["estimate", "llama3-70b", "--gpus", "64", "--set", "parallelism.tensor=8", "--set",
            "parallelism.sequence_parallel=true"]
    warned = run(*args, "--set", "parallelism.pipeline=4").stderr
    assert ("warning: llama3-70b: the pipeline idles 71.8% of each step: 1 micro-batch a step through 4 stages; "
            "more micro-batches") in warned
    assert "idles" not in run(*args, "--set", "parallelism.pipeline=2", "--set", "parallelism.micro_batches=2").stderr


def test_usable_memory_is_told_from_the_stated_in_the_stated_unit():
    from costplan.report import capacity
    assert capacity(int(79.14 * 2**30), 80 * 2**30) == "79.14 GiB usable of 80 GiB"
    assert capacity(int(191.98 * 2**30), 192 * 2**30) == "191.98 GiB usable of 192 GiB"    # 4 figures: 192 both
    assert capacity(int(511.99 * 2**20), 512 * 2**20) == "511.99 MiB usable of 512 MiB"    # not "0.50 GiB"
    assert capacity(16 * 2**30, 16 * 2**30) == "16 GiB"                                    # all of it usable
