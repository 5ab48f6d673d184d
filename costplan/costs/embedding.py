"""Token (and learned position) embeddings, and the LM head with its cross-entropy loss."""
from __future__ import annotations

from costplan.costs import INDEX_BYTES, STAT_BYTES, Cost, Shape, linear, vector
from costplan.spec import ModelSpec


def embedding(model: ModelSpec, shape: Shape) -> Cost:
    """vocab_size × d_model token table (+ max_seq_len × d_model for learned positions). A lookup is a
    gather, not a matmul: no FLOPs. Its backward needs the int64 token ids; position ids are a constant."""
    d = model.d_model
    ids = shape.seq_len * INDEX_BYTES
    cost = Cost(params=model.vocab_size * d, factored=model.vocab_size + d, factors=model.vocab_size + d,
                activations=ids, act_d_model=ids)
    if model.position == "learned":
        cost = cost + Cost(params=model.max_seq_len * d, factored=model.max_seq_len + d,
                           factors=model.max_seq_len + d)
    return cost


def head(model: ModelSpec, shape: Shape) -> Cost:
    """logits = x·W_head (+ b) (s × d)·(d × vocab), then cross-entropy. A tied head reuses the embedding matrix,
    so it adds FLOPs but no parameters; a head bias (GPT-J, Phi) is a vector of its own either way, added
    without a matmul FLOP and never quantized (not a matrix). Saved: the head's input, the fp32 log-softmax
    (s × vocab) and the int64 targets. Workspace: when backward starts, the loss's gradient w.r.t. the
    log-softmax and the log-softmax's gradient w.r.t. the fp32 logits (two more fp32 s × vocab tensors) are live
    on top of every saved activation; that instant is a step's peak (measured on the reference model,
    profiling/memory.py). That is torch's cross-entropy, an eager loss's. A fused or vocabulary-parallel loss
    (Shape.softmax_loss) runs as Megatron-Core's kernels, fused or not (megatron/core/fusions/fused_cross_entropy.py,
    tensor_parallel/cross_entropy.py): they save an fp32 softmax and turn it into the gradient in place, so only
    its cast back to the logits' dtype is new then (nothing in fp32; older fused versions cast to bf16 whatever the
    logits). Transformer Engine's and Liger's fused kernels hold less: they store a 16-bit gradient in forward."""
    s, d, vocab = shape.seq_len, model.d_model, model.vocab_size
    logits = linear(s, d, vocab)
    if model.tie_embeddings:
        logits = Cost(flops=logits.flops, hw_fwd=logits.hw_fwd, hw_flops=logits.hw_flops)
    if model.head_bias:
        logits = logits + vector(vocab)
    per_token = s * d * shape.act_bytes + s * INDEX_BYTES   # the head's input and the targets
    if shape.softmax_loss():
        workspace = s * vocab * shape.act_bytes if shape.act_bytes != STAT_BYTES else 0
    else:
        workspace = 2 * s * vocab * STAT_BYTES
    return logits + Cost(activations=per_token + s * vocab * STAT_BYTES, act_d_model=per_token, workspace=workspace)
