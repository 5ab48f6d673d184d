"""Memory: bytes per parameter, activations against Korthikanti et al. 2022, KV cache."""
from __future__ import annotations

import math

import pytest

import costplan
from conftest import make_spec
from costplan.costs import fp8_weights

# A GPT layer in Korthikanti et al.'s shape: LayerNorm, GELU, d_ff = 4h, dense attention, no RoPE.
S, H, A = 128, 64, 4          # seq_len, hidden, heads (head_dim 16)


def per_layer_activations(spec: costplan.Spec) -> int:
    one = costplan.estimate(spec).memory.activations
    two = costplan.estimate(spec.model_copy(update={"model": spec.model.model_copy(
        update={"n_layers": spec.model.n_layers + 1})})).memory.activations
    return two - one


def test_korthikanti_layer_without_dropout():
    # Korthikanti §4.1, 16-bit activations, per layer: 34·sbh + 5·a·s²·b. Their dropout terms are not in a
    # dropout-free model: the attention-dropout mask (a·s²·b) and output (2·a·s²·b), and the two 1-byte
    # residual-dropout masks (2·sbh). What remains: 32·sbh + 2·a·s²·b, plus the LayerNorms' fp32 mean and 1/std
    # (2 norms × 2 stats × 4 bytes per token), which the paper leaves out.
    spec = make_spec({"position": "none", "d_model": H, "n_heads": A, "max_seq_len": S})
    expected = 32 * S * H + 2 * A * S * S + 2 * 2 * 4 * S
    assert per_layer_activations(spec) == expected


def test_flash_removes_the_quadratic_term():
    # FlashAttention keeps O(s): an fp32 log-sum-exp per query and head instead of the a·s² probabilities.
    spec = make_spec({"position": "none", "attention": "flash"})
    assert per_layer_activations(spec) == 32 * S * H + A * S * 4 + 2 * 2 * 4 * S


def test_selective_recompute_drops_the_quadratic_term():
    spec = make_spec({"position": "none"}, training={"recompute": "selective"})
    assert per_layer_activations(spec) == 32 * S * H + 2 * 2 * 4 * S


def test_full_recompute_keeps_the_layer_input():
    # Korthikanti Table 2: full recomputation stores 2·sbh per layer (16-bit).
    spec = make_spec(training={"recompute": "full"})
    assert per_layer_activations(spec) == 2 * S * H


def test_recomputing_the_first_layers_of_a_stage():
    # Megatron's block method (--recompute-num-layers N): N layers store 2·sbh each (Table 2, full recompute),
    # the others all they save without it (32·sbh + 2·a·s²·b and the LayerNorm statistics, as above); the
    # hardware FLOPs add one forward of each recomputed layer, N/L of what recomputing every layer adds.
    layers, n = 6, 2
    base = {"position": "none", "d_model": H, "n_heads": A, "max_seq_len": S, "n_layers": layers}

    def run(**training):  # noqa: ANN003, ANN202
        return costplan.estimate(make_spec(base, training))

    kept, some, full = run(), run(recompute="full", recompute_layers=n), run(recompute="full")
    assert kept.memory.activations - some.memory.activations == n * (
        32 * S * H + 2 * A * S * S + 2 * 2 * 4 * S - 2 * S * H)
    extra = some.flops.hardware_per_token - kept.flops.hardware_per_token
    assert extra * layers == pytest.approx((full.flops.hardware_per_token - kept.flops.hardware_per_token) * n)
    every = run(recompute="full", recompute_layers=layers)      # as many as the stage holds: every layer
    assert (every.memory, every.flops, every.time) == (full.memory, full.flops, full.time)


