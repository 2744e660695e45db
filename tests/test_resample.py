"""Resize (nearest with every rounding mode, linear; half_pixel / pytorch_half_pixel / asymmetric /
align_corners; scales or sizes; axes), Upsample of old opsets and Pad (constant / reflect / edge,
pads as an input, axes, negative pads): forward vs onnxruntime, gradients vs finite differences
and PyTorch, and a refused mode named in one line."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import rctc
from rctc.errors import RctcError
from rctc.ir import Graph
from rctc.passes.build_backward import backward
from rctc.runtime.executor import Executor
from rctc.runtime.kernels import KernelContext
from tests.passes.gradcheck import check_op_grad


def _out(rank: int) -> list[onnx.ValueInfoProto]:
    return [helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(rank)])]


RNG = np.random.default_rng(11)


def _model(op: str, x_shape: tuple[int, ...], consts: list[tuple[str, np.ndarray | None]], attrs: dict,
           opset: int = 18) -> onnx.ModelProto:
    """x -> op(x, consts...) -> y, the constants as initializers (a None one is an absent input)."""
    inits = [numpy_helper.from_array(a, n) for n, a in consts if a is not None]
    node = helper.make_node(op, ["x"] + [n if a is not None else "" for n, a in consts], ["y"], **attrs)
    graph = helper.make_graph([node], op.lower(), [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                 list(x_shape))],
                              _out(len(x_shape)), inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _f32(*v: float) -> np.ndarray:
    return np.array(v, np.float32)


def _i64(*v: int) -> np.ndarray:
    return np.array(v, np.int64)


#: (input shape, scales, sizes, attributes)
RESIZE: list[tuple[tuple[int, ...], np.ndarray | None, np.ndarray | None, dict[str, Any]]] = [
    ((2, 3, 4, 5), _f32(1, 1, 2, 2), None, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                                            "nearest_mode": "floor"}),
    ((2, 3, 4, 5), _f32(1, 1, 3, 1.5), None, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                                              "nearest_mode": "floor"}),
    ((1, 2, 5, 4), _f32(1, 1, 2, 3), None, {"mode": "nearest"}),  # half_pixel, round_prefer_floor
    ((1, 2, 5, 4), _f32(1, 1, 0.6, 2.5), None, {"mode": "nearest", "nearest_mode": "round_prefer_ceil"}),
    ((1, 2, 5, 4), None, _i64(1, 2, 9, 7), {"mode": "nearest", "coordinate_transformation_mode": "align_corners",
                                            "nearest_mode": "ceil"}),
    ((2, 3, 4, 5), _f32(1, 1, 2, 2), None, {"mode": "linear"}),  # bilinear, align_corners=False
    ((2, 3, 4, 5), _f32(1, 1, 2, 2), None, {"mode": "linear", "coordinate_transformation_mode": "align_corners"}),
    ((2, 3, 4, 5), None, _i64(2, 3, 7, 3), {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}),
    ((2, 3, 6), _f32(1, 1, 2.5), None, {"mode": "linear", "coordinate_transformation_mode": "asymmetric"}),
    ((2, 3, 4, 5), None, _i64(8, 10), {"mode": "linear", "axes": [2, 3]}),
    ((1, 2, 3, 4, 2), _f32(1, 1, 2, 1, 2), None, {"mode": "linear"}),  # trilinear
]


@pytest.mark.parametrize("case", range(len(RESIZE)))
def test_resize_forward_matches_onnxruntime(case: int) -> None:
    x_shape, scales, sizes, attrs = RESIZE[case]
    model = _model("Resize", x_shape, [("roi", None), ("scales", scales), ("sizes", sizes)], attrs)
    x = RNG.standard_normal(x_shape).astype(np.float32)
    want = _ort(model, x)
    got = rctc.compile(model, mode="fp32", batch_size=x_shape[0], loss="mse").predict(x)["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", [1, 3, 4, 5, 7, 8, 10])
def test_resize_gradient_matches_finite_differences(case: int) -> None:
    x_shape, scales, sizes, attrs = RESIZE[case]
    x = RNG.standard_normal(x_shape)
    check_op_grad("Resize", {"x": x, "roi": None, "scales": scales, "sizes": sizes}, attrs, wrt=["x"])


@pytest.mark.parametrize("torch_mode,align,attrs", [
    ("nearest", None, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}),
    ("bilinear", False, {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}),
    ("bilinear", True, {"mode": "linear", "coordinate_transformation_mode": "align_corners"}),
])
@pytest.mark.parametrize("factor", [2.0, 3.0])
def test_resize_gradient_matches_pytorch(torch_mode: str, align: bool | None, attrs: dict, factor: float) -> None:
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((2, 3, 4, 5))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.interpolate(xt, scale_factor=factor, mode=torch_mode, align_corners=align)
    r = RNG.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(r))
    g = Graph()
    xv = g.add_value("x", x.shape, np.float64, "param", x)
    xv.trainable = True
    sv = g.add_const("scales", _f32(1, 1, factor, factor))
    g.add_node("Resize", [xv, None, sv], [("y", tuple(yt.shape), np.float64)], dict(attrs))
    grads = backward(g, {"y": g.add_const("R", r)}, [xv])
    out = Executor(g).run({}, ["y", grads["x"].name], KernelContext(training=True))
    np.testing.assert_allclose(out["y"], yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out[grads["x"].name], xt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_of_opset_9_is_read_as_resize(mode: str) -> None:
    model = _model("Upsample", (2, 3, 4, 5), [("scales", _f32(1, 1, 2, 3))], {"mode": mode}, opset=9)
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    m = rctc.compile(model, mode="fp32", batch_size=2, loss="mse")
    assert "Resize" in {n.op_type for n in m.graph.nodes}
    np.testing.assert_allclose(m.predict(x)["y"], _ort(model, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attrs,what", [({"mode": "cubic"}, "mode 'cubic'"),
                                        ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"},
                                         "tf_crop_and_resize"),
                                        ({"mode": "linear", "antialias": 1}, "antialias")])
def test_resize_mode_not_implemented_is_refused_by_name(attrs: dict, what: str) -> None:
    model = _model("Resize", (2, 3, 4, 4), [("roi", None), ("scales", _f32(1, 1, 0.5, 0.5))], attrs)
    with pytest.raises(RctcError, match=what):
        rctc.compile(model, mode="fp32", batch_size=2, loss="mse").predict(np.zeros((2, 3, 4, 4), np.float32))


#: (input shape, pads, constant value, axes, mode)
PAD: list[tuple[tuple[int, ...], np.ndarray, np.ndarray | None, np.ndarray | None, str]] = [
    ((2, 3, 4, 5), _i64(0, 0, 1, 2, 0, 0, 2, 1), None, None, "constant"),
    ((2, 3, 4, 5), _i64(0, 0, 1, 2, 0, 0, 2, 1), _f32(1.5), None, "constant"),
    ((2, 3, 4, 5), _i64(1, 3, 2, 1), None, _i64(2, 3), "reflect"),
    ((2, 3, 4, 5), _i64(0, 0, 3, 2, 0, 0, 1, 4), None, None, "edge"),
    ((2, 3, 6), _i64(0, 0, -2, 0, 1, 3), _f32(-1.0), None, "constant"),  # negative pads crop
    ((2, 3, 6), _i64(2, -1), None, _i64(-1), "reflect"),
    ((2, 3, 4, 5), _i64(0, 1, 0, 0, 0, 2, 0, 0), None, None, "edge"),  # channel padding
]


@pytest.mark.parametrize("case", range(len(PAD)))
def test_pad_forward_matches_onnxruntime(case: int) -> None:
    x_shape, pads, value, axes, mode = PAD[case]
    model = _model("Pad", x_shape, [("pads", pads), ("value", value), ("axes", axes)], {"mode": mode})
    x = RNG.standard_normal(x_shape).astype(np.float32)
    want = _ort(model, x)
    got = rctc.compile(model, mode="fp32", batch_size=x_shape[0], loss="mse").predict(x)["y"]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", range(len(PAD)))
def test_pad_gradient_matches_finite_differences(case: int) -> None:
    x_shape, pads, value, axes, mode = PAD[case]
    x = RNG.standard_normal(x_shape)
    check_op_grad("Pad", {"x": x, "pads": pads, "value": value, "axes": axes}, {"mode": mode}, wrt=["x"])


@pytest.mark.parametrize("mode,torch_mode", [("constant", "constant"), ("reflect", "reflect"), ("edge", "replicate")])
def test_pad_gradient_matches_pytorch(mode: str, torch_mode: str) -> None:
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((2, 3, 4, 5))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.pad(xt, (2, 3, 1, 2), mode=torch_mode)  # W: 2 / 3, H: 1 / 2
    r = RNG.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(r))
    g = Graph()
    xv = g.add_value("x", x.shape, np.float64, "param", x)
    xv.trainable = True
    g.add_node("Pad", [xv, g.add_const("pads", _i64(0, 0, 1, 2, 0, 0, 2, 3))], [("y", tuple(yt.shape), np.float64)],
               {"mode": mode})
    grads = backward(g, {"y": g.add_const("R", r)}, [xv])
    out = Executor(g).run({}, ["y", grads["x"].name], KernelContext(training=True))
    np.testing.assert_array_equal(out["y"], yt.detach().numpy())
    np.testing.assert_allclose(out[grads["x"].name], xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_pad_wrap_is_refused_by_name() -> None:
    model = _model("Pad", (2, 3, 4), [("pads", _i64(0, 0, 1, 0, 0, 1))], {"mode": "wrap"}, opset=19)
    with pytest.raises(RctcError, match="wrap"):
        rctc.compile(model, mode="fp32", batch_size=2, loss="mse").predict(np.zeros((2, 3, 4), np.float32))
