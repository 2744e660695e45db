"""The C emitters of the normalisation, element-wise, softmax, mean and embedding ops against
the numpy reference, bit for bit (rctc.native.codegen.emit: norm, elementwise, activations'
IntClip, softmax, reduce's IntReduceMean, gather).

For ResNet-8 (BatchNorm in training mode with its running statistics, residual IntAdds),
MobileNet (ReLU6 as IntClip and its backward) and the tiny transformer (the embedding Gather
and its IntGatherGrad, IntAdd with broadcast biases and position embeddings, IntMul by a 0-d
scale, LayerNorm, softmax, ReduceMean and their backward rules), at batch 1 and 3: a
generated step over every node with a C mapping is built and run; every value those nodes
compute and the whole state they touch (the running statistics, the fused weight updates)
must equal the numpy runtime's at two (seed, step) keys. The values of the nodes still
without a C mapping (convolutions, pools, the loss) come from the numpy run.
"""

from __future__ import annotations

import numpy as np
import pytest

import rctc
from rctc.errors import UnsupportedOpError
from rctc.ir import Graph
from rctc.native.codegen import EMITTERS, NativeStep, generate
from rctc.runtime.executor import Executor
from rctc.runtime.kernels import KernelContext
from tests.native.codegen_cases import assert_same

#: model -> the op types of this family its graph must exercise
MODELS = {
    "resnet8": {"IntBatchNormalization", "IntBatchNormGrad", "IntAdd"},
    "mobilenet": {"IntBatchNormalization", "IntBatchNormGrad", "IntClip", "IntClipGrad"},
    "tiny_transformer": {"Gather", "IntGatherGrad", "IntAdd", "IntMul", "IntLayerNormalization", "IntLayerNormGrad",
                         "IntSoftmax", "IntSoftmaxGrad", "IntReduceMean", "IntReduceMeanGrad"},
}
KEYS = ((0, 0), (7, 3))
LR = 0.05


def _compile(model: str, batch: int) -> Graph:
    return rctc.compile(f"models/{model}.onnx", mode="rct", elementwise="integer", batch_size=batch,
                        optimizer="sgd").graph


def _upper(g: Graph, name: str) -> int:
    """Exclusive bound of an integer input: the table rows it indexes, or the classes it labels."""
    for n in g.nodes:
        if n.op_type == "Gather" and n.inputs[1].name == name:
            return n.inputs[0].shape[int(n.attrs.get("axis", 0))]
        if n.op_type == "IntSoftmaxCrossEntropy" and n.inputs[2].name == name:
            return n.inputs[0].shape[1]
    raise AssertionError(f"no reader bounds input {name!r}")


def _mapped(g: Graph) -> list:
    """The nodes the generator maps (an op type with an emitter may still refuse a node, e.g. a
    fused update of a convolution's weight gradient)."""
    def ok(n) -> bool:
        try:
            generate(g, [n])
        except UnsupportedOpError:
            return False
        return True
    return [n for n in g.nodes if n.op_type in EMITTERS and ok(n)]


def _feeds(g: Graph, seed: int, step: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 100 * step)
    feeds: dict[str, np.ndarray] = {}
    for v in g.inputs:
        if v.name == "lr":
            feeds[v.name] = np.float32(LR)
        elif v.name == "sample_mask":
            feeds[v.name] = np.ones(v.shape, np.float32)
        elif np.dtype(v.dtype).kind == "i":
            feeds[v.name] = rng.integers(0, _upper(g, v.name), v.shape).astype(v.dtype)
        else:
            feeds[v.name] = (rng.standard_normal(v.shape) * (1 + step)).astype(v.dtype)
    return feeds


def _reference(g: Graph, seed: int, step: int) -> dict[str, np.ndarray]:
    """The feeds and every value of one numpy training step (no state written back)."""
    names = [o.name for n in g.nodes for o in n.outputs]
    feeds = _feeds(g, seed, step)
    return feeds | Executor(g).run(feeds, names, KernelContext(training=True, seed=seed, step=step))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_mapped_nodes_bit_identical_to_numpy(model: str, batch: int, native_env: dict[str, str]) -> None:
    g = _compile(model, batch)
    nodes = _mapped(g)
    assert MODELS[model] <= {n.op_type for n in nodes}
    outs = [o.name for n in nodes for o in n.outputs]  # every value they compute, not only the hand-over
    prog = generate(g, nodes, outs)
    stored = {nm: g.values[nm].data for nm in prog.state}
    if "IntBatchNormalization" in MODELS[model]:
        assert any(".running_mean" in s for s in prog.updates)  # the running statistics are written in C
    native = NativeStep(prog, stored, env=native_env)
    for seed, step in KEYS:
        ref = _reference(g, seed, step)
        native.load_state(stored)
        got = native.run({nm: ref[nm] for nm in prog.inputs}, seed=seed, step=step, lr=LR)
        assert_same(got, ref, outs)
        want = {nm: ref[prog.updates[nm]] if nm in prog.updates else stored[nm] for nm in prog.state}
        assert_same(got, want, prog.state)
    # another step draws other stochastic roundings in this family's backward rules: the check can fail
    native.load_state(stored)
    other = native.run({nm: ref[nm] for nm in prog.inputs}, seed=seed, step=step + 1, lr=LR)
    grads = [o.name for n in nodes if n.op_type in MODELS[model] and n.attrs.get("rounding") == "stochastic"
             for o in n.outputs[:1]]
    assert grads and not all(np.array_equal(other[o], ref[o]) for o in grads)