def test_recomputing_the_first_layers_of_each_pipeline_stage_counts_them_per_stage():
    # N of each stage's layers recompute: 4 stages of 8 layers at N = 8 recompute all 32 (the hardware FLOPs had
    # counted the first 8 of the model: 56.7 GFLOP a token, HFU 24.2%, against full's 68.8 and 29.4%), and at
    # N = 4 half of each stage, 16 layers: half of what recomputing every layer adds
    base = ["hardware.count=64", "parallelism.pipeline=4", "parallelism.zero=1", "training.global_batch_size=64"]

    def run(*training: str):  # noqa: ANN202
        return costplan.estimate(costplan.load_spec("llama3-8b", [*base, *training]))

    kept, full = run(), run("training.recompute=full")
    eight, four = (run("training.recompute=full", f"training.recompute_layers={n}") for n in (8, 4))
    assert (eight.flops, eight.time.hfu) == (full.flops, full.time.hfu)
    added = full.flops.hardware_per_token - kept.flops.hardware_per_token
    assert four.flops.hardware_per_token - kept.flops.hardware_per_token == pytest.approx(added / 2)


def test_per_op_checkpointing_of_llama3_8b():
    # torchtitan's op policy on a Llama 3 8B layer (d 4096, 32 query and 8 KV heads of 128, SwiGLU 14336), per
    # token in bf16: the layer input (4096), q (4096), v (1024), the attention output (4096) and its fp32
    # log-sum-exp (32 heads × 4 bytes), the gate (14336) and down (4096) outputs: 31,744 × 2 + 128 = 63,616
    # bytes; its backward runs k (4096 × 1024), o (4096 × 4096) and up (4096 × 14336) again
    spec = costplan.load_spec("llama3-8b", ["training.recompute=selective_op", "training.seq_len=8192",
                                            "hardware.count=1"])
    plain = costplan.load_spec("llama3-8b", ["training.seq_len=8192", "hardware.count=1"])
    assert per_layer_activations(spec) == 63_616 * 8192
    again = costplan.estimate(spec).flops.hardware_per_token - costplan.estimate(plain).flops.hardware_per_token
    assert again == 32 * 2 * (4096 * 1024 + 4096 * 4096 + 4096 * 14336)


def test_per_op_checkpointing_rules(tmp_path):
    from costplan.errors import SpecError

    def problems(*sets: str) -> str:
        with pytest.raises(SpecError) as caught:
            costplan.load_spec("gpt2-small", ["training.recompute=selective_op", *sets])
        return "; ".join(caught.value.problems)

    said = problems()      # GPT-2: dense attention and biases
    assert "flash attention layers, not dense" in said and "set model.bias false" in said
    assert "a dense MLP; this model has moe" in problems("model.attention=flash", "model.bias=false",
                                                         "model.moe={n_experts: 4, top_k: 2}")
    assert "parallelism.tensor: 2: training.recompute selective_op is modelled without tensor parallelism" in \
        problems("model.attention=flash", "model.bias=false", "hardware.count=2", "parallelism={tensor: 2}")


def test_activations_scale_with_micro_batch():
    one = costplan.estimate(make_spec()).memory.activations
    four = costplan.estimate(make_spec(training={"micro_batch_size": 4})).memory.activations
    assert four == 4 * one


def test_non_layer_activations_by_hand():
    # Token ids (int64) for the embedding's backward; final-norm input and stats; head input; fp32 log-softmax;
    # int64 targets.
    spec = make_spec({"n_layers": 1})
    layer = per_layer_activations(spec)
    outside = 8 * S + (2 * S * H + 2 * 4 * S) + 2 * S * H + 4 * S * 1000 + 8 * S
    assert costplan.estimate(spec).memory.activations == layer + outside


@pytest.mark.parametrize("mlp, inner, eager", [("gelu", 2, 2), ("relu", 1, 1), ("swiglu", 3, 4), ("geglu", 3, 4)])
def test_mlp_saved_tensors(mlp, inner, eager):
    # d_ff-wide tensors per token: a fused gated kernel keeps gate and up, the down projection their product; an
    # eager step's activation also saves its output.
    base = per_layer_activations(make_spec({"mlp": "gelu", "d_ff": 100}))
    other = per_layer_activations(make_spec({"mlp": mlp, "d_ff": 100}))
    assert other - base == (inner - 2) * S * 100 * 2
    unfused = per_layer_activations(make_spec({"mlp": mlp, "d_ff": 100}, {"fusion": "eager"}))
    assert unfused - base == (eager - 2) * S * 100 * 2
    kernel = per_layer_activations(make_spec({"mlp": mlp, "d_ff": 100}, {"fusion": "eager",
                                                                        "fused_kernels": ["activation"]}))
    assert kernel == other


