"""Paths a new user meets first: a GPU count the batch does not split over, an MFU past 100%, a GPU without kernel
tables in `plan`, and the files costplan writes."""
import json
import os
import stat

import pytest

import costplan

LAB_GPU = ("name: Lab GPU\npeak_tflops: {bf16: 100}\nmemory_gib: 80\nmemory_bandwidth_gbs: 2000\n"
           "interconnect_gbs: 600\nmfu: 0.4\nusd_per_gpu_hour: 1.0\n")


def test_a_gpu_count_no_layout_splits_the_batch_over_is_refused_with_counts_that_work(run):
    # llama2-70b's 1,024 sequences of micro-batch 1 split over data degrees dividing 1024; 96 = 3 × 32 needs a
    # model-parallel degree of 3, 6, 12 or 24, and none of its heads or layers divide that way
    out = run("estimate", "llama2-70b", "--gpus", "96")
    assert out.exit_code == 2
    assert out.stderr.splitlines() == [
        "Error: llama2-70b: hardware.count: no layout of 96 GPUs splits training.global_batch_size (1024) into whole "
        "micro-batches of 1 over its data-parallel ranks; 64 or 128 GPUs would, or give a parallelism section"]
    for gpus in (64, 128):      # the counts it names work, and every sequence of the batch is in the step
        est = costplan.estimate(costplan.load_spec("llama2-70b", [f"hardware.count={gpus}"]))
        sequences = est.time.tokens_per_second_per_gpu * est.time.step_seconds * gpus / est.assumptions.seq_len
        assert sequences == pytest.approx(1024)


def test_an_mfu_past_100_percent_says_why(run):
    # at a million tokens attention is nearly all the FLOPs; PaLM's convention counts its masked half
    out = run("estimate", "llama2-7b", "--gpus", "8", "--set", "training.seq_len=1048576", "--set",
              "model.max_seq_len=1048576", "--set", "training.global_batch_size=8")
    line = next(line for line in out.stdout.splitlines() if line.split()[:1] == ["MFU"] or " MFU " in line)
    assert float(line.split("%")[0].split()[-1]) > 100
    assert "above 100% because model FLOPs count every key a causal query may see" in line
    short = run("estimate", "llama2-7b", "--gpus", "8").stdout
    assert "above 100%" not in short


def test_plan_times_a_gpu_without_kernel_tables_at_the_mfu_it_is_given(run, tmp_path):
    gpu = tmp_path / "lab.yaml"
    gpu.write_text(LAB_GPU)
    refused = run("plan", "--budget", "1e21", "--gpu", str(gpu))
    assert refused.exit_code == 2 and refused.stderr.startswith(f"Error: --gpu {gpu}: no kernel efficiency tables")
    assert refused.stderr.rstrip().endswith("give --mfu")
    budget = run("plan", "--budget", "1e21", "--gpu", str(gpu), "--mfu", "0.4", "--format", "json")
    assert budget.exit_code == 0
    proposal = json.loads(budget.stdout)
    # 1e21 FLOPs at 40% of 100 TFLOP/s: 1e21 / 40e12 s, though the proposal buys the tokens its real FLOPs allow
    assert proposal["gpu_hours"] == pytest.approx(proposal["flops"] / 40e12 / 3600, rel=1e-6)
    deadline = run("plan", "llama2-7b", "--deadline", "30d", "--gpu", str(gpu), "--mfu", "0.4", "--format", "json")
    assert deadline.exit_code == 0
    option = json.loads(deadline.stdout)[0]
    assert option["mfu"] == 0.4 and option["wall_clock_days"] <= 30
    table = run("plan", "llama2-7b", "--deadline", "30d", "--gpu", str(gpu), "--mfu", "0.4").stdout
    assert "at 40.0% MFU (--mfu)" in table
    assert run("plan", "--budget", "1e21", "--mfu", "1.5").stderr.splitlines() == [
        "Error: --mfu: a utilisation from 0.0001 to 1, got 1.5"]


