"""Saved activations as transformers' PyTorch modules spend them (`training.implementation: sdpa | eager`),
beyond what the fused kernels of the component formulas save (`fused`, the default).

Derived tensor by tensor from the modules of the Llama family (Llama, Mistral, Qwen2/3: LlamaRMSNorm, rotary
embeddings, repeat_kv, sdpa_attention_forward, eager_attention_forward) and measured on their classes
(`costplan check CONFIG --against transformers`, tests/test_implementation.py), 16-bit weights, one unpadded
sequence:

- a Python RMSNorm saves an fp32 copy of its input more than a fused norm (costs/norm.py `python_copy`);
- the rotary tables cos and sin are computed in every forward rather than kept as buffers, and the
  multiplications save them: 2 × s × d_rope in the activation dtype, once per model;
- SDPA without a mask (full causal layers: is_causal) runs a flash kernel over grouped-query heads as they are
  (torch ≥ 2.5), saving what the fused estimate saves; a masked layer (a window) repeats K and V to n_heads
  first (repeat_kv) and passes its own s × s mask in the activation dtype, which the kernel saves;
- eager attention repeats K and V to n_heads, computes every pair, and saves the softmax's fp32 output and its
  16-bit copy that multiplies V: (4 + 2) bytes per pair and head in 16-bit training, 4 in fp32;
- MLA and DeepSeek's MoE routers: DeepseekV2/V3Attention and TopkRouter (mla.py).

GPT-2's, OPT's and BLOOM's modules (training.modules, measured the same way) differ where ClassModules
(costs/class_modules.py) says: a fused q/k/v projection kept whole, GPT-2's softmax in the scores' dtype and its
Python GELU, learned position ids; and a long eager step peaks at its last softmax rather than at the loss
(scores_transient).

Under 16-bit autocast over fp32 weights (`training.autocast`), measured the same way:

- every matmul casts its weight to 16 bits once per forward and saves the copy: 2 bytes per matrix element,
  once per micro-batch, the LM head's (or the tied embedding's) included;
- every projection casts its input itself and saves its own copy: q, k and v each one of the normed input (two
  more than one shared input), gate and up each one (one more);
- the residual stream stays fp32, so each d_model-wide norm saves its input (LayerNorm) or its normalized
  output (RMSNorm) in fp32: 4 − 2 bytes more per element than in 16-bit training; the rotary tables are fp32;
- a MoE block's grouped expert matmuls are on no autocast list and run in fp32 (moe_autocast).

Where a family's modules differ (training.modules, the config's model_type: ClassModules in
costs/class_modules.py; or the spec field that decides it), also derived and measured:

- OLMo's rotary tables stay fp32 and its clip_qkv clamps save q, k and v; its LayerNorm's fp32 input is in
  costs/norm.py;
- Phi-3's concatenated rotary makes SDPA's output head-major (one more copy), and its fused qkv_proj and
  gate_up_proj cast one input each under autocast;
- Gemma (1, 2, 3) and gpt-oss RMSNorms multiply the fp32 normalized value by the weight before casting back,
  saving it in fp32; Gemma's also saves its fp32 1 + weight (costs/norm.py `fp32_normed`). Gemma 2 and 3 norm
  before and after each block (model.block sandwich): four such norms per layer, Gemma 3's q and k norms too;
- Gemma 3 computes a pair of rotary tables per layer type (the sliding layers' local base); gpt-oss's are
  head_dim / 2 wide;
- Gemma 2's eager attention soft-caps its scores and the class its logits: each tanh saves its output (Gemma 2
  has no sdpa attention); gpt-oss's eager attention takes a softmax over a sink column in the scores' dtype
  (gpt-oss has no sdpa attention);
- gpt-oss's router takes a softmax over the top-k logits only, its experts add biases and a clamped SwiGLU;
- the parallel-layer classes (Falcon, GPT-J, GPT-NeoX, Phi): under autocast a parallel layer's norms read one
  fp32 input, and each projection reading a shared normed input casts its own copy;
- Llama 4's block runs every expert on every token (every_expert_extra; its bmm experts cast as any matmul
  under autocast, routed_autocast), its rotary table is complex (complex_rotary), its rotated layers L2-norm q
  and k in fp32 (l2_qk_norm), its NoPE layers scale q per position (temperature_scales), and its eager
  softmax runs in the scores' dtype.

Only FLOP-free tensors differ: FLOPs stay those of the component formulas (`check --against transformers`
compares eager FLOPs separately).
"""
from __future__ import annotations

from costplan.costs.implementation.attention import attention_extra, family_attention_extra
from costplan.costs.implementation.autocast import autocast_extra, fp32_residual
from costplan.costs.class_modules import modules_of
from costplan.costs.implementation.common import d_model_wide, weight_copies
from costplan.costs.implementation.feed_forward import mlp_extra, moe_extra
from costplan.costs.implementation.mla import deepseek_router
from costplan.costs.implementation.model import capped_logits, eager_peak, model_extra, position_ids

__all__ = [
    "attention_extra", "autocast_extra", "capped_logits", "d_model_wide", "deepseek_router",
    "eager_peak", "family_attention_extra", "fp32_residual", "mlp_extra", "model_extra", "modules_of", "moe_extra",
    "position_ids", "weight_copies",
]
