"""The integer lowerings of passes/int_lowerings_cell.py (and the ReduceSumTo / GatherGrad rules
they complete): which float islands remain in issue 14's models, and each lowered op's output
within its algorithm's stated error bound of the float op (``--elementwise float``, the same
graph with the op in float32)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import rctc
from rctc import models

BATCH = 4


def _islands(name: str) -> Counter[str]:
    g = rctc.compile(models.build(name), mode="rct", batch_size=8, seed=1).graph
    return Counter(i["op_type"] for i in g.meta["float_islands"])


def test_kws_gru_is_integer_from_end_to_end() -> None:
    """397 float islands before these rules (Gather 87, GatherGrad 87, ReduceSumTo 61, Sigmoid 40,
    SigmoidGrad 40, Neg 21, Tanh 20, TanhGrad 20, Sub 19, Concat, ConcatGrad); none after."""
    g = rctc.compile(models.build("kws_gru"), mode="rct", batch_size=8, seed=1).graph
    assert g.meta["float_islands"] == []
    ops = Counter(n.op_type for n in g.nodes)
    for t in ("IntSigmoid", "IntSigmoidGrad", "IntTanh", "IntTanhGrad", "IntSub", "IntNeg", "IntConcat",
              "IntConcatGrad", "IntGatherScatter", "IntAddGrad"):
        assert ops[t] > 0, t
    assert not {"Sigmoid", "SigmoidGrad", "Tanh", "TanhGrad", "Sub", "Neg", "Concat", "ReduceSumTo"} & set(ops)
    assert all(np.dtype(n.outputs[0].dtype).kind == "i" for n in g.nodes if n.op_type == "Gather")


def test_remaining_islands_of_unet_and_groupnorm_cnn() -> None:
    """unet: 9 before (Concat x2 + ConcatGrad x2, nearest Resize + its grad now integer);
    groupnorm_cnn: 10 before (reflect Pad, InstanceNorm and their grads now integer; bilinear Resize
    is not exact on the integers and stays float)."""
    assert _islands("unet") == Counter({"ConvTranspose": 1, "ConvTransposeGradInput": 1, "ConvTransposeGradWeight": 1})
    assert _islands("groupnorm_cnn") == Counter({"Resize": 1, "ResizeGrad": 1})
    g = rctc.compile(models.build("unet"), mode="rct", batch_size=2, seed=1).graph
    ops = {n.op_type for n in g.nodes}
    assert {"IntResizeGrad", "IntConcat", "IntConcatGrad"} <= ops
    assert all(np.dtype(n.outputs[0].dtype).kind == "i" for n in g.nodes if n.op_type == "Resize")
    g = rctc.compile(models.build("groupnorm_cnn"), mode="rct", batch_size=2, seed=1).graph
    ops = Counter(n.op_type for n in g.nodes)
    assert ops["IntPadGrad"] == 1 and ops["IntInstanceNormalization"] == 3 and ops["IntInstanceNormGrad"] == 3
    assert all(np.dtype(n.outputs[0].dtype).kind == "i" for n in g.nodes if n.op_type == "Pad")


def _model(tail: str) -> onnx.ModelProto:
    """x [N, 8] -> MatMul (8 -> 6) -> h, then ``tail`` -> logits."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.uniform(-0.8, 0.8, (8, 6)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([0, 2, 5], np.int64), "idx")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"])]
    width = 6
    if tail in ("Sigmoid", "Tanh", "Neg", "LeakyRelu", "HardSigmoid", "HardSwish", "Erf", "Exp"):
        nodes.append(helper.make_node(tail, ["h"], ["logits"]))
    elif tail == "Sub":
        nodes += [helper.make_node("Tanh", ["h"], ["t"]), helper.make_node("Sub", ["h", "t"], ["logits"])]
    elif tail == "Concat":
        nodes += [helper.make_node("Sigmoid", ["h"], ["s"]), helper.make_node("Concat", ["s", "h"], ["logits"], axis=1)]
        width = 12
    else:  # Gather of three columns at a constant index tensor
        nodes.append(helper.make_node("Gather", ["h", "idx"], ["logits"], axis=1))
        width = 3
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", width])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _step(x: np.ndarray) -> float:
    """The grid step 2^e of 8-bit values of max |x| (intref.core.requantize's exponent)."""
    m = float(np.abs(x).max())
    e = int(np.ceil(np.log2(m / 127))) if m else 0
    return 2.0 ** (e + (1 if np.floor(m / 2.0**e + 0.5) > 127 else 0))


# the op's stated error (intref.expo / arith) on top of its output rounding, and the
# sensitivity to its input's rounding to 8 bits (|f'| <= 1/4, 1, 1)
BOUNDS = {"Sigmoid": (1e-3, 0.25), "Tanh": (2e-3, 1.0), "Neg": (0.0, 1.0), "Sub": (2e-3, 2.0), "Concat": (1e-3, 1.0),
          "Gather": (0.0, 1.0), "LeakyRelu": (0.0, 1.0), "HardSigmoid": (0.0, 0.2), "HardSwish": (2.0**-24, 1.5),
          "Erf": (3.3e-3, 2 / np.sqrt(np.pi))}
# Exp: i-exp's relative error 3.2e-3 (+ 2^-17) and slope exp(x), both scaled by the largest output
EXP = (3.2e-3, 1.0)


@pytest.mark.parametrize("tail", [*sorted(BOUNDS), "Exp"])
def test_lowered_op_is_within_its_bound_of_the_float_op(tail: str) -> None:
    model = _model(tail)
    x = np.random.default_rng(1).standard_normal((BATCH, 8)).astype(np.float32) * 2
    integer = rctc.compile(model, mode="rct", batch_size=BATCH, seed=2)
    flt = rctc.compile(model, mode="rct", batch_size=BATCH, seed=2, elementwise="float")
    assert integer.graph.meta["float_islands"] == []
    assert tail in {n.op_type for n in flt.graph.nodes}
    if tail == "Gather":  # the layout op itself, on the integers
        assert all(np.dtype(n.outputs[0].dtype).kind == "i" for n in integer.graph.nodes if n.op_type == tail)
    else:
        assert tail not in {n.op_type for n in integer.graph.nodes}
    got, want = integer.predict(x)["logits"], flt.predict(x)["logits"]
    h = x @ numpy_helper.to_array(model.graph.initializer[0])
    op_err, slope = BOUNDS.get(tail, EXP)
    if tail == "Exp":
        top = float(np.exp(h).max())
        op_err, slope = op_err * top + 2.0**-17, slope * top
    bound = _step(want) / 2 + op_err + slope * _step(h) / 2 + 1e-6
    assert np.abs(got - want).max() <= bound
    if tail in ("Neg", "Gather"):  # exact on the integers: the float op of the rounded input
        assert np.abs(got - want).max() <= _step(h) / 2 + 1e-6