@pytest.mark.parametrize("precision, optimizer, per_param", [
    ("bf16", "adamw", (2, 2, 12)),        # ZeRO §3.1: 16 bytes per parameter for mixed-precision Adam
    ("fp16", "adam", (2, 2, 12)),
    ("fp32", "adamw", (4, 4, 8)),         # no master copy in pure fp32
    ("tf32", "sgd", (4, 4, 0)),
    ("bf16", "sgd", (2, 2, 4)),           # the fp32 master copy only
    ("bf16", "sgd_momentum", (2, 2, 8)),
    ("bf16", "lion", (2, 2, 8)),          # Lion keeps one moment
    ("fp8", "adamw", (2, 2, 12)),         # 16-bit weights, fp8 only inside the GEMMs
])
def test_bytes_per_parameter(precision, optimizer, per_param):
    spec = make_spec(training={"precision": precision, "optimizer": optimizer}, hardware={"gpu": "h100-sxm"})
    e = costplan.estimate(spec)
    n = e.params.total
    assert (e.memory.weights, e.memory.gradients, e.memory.optimizer) == tuple(b * n for b in per_param)


def test_adafactor_factored_second_moment():
    # Shazeer & Stern 2018: an r×c matrix keeps r + c fp32 statistics; vectors keep their full size.
    spec = make_spec({"n_layers": 1, "bias": False, "norm": "rmsnorm", "position": "rope"},
                     training={"optimizer": "adafactor", "precision": "fp32"})
    e = costplan.estimate(spec)
    matrices = [(1000, 64)] + [(64, 64)] * 4 + [(64, 256), (256, 64)]    # embedding, q, k, v, o, up, down
    vectors = 3 * 64                                                        # two layer norms and the final
    assert e.memory.optimizer == 4 * (sum(r + c for r, c in matrices) + vectors)


def test_adafactor_keeps_nothing_for_a_nonparametric_norm():
    spec = make_spec({"n_layers": 1, "bias": False, "norm": "nonparametric_layernorm", "position": "rope"},
                     training={"optimizer": "adafactor", "precision": "fp32"})
    matrices = [(1000, 64)] + [(64, 64)] * 4 + [(64, 256), (256, 64)]    # embedding, q, k, v, o, up, down
    assert costplan.estimate(spec).memory.optimizer == 4 * sum(r + c for r, c in matrices)


def test_a_nonparametric_layernorm_saves_what_layernorm_saves():
    # torch's LayerNorm kernel runs with or without its affine: the input and mean and 1/std per row.
    saved = [costplan.estimate(make_spec({"norm": kind})).memory.activations
             for kind in ("layernorm", "nonparametric_layernorm")]
    assert saved[0] == saved[1]


@pytest.mark.parametrize("attention, recompute, column", [
    ("dense", "none", True),             # the sink is one more stored probability per query and head
    ("dense", "selective", False),       # no probabilities stored
    ("flash", "none", False),            # the kernel's log-sum-exp now includes the sink: the same bytes
])
def test_attention_sinks_store_a_column_only_with_the_probabilities(attention, recompute, column):
    model, training = {"attention": attention}, {"recompute": recompute}
    plain = costplan.estimate(make_spec(model, training)).memory.activations
    sinks = costplan.estimate(make_spec({**model, "attention_sinks": True}, training)).memory.activations
    heads, seq, layers, bf16 = 4, 128, 2, 2
    assert sinks - plain == (layers * heads * seq * bf16 if column else 0)


@pytest.mark.parametrize("preset, kib", [("llama2-7b", 512), ("llama3-8b", 128), ("llama2-70b", 320)])
def test_kv_cache_per_token(preset, kib):
    # formulas reference §2.6: 2 · layers · kv_heads · head_dim · 2 bytes (bf16).
    assert costplan.estimate(costplan.load_spec(preset)).memory.kv_cache_per_token == kib * 1024


