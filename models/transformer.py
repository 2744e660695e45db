"""tiny_transformer: a one-layer pre-norm transformer text classifier.

tokens [N,16] int64 (vocab 64) -> embed.weight [64,32] (Gather) + pos_embed [16,32]
-> ln1 -> 2-head self-attention (head dim 16, scale 0.25) -> attn.out_proj -> + residual
-> ln2 -> ffn.fc1 (32->64) Relu ffn.fc2 (64->32) -> + residual -> mean over the sequence
-> head (32->4) -> logits [N,4].

Projections are MatMul + Add with the weight stored [in, out] (the transpose of a PyTorch
nn.Linear weight). Constants: ``attn.scale`` (0.25, scalar), ``attn.split_shape``
[0,16,2,16] and ``attn.merge_shape`` [0,16,32] (int64, 0 keeps the batch dim).
Init: embed.weight ~ N(0,1) (nn.Embedding default), pos_embed ~ N(0, 0.02^2), projections
U(+-1/sqrt(fan_in)), LayerNorm weight 1 / bias 0.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto

from ._common import GraphBuilder

VOCAB, SEQ, D_MODEL, HEADS, D_FF, CLASSES = 64, 16, 32, 2, 64, 4
HEAD_DIM = D_MODEL // HEADS


def build_tiny_transformer(seed: int = 0) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    emb = g.op("Gather", [g.normal("embed.weight", (VOCAB, D_MODEL)), "tokens"], "embed", axis=0)
    x0 = g.op("Add", [emb, g.normal("pos_embed", (SEQ, D_MODEL), std=0.02)], "pos_add")

    h = g.layernorm("ln1", x0, D_MODEL)
    split = g.ints("attn.split_shape", [0, SEQ, HEADS, HEAD_DIM])
    heads = {}
    for proj, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        y = g.matmul_linear(f"attn.{proj}_proj", h, D_MODEL, D_MODEL)
        y = g.op("Reshape", [y, split], f"attn.{proj}_split")
        heads[proj] = g.op("Transpose", [y], f"attn.{proj}_heads", perm=perm)
    scores = g.op("MatMul", [heads["q"], heads["k"]], "attn.scores")
    scores = g.op("Mul", [scores, g.scalar("attn.scale", HEAD_DIM ** -0.5)], "attn.scaled")
    probs = g.op("Softmax", [scores], "attn.softmax", axis=-1)
    ctx = g.op("MatMul", [probs, heads["v"]], "attn.context")
    ctx = g.op("Transpose", [ctx], "attn.context_t", perm=[0, 2, 1, 3])
    ctx = g.op("Reshape", [ctx, g.ints("attn.merge_shape", [0, SEQ, D_MODEL])], "attn.merge")
    attn = g.matmul_linear("attn.out_proj", ctx, D_MODEL, D_MODEL)
    x1 = g.op("Add", [x0, attn], "residual1")

    h = g.layernorm("ln2", x1, D_MODEL)
    h = g.relu(g.matmul_linear("ffn.fc1", h, D_MODEL, D_FF), "ffn.relu")
    h = g.matmul_linear("ffn.fc2", h, D_FF, D_MODEL)
    x2 = g.op("Add", [x1, h], "residual2")

    pooled = g.op("ReduceMean", [x2], "pool", axes=[1], keepdims=0)
    g.matmul_linear("head", pooled, D_MODEL, CLASSES, output="logits")
    return g.finish("tiny_transformer", ("tokens", TensorProto.INT64, [SEQ]), ("logits", [CLASSES]))
