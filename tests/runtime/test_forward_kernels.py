"""Forward kernels of operator set v1 against onnxruntime (one-node ONNX models).

Each case builds a single ONNX node with ``onnx.helper``, runs it in onnxruntime, builds the same
node in an rctc IR graph (output shapes/dtypes taken from onnxruntime) and runs the registered
kernel; outputs must match in shape, dtype and value, and inputs must be left untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from rctc.ir import Graph
from rctc.node_ids import assign_node_ids
from rctc.runtime.kernels import KERNELS, KernelContext
from rctc.runtime.kernels._im2col import pad_spatial, window_view

RNG = np.random.default_rng(1234)
I64_MAX = np.iinfo(np.int64).max


def f32(*shape: int, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


def i64(*vals: int) -> np.ndarray:
    return np.asarray(vals, dtype=np.int64)


def run_ref(op: str, inputs: list, attrs: dict, n_out: int, opset: int, ref: str = "ort") -> list[np.ndarray]:
    """Run a one-node ONNX model in onnxruntime (``ref="ort"``) or onnx.reference (``"onnx"``)."""
    names, vis, feeds = [], [], {}
    for i, a in enumerate(inputs):
        if a is None:
            names.append("")
            continue
        names.append(f"in{i}")
        vis.append(helper.make_tensor_value_info(f"in{i}", helper.np_dtype_to_tensor_dtype(a.dtype), a.shape))
        feeds[f"in{i}"] = a
    while names and names[-1] == "":
        names.pop()
    outs = [f"out{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **attrs)
    graph = helper.make_graph([node], "t", vis, [onnx.ValueInfoProto(name=o) for o in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    if ref == "onnx":
        return [np.asarray(r) for r in ReferenceEvaluator(model).run(None, feeds)]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def run_rctc(op: str, inputs: list, attrs: dict, out_specs: list, ctx: KernelContext | None = None) -> list:
    g = Graph()
    vals = [None if a is None else g.add_input(f"in{i}", a.shape, a.dtype) for i, a in enumerate(inputs)]
    node = g.add_node(op, vals, [(f"out{i}", s, d) for i, (s, d) in enumerate(out_specs)], attrs=attrs)
    assign_node_ids(g)  # the key of the node's random stream (Dropout)
    before = [None if a is None else a.copy() for a in inputs]
    res = KERNELS[op](ctx or KernelContext(), node, *inputs)
    for a, b in zip(inputs, before, strict=True):
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg=f"{op} modified an input")
    return list(res) if isinstance(res, tuple) else [res]


def check(
    op: str,
    inputs: list,
    attrs: dict | None = None,
    n_out: int = 1,
    opset: int = 18,
    ctx: KernelContext | None = None,
    rctc_attrs: dict | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    ref: str = "ort",
) -> list[np.ndarray]:
    """Run one node in onnxruntime (or onnx.reference) and in rctc and compare every output."""
    attrs = attrs or {}
    want = run_ref(op, inputs, attrs, n_out, opset, ref)
    got = run_rctc(op, inputs, attrs if rctc_attrs is None else rctc_attrs, [(w.shape, w.dtype) for w in want], ctx)
    assert len(got) == len(want)
    for i, (g_, w) in enumerate(zip(got, want, strict=True)):
        g_ = np.asarray(g_)
        assert g_.shape == w.shape, f"{op} output {i}: shape {g_.shape} != {w.shape}"
        assert g_.dtype == w.dtype, f"{op} output {i}: dtype {g_.dtype} != {w.dtype}"
        if np.issubdtype(w.dtype, np.floating):
            np.testing.assert_allclose(g_, w, rtol=rtol, atol=atol, err_msg=f"{op} output {i}")
        else:
            np.testing.assert_array_equal(g_, w, err_msg=f"{op} output {i}")
    return got


# ---------------------------------------------------------------- element-wise
BCAST = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((4,), (2, 3, 4)), ((2, 1, 4), (3, 1)), ((), (2, 3)), ((5, 1), (1, 6))]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("shapes", BCAST, ids=str)
def test_binary_broadcast(op: str, shapes: tuple) -> None:
    a, b = f32(*shapes[0]), f32(*shapes[1], lo=0.5, hi=2.0)
    check(op, [a, b])


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_binary_int(op: str, dtype: type) -> None:
    a = RNG.integers(-50, 50, size=(3, 5)).astype(dtype)
    b = np.asarray([7, -3, 2, -9, 5], dtype=dtype)
    check(op, [a, b])


@pytest.mark.parametrize("op,attrs", [("Relu", {}), ("Tanh", {}), ("Exp", {}), ("Neg", {}), ("Identity", {}),
                                      ("Sigmoid", {}), ("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.2})])
def test_unary(op: str, attrs: dict) -> None:
    check(op, [f32(2, 3, 5, lo=-5, hi=5)], attrs)


def test_sigmoid_stable_and_sqrt() -> None:
    x = np.asarray([-1e4, -100.0, -30.0, -1e-8, 0.0, 1e-8, 30.0, 100.0, 1e4], dtype=np.float32)
    got = check("Sigmoid", [x])[0]
    assert np.all(np.isfinite(got))
    check("Sqrt", [f32(4, 5, lo=0.0, hi=9.0)])


@pytest.mark.parametrize("y", [f32(3, 4, lo=-2, hi=2), np.float32(2.0), np.asarray(3, np.int64), f32(4, lo=0, hi=3)],
                         ids=["tensor", "scalar", "int-exp", "bcast"])
def test_pow(y: Any) -> None:
    check("Pow", [f32(3, 4, lo=0.1, hi=3.0), np.asarray(y)])


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.7), (-0.5, None), (None, 0.3), (None, None), (1.0, -1.0)])
def test_clip_inputs(lo: float | None, hi: float | None) -> None:
    as_in = [None if v is None else np.float32(v) for v in (lo, hi)]
    check("Clip", [f32(4, 5)] + [None if v is None else np.asarray(v) for v in as_in], opset=13)


@pytest.mark.parametrize("attrs", [{"min": -0.5, "max": 0.7}, {"min": 0.1}, {"max": -0.2}, {}])
def test_clip_attrs_opset6(attrs: dict) -> None:
    check("Clip", [f32(4, 5)], attrs, opset=6)


@pytest.mark.parametrize("shapes", [[(3, 4)], [(3, 4), (4,)], [(2, 1, 4), (3, 1), (4,)], [(1,), (2, 3), (2, 3), (3,)]],
                         ids=str)
def test_sum(shapes: list) -> None:
    check("Sum", [f32(*s) for s in shapes])


@pytest.mark.parametrize("x,to", [
    (np.asarray([-2.7, -1.5, -0.2, 0.0, 0.6, 1.5, 3.9], np.float32), onnx.TensorProto.INT32),
    (np.asarray([-2.7, 0.0, 0.6], np.float32), onnx.TensorProto.BOOL),
    (np.asarray([-3, 0, 7], np.int64), onnx.TensorProto.FLOAT),
    (np.asarray([True, False]), onnx.TensorProto.FLOAT),
    (f32(3, 2), onnx.TensorProto.DOUBLE),
    (np.asarray([1, 200, 255], np.int64), onnx.TensorProto.UINT8),
], ids=["f2i", "f2b", "i2f", "b2f", "f2d", "i2u8"])
def test_cast(x: np.ndarray, to: int) -> None:
    check("Cast", [x], {"to": to})


@pytest.mark.parametrize("n_out", [1, 2])
def test_dropout_inference(n_out: int) -> None:
    x = f32(3, 4)
    check("Dropout", [x, np.asarray(0.3, np.float32)], n_out=n_out, opset=13)
    # onnxruntime's opset-10 Dropout returns an all-false mask at inference; opset >= 12 (and
    # onnx.reference) give all-true, which rctc follows for every opset: compare Y only there.
    check("Dropout", [x], {"ratio": 0.4}, opset=10)


@pytest.mark.parametrize("how", ["ctx", "input"])
def test_dropout_training(how: str) -> None:
    x = f32(200, 50, lo=0.5, hi=1.5)
    ratio = np.asarray(0.25, np.float32)
    inputs = [x, ratio, np.asarray(True)] if how == "input" else [x, ratio]
    specs = [(x.shape, np.float32), (x.shape, np.bool_)]
    def ctx() -> KernelContext:
        return KernelContext(training=how == "ctx", seed=7)

    y, mask = run_rctc("Dropout", inputs, {}, specs, ctx())
    assert y.dtype == np.float32 and mask.dtype == np.bool_
    np.testing.assert_allclose(y, np.where(mask, x / np.float32(0.75), 0), rtol=1e-6)
    assert abs(mask.mean() - 0.75) < 0.02
    y2, mask2 = run_rctc("Dropout", inputs, {}, specs, ctx())
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(mask, mask2)


# ---------------------------------------------------------------- conv
CONV_CASES = [
    ((2, 3, 8, 8), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 2, 7, 7), (3, 2, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 9, 8), (2, 2, 3, 3), {"strides": [2, 2]}),
    ((2, 2, 9, 9), (3, 2, 3, 3), {"dilations": [2, 2], "pads": [2, 1, 2, 1]}),
    ((1, 3, 6, 7), (2, 3, 2, 3), {"pads": [0, 1, 2, 1], "strides": [2, 1]}),
    ((1, 2, 7, 6), (3, 2, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 2, 7, 6), (3, 2, 4, 4), {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    ((1, 2, 6, 6), (3, 2, 2, 2), {"auto_pad": "SAME_LOWER"}),
    ((1, 2, 8, 7), (3, 2, 3, 3), {"auto_pad": "VALID", "strides": [2, 3]}),
    ((2, 4, 6, 6), (6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    ((2, 6, 7, 7), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((2, 4, 6, 6), (8, 1, 3, 3), {"group": 4, "dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    ((2, 3, 10), (4, 3, 3), {"pads": [1, 2], "strides": [2]}),
    ((1, 2, 5, 6, 4), (3, 2, 3, 3, 2), {"pads": [1, 0, 1, 1, 1, 0], "strides": [1, 2, 1]}),
    ((1, 1, 1, 1), (2, 1, 1, 1), {}),
]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("xs,ws,attrs", CONV_CASES, ids=[str(c[2]) + str(c[0]) for c in CONV_CASES])
def test_conv(xs: tuple, ws: tuple, attrs: dict, bias: bool) -> None:
    inputs = [f32(*xs), f32(*ws, lo=-1, hi=1)]
    if bias:
        inputs.append(f32(ws[0]))
    check("Conv", inputs, attrs, rtol=1e-5, atol=1e-5)


def test_conv_kernel_shape_attr_and_float32() -> None:
    got = check("Conv", [f32(1, 2, 5, 5), f32(3, 2, 3, 3)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})
    assert got[0].dtype == np.float32


def test_window_view_is_a_zero_copy_view() -> None:
    x = f32(2, 3, 7, 6)
    kernel, strides, dil, pads, outs = [3, 2], [2, 1], [1, 2], [1, 0, 1, 2], [4, 6]
    xp = pad_spatial(x, pads)
    assert pad_spatial(x, [0, 0, 0, 0]) is x
    view = window_view(xp, kernel, strides, dil, outs)
    assert np.shares_memory(view, xp) and view.shape == (2, 3, 3, 2, 4, 6)
    # element (n, c, i, j, oh, ow) is xp[n, c, oh*s0 + i*d0, ow*s1 + j*d1]
    assert view[1, 2, 2, 1, 3, 5] == xp[1, 2, 3 * 2 + 2 * 1, 5 * 1 + 1 * 2]


# ---------------------------------------------------------------- gemm / matmul
@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("tb", [0, 1])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 2.0), (-1.5, 0.0), (2.0, 1.0)])
def test_gemm_trans(ta: int, tb: int, alpha: float, beta: float) -> None:
    a = f32(5, 3) if ta else f32(3, 5)
    b = f32(4, 5) if tb else f32(5, 4)
    check("Gemm", [a, b, f32(3, 4)], {"transA": ta, "transB": tb, "alpha": alpha, "beta": beta})


@pytest.mark.parametrize("cshape", [None, (), (4,), (1, 4), (3, 1), (3, 4)], ids=str)
def test_gemm_c_broadcast(cshape: tuple | None) -> None:
    inputs = [f32(3, 5), f32(4, 5)] + ([] if cshape is None else [f32(*cshape)])
    check("Gemm", inputs, {"transB": 1, "beta": 0.7})


def test_gemm_int32() -> None:  # onnxruntime has no integer Gemm: plain int64 numpy reference
    a, b = RNG.integers(-9, 9, (3, 5)).astype(np.int32), RNG.integers(-9, 9, (4, 5)).astype(np.int32)
    c = i64(1, 2, 3, 4)
    attrs = {"transB": 1, "alpha": 3.0, "beta": 2.0}
    got = run_rctc("Gemm", [a, b, c.astype(np.int32)], attrs, [((3, 4), np.int32)])[0]
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, 3 * a.astype(np.int64) @ b.T.astype(np.int64) + 2 * c)


MATMUL = [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 5)),
          ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (4,)), ((4,), (2, 4, 3))]


@pytest.mark.parametrize("sa,sb", MATMUL, ids=str)
def test_matmul(sa: tuple, sb: tuple) -> None:
    check("MatMul", [f32(*sa), f32(*sb)])


# ---------------------------------------------------------------- pooling
POOL_CASES = [
    ((1, 2, 8, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((2, 3, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ((2, 3, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 6, 6), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1, "pads": [1, 1, 1, 1]}),
    ((1, 2, 8, 7), {"kernel_shape": [2, 3], "strides": [3, 2], "ceil_mode": 1}),
    ((1, 2, 5, 6), {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1, "pads": [1, 1, 1, 1]}),
    ((1, 2, 7, 8), {"kernel_shape": [3, 2], "pads": [1, 0, 2, 1]}),
    ((1, 2, 9, 9), {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 7, 6), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 7, 6), {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 7, 6), {"kernel_shape": [3, 3], "auto_pad": "VALID", "strides": [2, 2]}),
    ((2, 3, 11), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
]


@pytest.mark.parametrize("xs,attrs", POOL_CASES, ids=[str(c[1]) for c in POOL_CASES])
def test_max_pool(xs: tuple, attrs: dict) -> None:
    check("MaxPool", [f32(*xs)], attrs)


def test_max_pool_int8_and_indices_rejected() -> None:
    x = RNG.integers(-128, 127, size=(1, 2, 5, 5)).astype(np.int8)
    check("MaxPool", [x], {"kernel_shape": [2, 2], "pads": [1, 1, 0, 0]}, opset=12)
    with pytest.raises(ValueError, match="Indices"):
        run_rctc("MaxPool", [f32(1, 1, 4, 4)], {"kernel_shape": [2, 2]}, [((1, 1, 3, 3), np.float32)] * 2)


@pytest.mark.parametrize("include_pad", [0, 1])
@pytest.mark.parametrize("xs,attrs", POOL_CASES, ids=[str(c[1]) for c in POOL_CASES])
def test_average_pool(xs: tuple, attrs: dict, include_pad: int) -> None:
    check("AveragePool", [f32(*xs)], {**attrs, "count_include_pad": include_pad}, opset=19)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("xs", [(2, 3, 5, 4), (2, 3, 7), (1, 2, 3, 4, 2)], ids=str)
def test_global_pool(op: str, xs: tuple) -> None:
    check(op, [f32(*xs)])


# ---------------------------------------------------------------- normalisation
def _bn_inputs(xs: tuple) -> list:
    c = xs[1]
    return [f32(*xs), f32(c, lo=0.5, hi=1.5), f32(c), f32(c), f32(c, lo=0.5, hi=2.0)]


@pytest.mark.parametrize("xs", [(2, 3, 4, 5), (4, 3), (2, 3, 6)], ids=str)
def test_batch_norm_inference(xs: tuple) -> None:
    check("BatchNormalization", _bn_inputs(xs), {"epsilon": 1e-3}, opset=15)


@pytest.mark.parametrize("xs", [(4, 3, 4, 5), (8, 3)], ids=str)
def test_batch_norm_training_mode_attr(xs: tuple) -> None:
    check("BatchNormalization", _bn_inputs(xs), {"training_mode": 1, "momentum": 0.8}, n_out=3, opset=15)


def test_batch_norm_ctx_training() -> None:
    inputs = _bn_inputs((4, 3, 5, 5))
    check("BatchNormalization", inputs, {"training_mode": 1}, n_out=3, opset=15,
          ctx=KernelContext(training=True), rctc_attrs={})
    want = run_ref("BatchNormalization", inputs, {"training_mode": 1}, 3, 15)[0]
    got = run_rctc("BatchNormalization", inputs, {}, [(want.shape, want.dtype)], KernelContext(training=True))
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axis,xs", [(-1, (2, 3, 8)), (1, (2, 3, 4)), (2, (2, 3, 4, 5)), (0, (3, 4))], ids=str)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("n_out", [1, 3])
def test_layer_norm(axis: int, xs: tuple, bias: bool, n_out: int) -> None:
    norm_shape = xs[axis:] if axis >= 0 else xs[axis:]
    inputs = [f32(*xs), f32(*norm_shape)] + ([f32(*norm_shape)] if bias else [])
    check("LayerNormalization", inputs, {"axis": axis, "epsilon": 1e-4}, n_out=n_out, opset=17)


@pytest.mark.parametrize("attrs", [{"size": 3}, {"size": 4, "alpha": 1e-2, "beta": 0.5, "bias": 2.0}, {"size": 5}])
def test_lrn(attrs: dict) -> None:
    x = f32(2, 6, 3, 3, lo=-3, hi=3)
    size = attrs["size"]
    # ONNX spec text, channel by channel in float64: window [c - floor((size-1)/2), c + ceil((size-1)/2)]
    sq = np.zeros(x.shape)
    for c in range(x.shape[1]):
        lo, hi = max(0, c - (size - 1) // 2), min(x.shape[1] - 1, c + -(-(size - 1) // 2))
        sq[:, c] = np.sum(x[:, lo : hi + 1].astype(np.float64) ** 2, axis=1)
    a, b, k = attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0)
    want = x / (k + a / size * sq) ** b
    got = run_rctc("LRN", [x], attrs, [(x.shape, np.float32)])[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if size % 2:  # onnxruntime only accepts odd sizes (onnx.reference's LRN loops over the wrong axis)
        check("LRN", [x], attrs)


# ---------------------------------------------------------------- reductions / softmax
REDUCE = [(None, 1, 0), ([1], 1, 0), ([-1, 0], 0, 0), ([2], 0, 0), ([], 1, 1), ([], 0, 0)]


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean"])
@pytest.mark.parametrize("axes,keep,noop", REDUCE, ids=str)
def test_reduce_axes_input(op: str, axes: list | None, keep: int, noop: int) -> None:
    inputs = [f32(2, 3, 4), None if axes is None else np.asarray(axes, np.int64)]
    check(op, inputs, {"keepdims": keep, "noop_with_empty_axes": noop}, opset=18)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean"])
@pytest.mark.parametrize("axes,keep", [(None, 1), ([1], 1), ([-1, 0], 0), ([2], 0)], ids=str)
def test_reduce_axes_attr(op: str, axes: list | None, keep: int) -> None:
    attrs = {"keepdims": keep} | ({} if axes is None else {"axes": axes})
    check(op, [f32(2, 3, 4)], attrs, opset=11 if op == "ReduceSum" else 13)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [None, -1, 0, 1, -2])
def test_softmax(op: str, axis: int | None) -> None:
    x = f32(3, 4, 5, lo=-50, hi=50)
    x[0, 0, 0] = 1e4
    got = check(op, [x], {} if axis is None else {"axis": axis}, opset=13)
    assert np.all(np.isfinite(got[0]))


@pytest.mark.parametrize("attrs", [{}, {"axis": 1}, {"axis": -1, "keepdims": 0}, {"axis": 2, "select_last_index": 1},
                                   {"axis": 0, "select_last_index": 1, "keepdims": 0}])
def test_argmax(attrs: dict) -> None:
    x = RNG.integers(0, 3, size=(3, 4, 5)).astype(np.float32)  # many ties
    check("ArgMax", [x], attrs, opset=13)


# ---------------------------------------------------------------- shape ops
@pytest.mark.parametrize("axis", [0, 1, 2, 4, -1, -3])
def test_flatten(axis: int) -> None:
    check("Flatten", [f32(2, 3, 4, 5)], {"axis": axis})


@pytest.mark.parametrize("xs,shape,allowzero", [((2, 3, 4), [0, -1], 0), ((2, 3, 4), [4, 0, 2, -1], 0),
                                                ((2, 3, 4), [-1], 0), ((0, 3), [3, 0], 1), ((2, 3, 4), [2, 0, 4], 1)],
                         ids=str)
def test_reshape(xs: tuple, shape: list, allowzero: int) -> None:
    x = f32(*xs)
    if allowzero and 0 in shape and x.size:
        with pytest.raises(ValueError):
            run_rctc("Reshape", [x, i64(*shape)], {"allowzero": 1}, [((0,), np.float32)])
        return
    check("Reshape", [x, i64(*shape)], {"allowzero": allowzero})


@pytest.mark.parametrize("perm", [None, [0, 2, 1, 3], [3, 1, 0, 2]])
def test_transpose(perm: list | None) -> None:
    check("Transpose", [f32(2, 3, 4, 5)], {} if perm is None else {"perm": perm})


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis: int) -> None:
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for i, s in enumerate(shapes):
        s[axis] = i + 1
    check("Concat", [f32(*s) for s in shapes], {"axis": axis})


@pytest.mark.parametrize("axes", [None, [1], [-1, 0]], ids=str)
@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze(axes: list | None, opset: int) -> None:
    x = f32(1, 1, 3, 1)
    if opset >= 13:
        check("Squeeze", [x, None if axes is None else i64(*axes)], opset=opset)
    else:
        check("Squeeze", [x], {} if axes is None else {"axes": axes}, opset=opset)


@pytest.mark.parametrize("axes", [[0], [-1], [0, 3], [-1, 1], [4, 0]], ids=str)
@pytest.mark.parametrize("opset", [11, 13])
def test_unsqueeze(axes: list, opset: int) -> None:
    x = f32(2, 3, 4)
    if opset >= 13:
        check("Unsqueeze", [x, i64(*axes)], opset=opset)
    else:
        check("Unsqueeze", [x], {"axes": axes}, opset=opset)


@pytest.mark.parametrize("axis,idx", [(0, [2, -1, 0]), (1, [[0, -2], [3, 1]]), (-1, -1), (2, [4, 0, -5])], ids=str)
def test_gather(axis: int, idx: Any) -> None:
    check("Gather", [f32(3, 4, 5), np.asarray(idx, np.int64)], {"axis": axis})
    check("Gather", [f32(3, 4, 5), np.asarray(idx, np.int32)], {"axis": axis})


@pytest.mark.parametrize("attrs", [{}, {"start": 1}, {"end": -1}, {"start": -3, "end": 3}, {"start": 10}])
def test_shape(attrs: dict) -> None:
    check("Shape", [f32(2, 3, 4, 5)], attrs, opset=15)


@pytest.mark.parametrize("xs,shape", [((3, 1), [2, 1, 4]), ((1, 4), [3, 1]), ((2, 3), [2, 3]), ((3,), [2, 1, 3])],
                         ids=str)
def test_expand(xs: tuple, shape: list) -> None:
    check("Expand", [f32(*xs), i64(*shape)])


SLICES = [
    ([1, 0], [3, I64_MAX], None, None),
    ([-1], [-I64_MAX], [1], [-1]),
    ([0, 4], [I64_MAX, -7], [-1, 0], [2, -2]),
    ([5], [1], [2], [-2]),
    ([-10], [10], [0], None),
    ([2, 1], [2, 3], [1, 2], None),
]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICES, ids=str)
def test_slice(starts: list, ends: list, axes: list | None, steps: list | None) -> None:
    inputs = [f32(4, 5, 6), i64(*starts), i64(*ends), None if axes is None else i64(*axes),
              None if steps is None else i64(*steps)]
    check("Slice", inputs)


def test_slice_opset1_attrs() -> None:
    check("Slice", [f32(4, 5, 6)], {"starts": [1, -3], "ends": [3, 100], "axes": [0, 2]}, opset=9)