def test_total_and_fit():
    e = costplan.estimate(costplan.load_spec("llama2-7b", ["hardware.count=1"]))
    m = e.memory
    assert m.total_per_gpu == m.weights + m.gradients + m.optimizer + m.activations + m.workspace
    assert m.gpu_memory == int(79.14 * 2**30) and m.fits is False    # 16 bytes × 6.74 B > 80 GiB
    assert m.gpu_memory_stated == 80 * 2**30
    assert costplan.estimate(costplan.load_spec("gpt2-small")).memory.fits is True


def test_loss_gradients_are_live_at_the_peak():
    # When backward starts, torch's cross_entropy(logits.float()) (an eager loss) has produced the gradient of its
    # log-softmax and then the gradient of the fp32 logits: two fp32 s × vocab tensors on top of every saved
    # activation, for the micro-batch whose backward runs, split over the tensor group by a vocabulary-parallel
    # head. Megatron-Core's loss (a fused step's default) has made the gradient in its saved fp32 softmax and
    # holds only its cast to bf16: one 2-byte s × vocab tensor.
    for loss, per_sequence in (("eager", 2 * S * 1000 * 4), ("fused", S * 1000 * 2), ("vocab_parallel", S * 1000 * 2)):
        assert costplan.estimate(make_spec(training={"loss_kernel": loss})).memory.workspace == per_sequence
        four = make_spec(training={"micro_batch_size": 4, "loss_kernel": loss})
        assert costplan.estimate(four).memory.workspace == 4 * per_sequence
        split = make_spec(training={"micro_batch_size": 2, "loss_kernel": loss}, hardware={"count": 8},
                          parallelism={"tensor": 2})
        assert costplan.estimate(split).memory.workspace == 2 * per_sequence // 2


@pytest.mark.parametrize("block, norm_inputs, norms, block_inputs", [
    ("sequential", 2, 2, 2),            # x and x + attention, each normed once; attention and MLP inputs
    ("sandwich", 4, 4, 2),              # and each block's output, normed after it
    ("parallel", 1, 2, 2),              # two norms of x keep one copy of it, and their own statistics
    ("parallel_shared_norm", 1, 1, 1),  # attention and MLP read one normed x
])
def test_saved_tensors_by_block(block, norm_inputs, norms, block_inputs):
    # Per layer: what attention and MLP save beyond their inputs, 24·sbh + 2·a·s²·b for this GPT layer (see
    # above: 32·sbh less four 2·sbh tensors, the two norm inputs and the two block inputs), plus the d_model-wide
    # tensors the wiring decides and each norm's fp32 mean and 1/std.
    spec = make_spec({"position": "none", "d_model": H, "n_heads": A, "max_seq_len": S, "block": block})
    wide = S * H * 2
    expected = 24 * S * H + 2 * A * S * S + (norm_inputs + block_inputs) * wide + norms * 2 * 4 * S
    assert per_layer_activations(spec) == expected


def test_full_recompute_keeps_each_layer_input_whatever_its_block():
    for block in ("sequential", "sandwich", "parallel", "parallel_shared_norm"):
        spec = make_spec({"position": "none", "block": block}, training={"recompute": "full"})
        assert per_layer_activations(spec) == S * 64 * 2


@pytest.mark.parametrize("precision, optimizer, autocast, per_element", [
    ("bf16", "adamw", False, 4),        # the 16-bit gradient's fp32 copy; fused AdamW in place
    ("bf16", "lion", False, 4 + 12 - 2),  # and three fp32 temporaries, after the 16-bit gradient is dropped
    ("fp32", "adamw", False, 0),        # stepped on its own fp32 gradient, in place
    ("fp32", "adafactor", False, 12),
    ("bf16", "sgd", True, 0),           # autocast: fp32 weights are their own master
])
def test_update_transients_per_stepped_element(precision, optimizer, autocast, per_element):
    from costplan.costs.memory import update_bytes

    assert update_bytes(precision, optimizer, autocast, 1000) == per_element * 1000