def test_written_files_follow_the_umask_and_keep_a_replaced_files_mode_and_link(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o022)
    try:
        assert run("plan", "--budget", "1e21", "--write", "new.yaml").exit_code == 0
        assert stat.S_IMODE(os.stat("new.yaml").st_mode) == 0o644
        (tmp_path / "shared.yaml").write_text("old\n")
        os.chmod("shared.yaml", 0o664)
        os.symlink("shared.yaml", "link.yaml")
        assert run("plan", "--budget", "2e21", "--write", "link.yaml", "--force").exit_code == 0
        assert os.path.islink("link.yaml")      # the link stays, what it points at is replaced
        assert stat.S_IMODE(os.stat("shared.yaml").st_mode) == 0o664
        assert "2e21" in (tmp_path / "shared.yaml").read_text()
    finally:
        os.umask(old)


def test_a_forbidden_character_is_one_line_with_its_place(run, tmp_path):
    spec = tmp_path / "ctrl.yaml"
    spec.write_bytes(b"name: x\nmodel:\n  n_layers: 2\x1b\n")
    out = run("estimate", str(spec))
    assert out.exit_code == 2
    assert out.stderr.splitlines() == [f"Error: {spec}: line 3, column 14: invalid YAML: unacceptable character "
                                       "#x001b: control characters are not allowed"]


def test_an_empty_name_and_folders_get_their_own_errors(run, tmp_path):
    spec = tmp_path / "empty.yaml"
    spec.write_text('name: ""\nmodel: {vocab_size: 100, d_model: 64, n_layers: 2, n_heads: 2, max_seq_len: 64}\n')
    assert run("estimate", str(spec)).stderr.splitlines() == [
        f"Error: {spec}: name: is empty; a name heads the tables it is printed in"]
    assert run("estimate", str(tmp_path)).stderr.splitlines() == [
        f"Error: {tmp_path}: is a folder without a config.json; give a YAML spec, a Hugging Face config.json or a "
        "folder holding one"]
    out = run("estimate", "llama2-7b", "--gpu", str(tmp_path))
    assert out.exit_code == 2 and "is a folder; give a hardware YAML file" in out.stderr


def test_a_deadline_no_gpu_meets_exits_1_after_saying_why(run):
    out = run("plan", "llama2-7b", "--deadline", "1h", "--gpu", "h100-sxm")
    assert out.exit_code == 1
    assert "no layout tried fits and finishes in time" in out.stdout
    assert out.stderr.splitlines() == ["no GPU type tried trains llama2-7b within 1h"]
    assert run("plan", "llama2-7b", "--deadline", "30d", "--gpu", "h100-sxm").exit_code == 0


