"""LeakyRelu, HardSigmoid, HardSwish, Erf and Exp (and their gradients) lowered to their integer
twins: a small model with all of them trains 3 rct steps on the native backend bit-identical to
the numpy reference, every one of the integer ops in C; its kernels are the intref algorithms'."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import rctc
from rctc.ir import Node, Value
from rctc.native.executor import NativeExecutor
from rctc.runtime.intref import expo, gelu, pointwise
from rctc.runtime.kernels import KERNELS, KernelContext
from rctc.runtime.trainer import Trainer

OPS = ("LeakyRelu", "HardSigmoid", "HardSwish", "Erf", "Exp")


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.uniform(-0.7, 0.7, (8, 8)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.uniform(-0.3, 0.3, (40, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array(0.25, np.float32), "quarter")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("LeakyRelu", ["h"], ["a"], alpha=0.1),
             helper.make_node("HardSigmoid", ["a"], ["b"], alpha=0.25, beta=0.5),
             helper.make_node("HardSwish", ["h"], ["c"]),
             helper.make_node("Erf", ["h"], ["d"]),
             helper.make_node("Mul", ["h", "quarter"], ["hq"]),
             helper.make_node("Exp", ["hq"], ["f"]),
             helper.make_node("Concat", ["a", "b", "c", "d", "f"], ["cat"], axis=1),
             helper.make_node("MatMul", ["cat", "w2"], ["logits"])]
    g = helper.make_graph(nodes, "acts", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread() -> Any:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _train(native: bool) -> tuple[list[float], dict[str, np.ndarray], Any, Any]:
    g = rctc.compile(_model(), mode="rct", batch_size=4, seed=3).graph
    ex = NativeExecutor(g, None) if native else None
    t = Trainer(g, seed=3, executor=ex)
    rng = np.random.default_rng(0)
    losses = [t.train_step(rng.standard_normal((4, 8)).astype(np.float32), rng.integers(0, 3, 4),
                           np.ones(4, g.value("sample_mask").dtype), 0.1).loss for _ in range(3)]
    return losses, {v.name: v.data for v in g.values.values() if v.kind in ("param", "buffer", "const")}, ex, g


def test_activations_train_bit_identical_in_c() -> None:
    want, got = _train(False), _train(True)
    g = got[3]
    assert g.meta["float_islands"] == []
    ints = {f"Int{o}" for o in OPS} | {f"Int{o}Grad" for o in OPS}
    assert ints <= {n.op_type for n in g.nodes}
    assert got[0] == want[0]
    for k, ref in want[1].items():
        assert got[1][k].dtype == ref.dtype and np.array_equal(got[1][k], ref), k
    plan = next(iter(got[2]._plans.values()))
    host = {p.node.op_type for p in plan.parts if hasattr(p, "node")}
    assert not ints & host


@pytest.mark.parametrize("op,fwd,bwd,attrs", [
    ("IntLeakyRelu", pointwise.leaky_relu, pointwise.leaky_relu_backward, {"alpha": 0.1}),
    ("IntHardSigmoid", pointwise.hardsigmoid, pointwise.hardsigmoid_backward, {"alpha": 0.25, "beta": 0.5}),
    ("IntHardSwish", pointwise.hardswish, pointwise.hardswish_backward, {}),
    ("IntErf", gelu.erf, gelu.erf_backward, {}),
    ("IntExp", expo.exp, expo.exp_backward, {})])
def test_kernels_are_the_intref_algorithms(op: str, fwd: Any, bwd: Any, attrs: dict[str, float]) -> None:
    rng = np.random.default_rng(4)
    q = rng.integers(-127, 128, (3, 7)).astype(np.int8)
    dq = rng.integers(-127, 128, (3, 7)).astype(np.int8)
    ctx = KernelContext(training=True, seed=9, step=2)
    node = Node(op, "n", [], [Value("y", None, np.int8)], {**attrs, "bits": 8}, domain="rctc")
    y, ye = KERNELS[op](ctx, node, q, np.array(-5, np.int32))
    ref = fwd(q, -5, **attrs, bits=8)
    assert int(ye) == ref[1] and np.array_equal(y, ref[0])
    gnode = Node(f"{op}Grad", "g", [], [Value("dx", None, np.int8)], {**attrs, "bits": 8, "rounding": "stochastic"},
                 domain="rctc")
    gnode.meta["node_id"] = 3
    dx, dxe = KERNELS[f"{op}Grad"](ctx, gnode, dq, np.array(-7, np.int32), q, np.array(-5, np.int32))
    ref = bwd(q, -5, dq, -7, **attrs, bits=8, rand=ctx.words(gnode, q.shape))
    assert int(dxe) == ref[1] and np.array_equal(dx, ref[0])