def test_the_peak_is_the_largest_moment_and_fits_by_it():
    # Two tokens, 1000 × 64 embedding stepped first: the optimizer step (model states + 4 · 64000) tops backward
    # (states + activations + the head's gradients) and the untied spec has no tied moment.
    m = costplan.estimate(make_spec({"tie_embeddings": False}, {"seq_len": 2})).memory
    states = m.weights + m.gradients + m.optimizer
    assert (m.update, m.tied_gradients) == (4 * 1000 * 64, 0)
    assert m.peak_at == "optimizer step" and m.total_per_gpu == states + m.update > states + m.activations + m.workspace
    tied = costplan.estimate(make_spec({"tie_embeddings": True}, {"seq_len": 2})).memory
    assert tied.tied_gradients == 3 * 2 * 1000 * 64 and tied.peak_at == "end of backward"
    assert tied.total_per_gpu == tied.weights + tied.gradients + tied.optimizer + tied.tied_gradients


def test_adafactor_under_per_parameter_sharding_keeps_matrix_factors_whole():
    # FSDP2 (torch's Adafactor: its factors are replicated DTensors) holds every matrix's r + c statistics on each
    # of the 4 data ranks and shards the vectors' moments; a flat-buffer ZeRO shards both
    model = {"n_layers": 1, "bias": False, "norm": "rmsnorm", "position": "rope"}
    matrices = [(1000, 64)] + [(64, 64)] * 4 + [(64, 256), (256, 64)]    # embedding, q, k, v, o, up, down
    factors, vectors = sum(r + c for r, c in matrices), 3 * 64
    training = {"optimizer": "adafactor", "precision": "fp32", "micro_batch_size": 1}

    def optimizer(per_parameter):
        spec = make_spec(model, training, {"count": 4},
                         parallelism={"zero": 3, "per_parameter_sharding": per_parameter})
        return costplan.estimate(spec).memory.optimizer

    assert optimizer(True) == math.ceil(4 * (factors + vectors / 4))
    assert optimizer(False) == math.ceil(4 * (factors + vectors) / 4)


def test_full_recompute_holds_one_layer_recomputed_as_its_backward_runs():
    # While a recomputed layer's backward runs its forward has saved everything again: with L equal layers, the
    # layer's own saved bytes are what recomputation saves, (A_none − A_full) / L, on top of the input it kept
    # (b·s·d in bf16). That, not the small loss's gradients, is the backward moment's transient. (A dense core's
    # softmax gradients come on top: test_profiling_memory.py.)
    layers, micro, s, d = 4, 2, 128, 64
    def run(recompute):
        return costplan.estimate(make_spec({"n_layers": layers, "vocab_size": 64, "position": "rope",
                                            "attention": "flash"},
                                           training={"recompute": recompute, "micro_batch_size": micro,
                                                     "seq_len": s, "precision": "bf16", "tokens": 10**6}))
    kept, full = run("none"), run("full")
    layer = (kept.memory.activations - full.memory.activations) / layers + micro * s * d * 2
    assert layer > kept.memory.workspace
    assert full.memory.workspace == pytest.approx(layer, abs=1)


def _fp8(preset: str, saved: bool, **training) -> object:
    overrides = ["training.precision=fp8", "hardware.gpu=h100-sxm", f"training.fp8_saved_inputs={str(saved).lower()}",
                 "parallelism=null", *(f"training.{k}={v}" for k, v in training.items())]
    return costplan.estimate(costplan.load_spec(preset, overrides)).memory


def test_transformer_engine_s_fp8_linears_save_fp8_inputs_by_hand():
    # Llama 3 8B at 8,192 tokens (d = d_q = 4,096, d_ff 14,336, 32 flash layers with SwiGLU). Transformer Engine's
    # LayerNormLinear saves the QKV and gate-up projections' normed input as fp8 (1 byte where bf16 took 2), its
    # output projection an fp8 copy of the flash core's output, which the core keeps in bf16 (1 more), and its
    # down projection the SwiGLU product as fp8 (1 fewer): d + d_ff − d_q + d = d + d_ff bytes fewer a token
    # and layer. The 16-bit input of torchao's Float8Linear is the default.
    s, layers = 8192, 32
    assert _fp8("llama3-8b", False).activations - _fp8("llama3-8b", True).activations == layers * s * (4096 + 14336)
    # Under full recomputation a layer keeps only its input: nothing changes.
    assert _fp8("llama3-8b", False, recompute="full").activations == \
        _fp8("llama3-8b", True, recompute="full").activations