def test_a_missed_deadline_says_how_near_the_quickest_run_came(run):
    # Llama 2 13B's batch of 1,024 sequences allows at most 1,024 data ranks, at micro-batch 1: no layout trains
    # it within an hour on A100s. Given micro-batch 4 (256 data ranks at most), the note still names the quickest
    # that fits of all the search tries, at micro-batch 1, which re-estimated as a parallelism section takes that
    # long and is not beaten by the same layout at the spec's own micro-batch
    out = run("plan", "llama2-13b", "--deadline", "1h", "--gpu", "a100-80gb", "--set", "training.micro_batch_size=4",
              "--format", "json")
    assert out.exit_code == 1
    [option] = json.loads(out.stdout)
    fastest = option["fastest"]
    assert (fastest["micro_batch_size"], fastest["data"], fastest["data_cap"]) == (1, 1024, 1024)
    # a dense model's layout has no experts' degrees: every key it has goes into a spec as it is
    assert "expert" not in fastest and "expert_tensor" not in fastest
    layout = {k: fastest[k] for k in ("tensor", "pipeline", "zero", "context", "sequence_parallel")}
    sets = ["hardware.gpu=a100-80gb", *(f"parallelism.{k}={v}" for k, v in layout.items()),
            f"training.recompute={fastest['recompute']}"]
    e = costplan.estimate(costplan.load_spec("llama2-13b", [*sets, f"hardware.count={fastest['gpus']}",
                                                            "training.micro_batch_size=1"]))
    assert e.parallelism.data == 1024 and e.memory.fits
    assert e.time.wall_clock_days == fastest["wall_clock_days"] > 1 / 24
    own = costplan.estimate(costplan.load_spec("llama2-13b", [*sets, f"hardware.count={fastest['gpus'] // 4}"]))
    assert own.time.wall_clock_days > fastest["wall_clock_days"]
    assert option["note"].startswith("no layout tried fits and finishes in time; the quickest that fits, "
                                     f"{fastest['tensor']} × {fastest['pipeline']} × 1024, ZeRO 1, SP at "
                                     "micro-batch 1, recompute none on 65,536 GPUs, takes ")
    assert option["note"].endswith("(training.global_batch_size caps the data ranks at 1,024 at that micro-batch)")
    # a section that fixes its micro-batches a step caps the data ranks with the batch: 1,024 / (1 × 4)
    [fixed] = json.loads(run("plan", "llama2-13b", "--deadline", "1h", "--gpu", "a100-80gb", "--set",
                             "hardware.count=64", *(f"--set=parallelism.{k}" for k in (
                                 "tensor=8", "pipeline=8", "zero=1", "sequence_parallel=true", "micro_batches=4")),
                             "--format", "json").stdout)
    assert (fixed["fastest"]["data"], fixed["fastest"]["data_cap"]) == (256, 256)
    assert fixed["note"].endswith("(training.global_batch_size and parallelism.micro_batches cap the data ranks at "
                                  "256 at that micro-batch)")
    # where nothing fits at all, the note says so: Mixtral's experts over 8 ranks with their all-to-alls overlapped,
    # which rules out full recomputation (Megatron-Core refuses it), hold more than an H100 on any count
    [none] = json.loads(run("plan", "mixtral-8x7b", "--deadline", "60d", "--gpu", "h100-sxm", "--set",
                            "parallelism.expert=8", "--set", "parallelism.expert_overlap=true", "--set",
                            "parallelism.zero=1", "--set", "training.global_batch_size=512", "--format", "json").stdout)
    assert none["note"] == "no layout tried fits in its GPUs' memory" and none["fastest"] is None
    # an open batch has no cap to name
    [open_batch] = json.loads(run("plan", "llama3-8b", "--deadline", "1min", "--gpu", "h100-sxm",
                                  "--format", "json").stdout)
    assert open_batch["fastest"]["data_cap"] is None and "caps the data ranks" not in open_batch["note"]


def test_memory_shares_are_of_what_the_peak_holds():
    # gpt2-small ties its embeddings: its tied gradients and the optimizer's transients come at other moments
    est = costplan.estimate(costplan.load_spec("gpt2-small"))
    m = est.memory
    assert m.peak_at == "backward"
    assert m.weights + m.gradients + m.optimizer + m.activations + m.workspace == m.total_per_gpu
    from costplan.tables.estimate import estimate_rows
    shares = [r.share for r in estimate_rows(est) if r.section == "memory" and r.share is not None]
    assert sum(shares) == pytest.approx(1.0)
    assert m.tied_gradients > 0 and m.update > 0      # listed, with no share


def test_every_kind_of_traffic_is_in_the_json_on_one_stage(run):
    est = json.loads(run("estimate", "llama2-7b", "--gpus", "8", "--format", "json").stdout)[0]
    kinds = ["tensor", "context", "expert", "pipeline", "data"]
    assert list(est["parallelism"]["communication_bytes"]) == kinds
    assert list(est["parallelism"]["communication_seconds"]) == kinds
    assert {f"communication.{k}" for k in kinds} <= set(est["time"]["breakdown"])
    assert est["parallelism"]["communication_bytes"]["pipeline"] == 0


