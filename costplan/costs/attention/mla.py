"""Multi-head latent attention (DeepSeek-V2 §2.1, DeepSeek-V3 §2.1.1).

Per layer, for s tokens (d = d_model, H heads, n/r/v = qk_nope/qk_rope/v head dims, d_c = kv_lora_rank,
d_c' = q_lora_rank):
  c_q = x·W_DQ (d → d_c'), normed, q = c_q·W_UQ (d_c' → H·(n + r))   [or q = x·W_Q (d → H·(n + r))]
  [c_kv, k_rope] = x·W_DKV (d → d_c + r); c_kv normed; [k_nope, v] = c_kv·W_UKV (d_c → H·(n + v))
  k = [k_nope, RoPE(k_rope) shared by all heads]; out = softmax(q·kᵀ)·v (H·v) → W_O (H·v → d).
Biases follow DeepSeek's reference code: the down projections take qkv_bias, the up projections none, W_O
takes o_bias. The norms are the model's norm kind. Only c_kv and k_rope are cached: (d_c + r) elements per token
(V2 §2.1.3). Under tensor parallelism the down-projections and their norms stay whole on every rank
(Megatron-Core's TE spec duplicates them); the rest is split by heads. So the latents are per-token tensors
every tensor rank computes whole, which sequence parallelism splits (Megatron-Core's MLASelfAttention projects
and norms its own s/t rows, and the column-parallel up projections gather them): Cost.act_d_model. The core
runs in a FlashAttention-style kernel (DeepSeek's own kernels are), so it stores no probabilities and skips
masked tiles.
"""
from __future__ import annotations

from costplan.costs import Cost, Shape, linear
from costplan.costs.attention.softmax import causal_executed, flash_core
from costplan.costs.norm import norm, norm_weights, statistics
from costplan.spec import ModelSpec
from costplan.spec_attention import LatentAttention


def cost(attention: LatentAttention, model: ModelSpec, shape: Shape) -> Cost:
    s, d, e, heads = shape.seq_len, model.d_model, shape.act_bytes, model.n_heads
    a = attention
    d_qk, latent = a.qk_nope_head_dim + a.qk_rope_head_dim, a.kv_lora_rank + a.qk_rope_head_dim
    if a.q_lora_rank:
        queries = (linear(s, d, a.q_lora_rank, model.qkv_bias) + norm(model.norm, a.q_lora_rank, shape)
                   + linear(s, a.q_lora_rank, heads * d_qk)
                   + Cost(activations=s * a.q_lora_rank * e))                # the norm's output, W_UQ's input
        queries = queries.replace(act_d_model=queries.activations)          # c_q, its statistics, normed
    else:
        queries = linear(s, d, heads * d_qk, model.qkv_bias)
    keys_values = (
        linear(s, d, latent, model.qkv_bias)                                 # [c_kv, k_rope] = x·W_DKV
        + norm_weights(model.norm, a.kv_lora_rank)
        + linear(s, a.kv_lora_rank, heads * (a.qk_nope_head_dim + a.v_head_dim))  # [k_nope, v] = c_kv·W_UKV
    )
    output = linear(s, heads * a.v_head_dim, d, model.o_bias, row_parallel=True)
    # the down-projections and the latents' norms, whole on every tensor rank (Cost.tensor_whole)
    down = linear(s, d, latent, model.qkv_bias).params + norm_weights(model.norm, a.kv_lora_rank).params
    if a.q_lora_rank:
        down += linear(s, d, a.q_lora_rank, model.qkv_bias).params + norm_weights(model.norm, a.q_lora_rank).params
    latents = s * e * (
        latent                                             # W_DKV's output: the c_kv norm reads a slice of it
        + a.kv_lora_rank                                   # the normed c_kv, W_UKV's input
    ) + statistics(model.norm, s)                          # the c_kv norm's statistics
    saved = s * e * (
        d                                                  # x, shared by the two down projections
        + 2 * heads * d_qk                                 # q and k as the core uses them
        + heads * (a.qk_nope_head_dim + a.v_head_dim)      # W_UKV's output, of which v is a slice
        + heads * a.v_head_dim                             # the core's output, W_O's input
    ) + latents
    core = flash_core(heads, d_qk, a.v_head_dim, s * s, causal_executed(shape), shape)
    cache = latent * e
    return queries + keys_values + output + core + Cost(activations=saved, act_d_model=latents, kv_cache=cache,
                                                        kv_cache_seq=cache * s, tensor_whole=down)