def test_fp8_inputs_another_op_saves_are_held_twice():
    # ReLU saves its output, the down projection's input: its fp8 copy comes on top (d_ff more bytes a token and
    # layer), as does the output projection's beside a flash core's output; the QKV and up projections' normed
    # input goes from 2 bytes to 1.
    s, d, d_ff, layers = 128, 64, 256, 2
    model = {"vocab_size": 64, "d_model": d, "d_ff": d_ff, "n_layers": layers, "attention": "flash", "mlp": "relu"}
    fp8 = {"precision": "fp8", "micro_batch_size": 1, "seq_len": s, "tokens": 10**6}
    plain, te = (costplan.estimate(make_spec(model, {**fp8, "fp8_saved_inputs": saved}, {"gpu": "h100-sxm"})).memory
                 for saved in (False, True))
    assert te.activations - plain.activations == layers * s * (-d + d - d + d_ff)


def test_mla_s_fp8_linears_save_fp8_inputs_by_hand():
    # Megatron-Core's MLA runs Transformer Engine's linears too, its two down projections separate ones: each
    # saves its own fp8 copy of the normed block input (2 bytes, as the one 16-bit input took); the normed latents
    # of keys and values (c_kv, d_c) and of queries (c_q, d_c') go from 2 bytes to 1; the output projection's fp8
    # copy comes beside the core's output (H·v), which the core keeps. The SwiGLU MLP as in the dense case: its
    # normed input and the product, 1 byte fewer each.
    s, d, d_ff, heads, layers = 128, 64, 256, 4, 2
    mla = {"type": "mla", "kv_lora_rank": 32, "q_lora_rank": 48, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
           "v_head_dim": 16}
    model = {"vocab_size": 64, "d_model": d, "d_ff": d_ff, "n_layers": layers, "n_heads": heads, "attention": mla}
    fp8 = {"precision": "fp8", "micro_batch_size": 1, "seq_len": s, "tokens": 10**6}
    plain, te = (costplan.estimate(make_spec(model, {**fp8, "fp8_saved_inputs": saved}, {"gpu": "h100-sxm"})).memory
                 for saved in (False, True))
    assert te.activations - plain.activations == layers * s * (0 - (32 + 48) + heads * 16 - d - d_ff)


@pytest.mark.parametrize("change, message", [
    (["training.precision=bf16"], "saves fp8 copies of the linears' inputs; precision bf16 is not fp8"),
    (["training.implementation=sdpa"], "Transformer Engine's linears, not transformers' modules"),
    (["model.attention=aft_simple", "model.n_kv_heads=null"],
     "modelled for softmax attention (dense, flash, sliding_window, sparse, chunked, mla), not aft_simple"),
    (["model.block=parallel"], "modelled for sequential and sandwich blocks, not parallel"),
    (["training.recompute=selective_op"], "torchtitan's per-op checkpointing runs torchao's fp8 linears"),
])
def test_fp8_inputs_outside_what_is_modelled_are_a_one_line_error(run, change, message):
    spec = "specs/ci/fp8-inputs.yaml"
    result = run("estimate", spec, *(arg for c in change for arg in ("--set", c)))
    (line,) = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and f"{spec}: training.fp8_saved_inputs: {message}" in line


def _cached(preset: str, *overrides: str) -> object:
    """The memory of a preset trained in fp8 with Transformer Engine's linears, keeping their fp8 weights or not."""
    return [costplan.estimate(costplan.load_spec(preset, ["training.precision=fp8", "training.fp8_saved_inputs=true",
                                                          f"training.fp8_weight_cache={cache}", *overrides])).memory
            for cache in ("false", "true")]


