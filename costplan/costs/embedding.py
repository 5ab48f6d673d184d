"""Token (and learned position) embeddings, and the LM head with its cross-entropy loss."""
from __future__ import annotations

from costplan.costs import INDEX_BYTES, STAT_BYTES, Cost, Shape, linear, vector
from costplan.spec import ModelSpec


def embedding(model: ModelSpec, shape: Shape) -> Cost:
    """vocab_size × d_model token table (+ max_seq_len × d_model for learned positions). A lookup is a
    gather, not a matmul: no FLOPs. Its backward needs the int64 token ids; position ids are a constant. Tensor
    parallelism splits the token table by vocabulary; the position table stays whole on every rank (Megatron-
    Core's LanguageModelEmbedding builds it as a plain, "serial" torch Embedding)."""
    d = model.d_model
    ids = shape.seq_len * INDEX_BYTES
    cost = Cost(params=model.vocab_size * d, factored=model.vocab_size + d, factors=model.vocab_size + d,
                activations=ids, act_d_model=ids)
    if model.position == "learned":
        positions = model.max_seq_len * d
        cost = cost + Cost(params=positions, factored=model.max_seq_len + d, factors=model.max_seq_len + d,
                           tensor_whole=positions)
    return cost


def loss_bytes(shape: Shape) -> tuple[int, int]:
    """Bytes per logit the loss saves for backward, and those it adds when backward starts (Shape.loss_memory).
    torch's cross-entropy saves an fp32 log-softmax and then makes the fp32 gradients of it and of the fp32 logits
    (two more: that instant is a step's peak, measured on the reference model, profiling/memory.py). Megatron-
    Core's kernels (megatron/core/fusions/fused_cross_entropy.py, tensor_parallel/cross_entropy.py) save an fp32
    softmax and turn it into the gradient in place: only its cast back to the logits' dtype is new (nothing in
    fp32; older fused versions cast to bf16 whatever the logits). Liger's kernel (ops/cross_entropy.py) writes the
    gradient over the logits in forward and saves them: nothing new. Transformer Engine's (pytorch/cross_entropy.py,
    loss_kernel transformer_engine) saves the logits and writes the gradient over them in backward: the same bytes.
    All are split over the tensor ranks as vocabulary-parallel kernels are; Liger's takes whole logits on every
    rank (torchtitan without loss_parallel), not modelled."""
    e, kind = shape.act_bytes, shape.loss_memory()
    if kind == "gradient":
        return e, 0
    if kind == "softmax":
        return STAT_BYTES, e if e != STAT_BYTES else 0
    return STAT_BYTES, 2 * STAT_BYTES


def head(model: ModelSpec, shape: Shape) -> Cost:
    """logits = x·W_head (+ b) (s × d)·(d × vocab), then cross-entropy. A tied head reuses the embedding matrix,
    so it adds FLOPs but no parameters; a head bias (GPT-J, Phi) is a vector of its own either way, added
    without a matmul FLOP and never quantized (not a matrix). Saved: the head's input, what the loss keeps per
    logit and the int64 targets; workspace: what the loss adds when backward starts (loss_bytes)."""
    s, d, vocab = shape.seq_len, model.d_model, model.vocab_size
    logits = linear(s, d, vocab)
    if model.tie_embeddings:
        logits = Cost(flops=logits.flops, hw_fwd=logits.hw_fwd, hw_flops=logits.hw_flops)
    if model.head_bias:
        logits = logits + vector(vocab)
    per_token = s * d * shape.act_bytes + s * INDEX_BYTES   # the head's input and the targets
    kept, new = loss_bytes(shape)
    return logits + Cost(activations=per_token + s * vocab * kept, act_d_model=per_token,
                         workspace=s * vocab * new)