def test_profile_and_calibrate_refuse_options_they_would_drop(run):
    # --nproc checks each rank's memory shards: --serve and the rest would go unused
    out = run("profile", "specs/ci/dense.yaml", "--serve", "--nproc", "2")
    assert out.exit_code == 2 and "--serve cannot be combined with it" in out.stderr
    out = run("check", "specs/ci/dense.yaml", "--time-budget", "50", "--nproc", "2")    # it had gone unused
    assert out.exit_code == 2 and "--time-budget cannot be combined with it" in out.stderr
    assert run("profile", "specs/ci/dense.yaml", "--time-set", "foo").stderr.splitlines() == [
        "Error: --time-set foo: expected KEY=VALUE with a dotted key, e.g. model.n_layers=48"]
    bad = run("profile", "specs/ci/dense.yaml", "--time-set", "model.n_layers=0").stderr.splitlines()
    assert bad == ["Error: --time-set model.n_layers=0: specs/ci/dense.yaml: model.n_layers: must be greater than 0, "
                   "got 0"]
    assert run("calibrate", "--time-budget", "0.5").stderr.splitlines() == [
        "Error: --time-budget: at least 2 s for a calibration (default 180), got 0.5"]
    assert run("calibrate", "--force").stderr.splitlines() == ["Error: --force: only with --output"]


def test_an_output_folder_is_tried_before_any_work(tmp_path, monkeypatch):
    # access() answers for permissions only; a folder the file system will not write in is found by writing
    from costplan import files
    from costplan.errors import CostplanError
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(CostplanError, match="cannot write in the folder .*: Read-only file system"):
        files.check_output("--output", tmp_path / "cal.yaml")


def test_a_hardware_files_price_says_where_it_comes_from(run, tmp_path):
    # a file without price_source or price_date had printed "not given (not given)"
    gpu = tmp_path / "lab.yaml"
    gpu.write_text(LAB_GPU)
    serve = run("serve", "llama3-8b", "--gpu", str(gpu)).stdout
    assert f"- price: $1.00 per GPU-hour: {gpu}'s usd_per_gpu_hour, no source given\n" in serve
    gpu = tmp_path / "sourced.yaml"
    gpu.write_text(LAB_GPU + "price_source: our lab's rate\nprice_date: 2026-11\n")
    data = json.loads(run("estimate", "llama3-8b", "--gpu", str(gpu), "--mfu", "0.4", "--format", "json").stdout)
    assert data[0]["assumptions"]["price_source"] == "our lab's rate (2026-11)"


def test_a_peak_just_over_the_memory_says_by_how_much(run, tmp_path):
    # 14.76 GiB "did not fit in" 14.76 GiB: both printed alike, the verdict looked wrong
    spec = costplan.load_spec("llama2-7b", ["hardware.mfu=0.5", "parallelism.tensor=2", "parallelism.zero=2"])
    peak = costplan.estimate(spec).memory.total_per_gpu
    gpu = tmp_path / "near.yaml"
    gpu.write_text(LAB_GPU.replace("memory_gib: 80", f"memory_gib: {(peak - 150 * 1024) / 2**30!r}"))
    out = run("estimate", "llama2-7b", "--gpu", str(gpu), "--mfu", "0.5", "--set", "parallelism.tensor=2",
              "--set", "parallelism.zero=2")
    assert out.exit_code == 0, out.stderr
    assert "(by 150 KiB)" in out.stdout and "(by 150 KiB)" in out.stderr
    far = run("estimate", "llama2-7b", "--gpus", "1", "--mfu", "0.5").stdout
    assert "does not fit in 79.14 GiB usable of 80 GiB" in far and "(by " not in far


def test_zero_with_one_data_rank_is_told_to_get_data_ranks(run):
    # tensor 8 on 8 GPUs leaves ZeRO 3 one data rank to shard over: more GPUs is what lowers the peak, which the
    # hints had left out (they said more tensor or pipeline ranks, or a larger GPU)
    out = run("estimate", "llama3-70b", "--gpus", "8", "--set", "parallelism.zero=3", "--set", "parallelism.tensor=8",
              "--set", "parallelism.sequence_parallel=true", "--set", "training.recompute=full")
    assert "what would lower it: data-parallel ranks for ZeRO to shard over (more GPUs: hardware.count)" in out.stderr
    wide = run("estimate", "llama3-70b", "--gpus", "16", "--set", "parallelism.zero=1", "--set",
               "parallelism.tensor=8", "--set", "training.recompute=full").stderr
    assert "does not fit" in wide and "data-parallel ranks for ZeRO" not in wide