def test_transformer_engine_s_fp8_weight_cache_by_hand():
    # Llama 3 70B (d 8,192, 64 query and 8 key-value heads of 128, d_ff 28,672): a layer's GEMMs hold
    # 2·8192² (q, o) + 2·8192·1024 (k, v) + 3·8192·28672 (gate, up, down) = 855,638,016 weights. On 4 tensor ranks
    # and 8 pipeline stages of 10 layers, each GPU's TE linears keep an fp8 copy of their quarter and, on Hopper,
    # whose fp8 GEMMs take only the TN layout, its transpose: 2 bytes a weight. The head and embedding stay 16-bit.
    layout = ["hardware.count=64", "parallelism.tensor=4", "parallelism.pipeline=8", "parallelism.zero=1",
              "parallelism.sequence_parallel=true", "training.global_batch_size=64"]
    plain, cached = _cached("llama3-70b", "hardware.gpu=h100-sxm", *layout)
    assert cached.fp8_weights == 10 * 855_638_016 // 4 * 2
    assert plain.fp8_weights == 0 and cached.weights == plain.weights
    assert cached.total_per_gpu - plain.total_per_gpu == cached.fp8_weights
    # Blackwell's fp8 GEMMs take any layout: the copy alone, 1 byte a weight.
    _, blackwell = _cached("llama3-70b", "hardware.gpu=b200", *layout)
    assert blackwell.fp8_weights == 10 * 855_638_016 // 4


def test_fp8_weight_cache_of_experts_and_latent_attention_by_hand():
    # Mixtral 8x7B (d 4,096, 32 heads of 128 and 8 key-value heads, 8 experts of d_ff 14,336, 32 layers) over 8
    # expert ranks of whole experts and 2 tensor ranks: each GPU holds one expert (3·4096·14336) and half of
    # attention's 2·4096² + 2·4096·1024; the router (4096·8) stays 16-bit. With the experts split over the tensor
    # ranks too (Megatron-Core's default expert tensor degree), each GPU holds half an expert.
    layout = ["hardware.gpu=h100-sxm", "hardware.count=16", "parallelism.tensor=2", "parallelism.expert=8",
              "parallelism.sequence_parallel=true", "parallelism.zero=1", "training.global_batch_size=16"]
    _, moe = _cached("mixtral-8x7b", *layout, "parallelism.expert_tensor=1")
    assert moe.fp8_weights == 32 * 2 * (3 * 4096 * 14336 + (2 * 4096**2 + 2 * 4096 * 1024) // 2)
    _, folded = _cached("mixtral-8x7b", *layout)
    assert folded.fp8_weights == 32 * 2 * (3 * 4096 * 14336 + 2 * 4096**2 + 2 * 4096 * 1024) // 2
    # DeepSeek-V3's MLA down-projections (7,168·1,536 for queries, 7,168·576 for the latent and rope key) are whole
    # on every tensor rank; the up-projections (1,536·128·192, 512·128·256) and the output (128·128·7,168) split.
    # Its first three layers are dense (d_ff 18,432), the other 58 MoE with 256 routed experts (d_ff 2,048), whole
    # over 64 expert ranks, and one shared expert split like the dense MLP; over 8 tensor ranks.
    _, mla = _cached("deepseek-v3", "hardware.gpu=h100-sxm", "hardware.count=512", "parallelism.tensor=8",
                     "parallelism.pipeline=1", "parallelism.expert=64", "parallelism.expert_tensor=1",
                     "parallelism.sequence_parallel=true", "parallelism.zero=1", "training.global_batch_size=64")
    whole = 7168 * 1536 + 7168 * 576
    split = 1536 * 128 * 192 + 512 * 128 * 256 + 128 * 128 * 7168
    dense, shared, routed = 3 * 7168 * 18432, 3 * 7168 * 2048, 256 * 3 * 7168 * 2048
    per_gpu = 3 * (whole + (split + dense) / 8) + 58 * (whole + (split + shared) / 8 + routed / 64)
    assert mla.fp8_weights == math.ceil(2 * per_gpu)


def test_fp8_weight_cache_is_off_under_zero_3_and_needs_te_s_linears(run):
    # A layout search may shard the weights (ZeRO-3): TE keeps no cache of FSDP's gathered weights.
    spec = costplan.load_spec("llama3-8b", ["training.precision=fp8", "training.fp8_saved_inputs=true",
                                            "training.fp8_weight_cache=true", "hardware.count=8", "parallelism.data=8"])
    sharded = spec.model_copy(update={"parallelism": spec.parallelism.model_copy(update={"zero": 3})})
    assert fp8_weights.cached_bytes(spec, 0) == 32 * (2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336) * 2
    assert fp8_weights.cached_bytes(sharded, 0) == 0
    spec = "specs/ci/fp8-inputs.yaml"
    result = run("estimate", spec, "--set", "training.fp8_weight_cache=true", "--set",
                 "training.fp8_saved_inputs=false")
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        f"Error: {spec}: training.fp8_weight_cache: is Transformer Engine's, whose linears save fp8 copies of their "
        "inputs: set training.fp8_saved_inputs true"]
    result = run("estimate", spec, "--set", "training.fp8_weight_cache=true", "--set", "parallelism.zero=3",
                 "--set", "parallelism.data=1")
    assert result.exit_code == 2 and "training.fp8_weight_cache: Transformer Engine keeps no fp8 copy of weights " \
        "FSDP gathers (parallelism.zero 3)" in result.stderr


def test_a_layout_search_keeps_the_fp8_weight_cache_off_zero_3():
    # A section with ZeRO-3 and the cache is refused; the search had taken ZeRO-3 for such a spec and dropped the
    # cache without a word (Llama 3 70B on 64 H100s). It tries the grid without ZeRO-3, as plan --deadline does.
    from costplan.costs import layouts

    overrides = ["hardware.gpu=h100-sxm", "hardware.count=64", "training.precision=fp8",
                 "training.fp8_saved_inputs=true", "training.fp8_weight_cache=true"]
    e = costplan.estimate(costplan.load_spec("llama3-70b", overrides))
    assert e.parallelism.zero != 3 and e.memory.fp8_weights > 0
    spec = costplan.load_spec("llama3-70b", overrides)
    assert {lay["zero"] for lay in layouts.grid(spec)} == {1, 2}
    plain = costplan.load_spec("llama3-70b", overrides[:-1])
    assert 3 in {lay["zero"] for lay in layouts.grid(plain)}


@pytest.mark.parametrize("cast, copies", [(None, 1), (4, 2), (3, 1), (1, 1)])
def test_the_fp8_weight_cache_copies_by_what_the_device_s_fp8_gemms_take(cast, copies, monkeypatch):
    # where the device's fp8 GEMMs take only TN (its casts write a transposed copy: fp8_cast_bytes 4), the cache
    # keeps the transpose too; elsewhere, and on a device whose tables say nothing, the copy alone. A figure below
    # 3 had made a negative cache.
    from costplan.kernels import Figure

    spec = costplan.load_spec("llama3-8b", ["training.precision=fp8", "training.fp8_saved_inputs=true",
                                            "training.fp8_weight_cache=true", "hardware.count=1"])
    figure = None if cast is None else Figure(value=cast, source="test")
    curves = spec.gpu.curves().model_copy(update={"fp8_cast_bytes": figure})
    monkeypatch.setattr(type(spec.gpu), "curves", lambda self: curves)
    assert fp8_weights.copies(spec) == copies


def test_a_peak_over_memory_with_the_fp8_weight_cache_points_at_the_cache_not_zero_3(run):
    # ZeRO-3 is refused with the cache: the hint had named it; turning the cache off is what would lower the peak
    args = ("estimate", "llama3-70b", "--gpu", "h100-sxm", "--gpus", "16", "--set", "training.precision=fp8",
            "--set", "training.fp8_saved_inputs=true", "--set", "training.fp8_weight_cache=true", "--set",
            "parallelism.tensor=8", "--set", "parallelism.zero=1")
    (warning,) = [line for line in run(*args).stderr.splitlines() if "does not fit" in line]
    assert "training.fp8_weight_cache: false (Megatron-Core's disable_parameter_transpose_cache)" in warning
    assert "parallelism.zero: 3" not in warning
