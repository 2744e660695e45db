"""Edge cases a conformance run over ONNX's operator tests found (issue 14), each against
onnxruntime on the same file: a model with no parameters saved and predicted, a 0-d output,
Dropout's training_mode, opset-22 models the version converter cannot lower, zero-size
dimensions, a Gemm with a scalar bias in rct mode, and a weight folding reshaped coming back
in its file's shape."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import rctc
from rctc.errors import RctcError

V = helper.make_tensor_value_info


def _model(nodes: list, inputs: list, outputs: list, inits: tuple = (), opset: int = 18) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "case", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _ort(model: onnx.ModelProto | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("mode", ["fp32", "qat", "rct"])
def test_model_without_parameters_saves_loads_and_predicts(mode: str, tmp_path: Path, cli: Callable) -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                   [V("x", TensorProto.FLOAT, ["N", 4])], [V("y", TensorProto.FLOAT, ["N", 4])])
    onnx.save(model, tmp_path / "relu.onnx")
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    rctc.compile(model, mode=mode, batch_size=2).save(tmp_path / "relu.rct")
    got = rctc.load(tmp_path / "relu.rct").predict(x)["y"]
    want = _ort(model, {"x": x})[0]
    if mode == "rct":  # integer from end to end: the input quantised to 8 bits, so within one step of 2^e
        np.testing.assert_allclose(got, want, rtol=0, atol=float(np.abs(x).max()) / 127)  # 2^e <= 2 max/127
        assert not np.array_equal(got, want)
    else:
        np.testing.assert_array_equal(got, want)
    np.savez(tmp_path / "x.npz", x=x)
    r = cli(["predict", str(tmp_path / "relu.rct"), "--data", str(tmp_path / "x.npz"), "-o", str(tmp_path / "p.npz")])
    assert r.exit_code == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "p.npz")["y"], got)


def _scalar_output_model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32), "W")
    return _model([helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
                   helper.make_node("ReduceSum", ["h"], ["y"], name="sum", keepdims=0)],
                  [V("x", TensorProto.FLOAT, ["N", 4])], [V("y", TensorProto.FLOAT, [])], (w,))


@pytest.mark.parametrize("mode", ["fp32", "rct"])
def test_zero_d_output_predicts_one_batch_and_is_refused_for_training(mode: str) -> None:
    model = _scalar_output_model()
    m = rctc.compile(model, mode=mode, batch_size=2, loss="mse")
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    got = m.predict(x)["y"]
    want = _ort(model, {"x": x})[0]
    assert got.shape == want.shape == ()
    np.testing.assert_allclose(got, want, rtol=1e-5 if mode == "fp32" else 0.05)
    with pytest.raises(RctcError, match=r"output 'y' has no batch dimension .* predict exactly 2 samples") as info:
        m.predict(np.ones((3, 4), np.float32))
    assert len(str(info.value).splitlines()) == 1
    with pytest.raises(RctcError, match=r"output 'y' has shape \[\], no batch .* dimension") as info:
        m.train(np.ones((4, 4), np.float32), np.ones(4, np.float32), steps=1)
    assert len(str(info.value).splitlines()) == 1


def _dropout_model(training_mode: np.ndarray | None) -> onnx.ModelProto:
    ins = [V("x", TensorProto.FLOAT, ["N", 4])]
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "ratio"),
             numpy_helper.from_array(np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32), "W")]
    if training_mode is None:
        ins.append(V("t", TensorProto.BOOL, []))
    else:
        inits.append(numpy_helper.from_array(training_mode, "t"))
    return _model([helper.make_node("Dropout", ["x", "ratio", "t"], ["d"], name="drop"),
                   helper.make_node("MatMul", ["d", "W"], ["y"], name="mm")],
                  ins, [V("y", TensorProto.FLOAT, ["N", 3])], tuple(inits))


def test_dropout_run_time_training_mode_is_refused() -> None:
    with pytest.raises(RctcError, match=r"Dropout 'drop' reads its training_mode from 't', computed at run time") as e:
        rctc.compile(_dropout_model(None), mode="fp32", batch_size=2)
    assert len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("flag", [True, False])
def test_dropout_constant_training_mode_trains_with_dropout_and_predicts_without(flag: bool) -> None:
    model = _dropout_model(np.array(flag))
    x = np.random.default_rng(4).standard_normal((4, 4)).astype(np.float32)
    m = rctc.compile(model, mode="fp32", batch_size=4)
    w = model.graph.initializer[1]
    np.testing.assert_allclose(m.predict(x)["y"], x @ numpy_helper.to_array(w), rtol=1e-6)  # no dropout
    dropout = next(n for n in m.graph.nodes if n.op_type == "Dropout")
    assert float(dropout.attrs["ratio"]) == 0.5 and len(dropout.inputs) == 1  # drops in train only


def test_opset22_model_the_converter_cannot_lower_is_read_directly(rel_err: Callable) -> None:
    model = _model([helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
                    helper.make_node("GlobalMaxPool", ["c"], ["p"], name="gmp"),
                    helper.make_node("Flatten", ["p"], ["y"], name="flat")],
                   [V("x", TensorProto.FLOAT, ["N", 2, 5, 5])], [V("y", TensorProto.FLOAT, ["N", 3])],
                   (numpy_helper.from_array(np.random.default_rng(5).standard_normal((3, 2, 3, 3)).astype(np.float32),
                                            "W"),), opset=22)
    x = np.random.default_rng(6).standard_normal((3, 2, 5, 5)).astype(np.float32)
    m = rctc.compile(model, mode="fp32", batch_size=3)
    assert rel_err(m.predict(x)["y"], _ort(model, {"x": x})[0]) <= 1e-5


def test_opset22_node_with_an_attribute_opset18_lacks_is_refused_by_name() -> None:
    model = _model([helper.make_node("AveragePool", ["x"], ["a"], name="pool", kernel_shape=[2, 2], dilations=[2, 2]),
                    helper.make_node("GlobalMaxPool", ["a"], ["y"], name="gmp")],
                   [V("x", TensorProto.FLOAT, ["N", 1, 6, 6])], [V("y", TensorProto.FLOAT, ["N", 1, 1, 1])], opset=22)
    with pytest.raises(RctcError, match=r"AveragePool node 'pool' \(opset 22\): .*dilations do not exist in opset 18"):
        rctc.compile(model, mode="fp32", batch_size=1, loss="mse")
    bf16 = _model([helper.make_node("GlobalMaxPool", ["x"], ["y"], name="gmp")],  # a type opset 18 lacks
                  [V("x", TensorProto.BFLOAT16, [1, 2, 3, 3])], [V("y", TensorProto.BFLOAT16, [1, 2, 1, 1])], opset=22)
    with pytest.raises(RctcError, match=r"'x' \(read by GlobalMaxPool node 'gmp'\) has an unsupported element type"):
        rctc.compile(bf16, mode="fp32", batch_size=1, loss="mse")


@pytest.mark.parametrize("mode", ["fp32", "rct"])
def test_zero_size_dimension_is_a_size_not_a_symbol(mode: str) -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                   [V("x", TensorProto.FLOAT, ["N", 0, 3])], [V("y", TensorProto.FLOAT, ["N", 0, 3])])
    m = rctc.compile(model, mode=mode, batch_size=2, loss="mse")
    assert m.graph.value("x").shape == (2, 0, 3)
    x = np.zeros((2, 0, 3), np.float32)
    assert m.predict(x)["y"].shape == _ort(model, {"x": x})[0].shape == (2, 0, 3)
    fixed = _model([helper.make_node("Relu", ["x"], ["y"])], [V("x", TensorProto.FLOAT, [0, 3])],
                   [V("y", TensorProto.FLOAT, [0, 3])])
    with pytest.raises(RctcError, match="zero-size first dimension"):
        rctc.compile(fixed, mode=mode, batch_size=2, loss="mse")


def test_gemm_with_a_scalar_bias_compiles_trains_and_exports_in_rct(tmp_path: Path, rel_err: Callable) -> None:
    rng = np.random.default_rng(7)
    model = _model([helper.make_node("Gemm", ["x", "W", "c"], ["y"], name="fc")],
                   [V("x", TensorProto.FLOAT, ["N", 4])], [V("y", TensorProto.FLOAT, ["N", 3])],
                   (numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W"),
                    numpy_helper.from_array(np.array(0.5, np.float32), "c")))
    x = rng.standard_normal((8, 4)).astype(np.float32)
    m = rctc.compile(model, mode="rct", batch_size=4)
    assert m.graph.value("c").kind == "param" and m.graph.value("c").shape == ()
    assert rel_err(m.predict(x)["y"], _ort(model, {"x": x})[0]) <= 0.05  # 8-bit weights and activations
    m.train(x, np.arange(8) % 3, steps=3, lr=0.1)
    m.export(tmp_path / "f.onnx", "float")
    exported = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "f.onnx")).graph.initializer}
    assert exported["c"].shape == ()
    np.testing.assert_array_equal(_ort(tmp_path / "f.onnx", {"x": x})[0], m.predict(x)["y"])


@pytest.mark.parametrize("mode", ["fp32", "rct"])
def test_weight_reshaped_by_folding_exports_in_the_files_shape(mode: str, tmp_path: Path) -> None:
    """An opset-11 Gemm weight stored flat (12,) and reshaped in the graph trains as (4, 3) and
    exports as the file's (12,) tensor plus a Reshape."""
    w = np.random.default_rng(8).standard_normal(12).astype(np.float32)
    model = _model([helper.make_node("Reshape", ["fc.weight", "wshape"], ["w2d"], name="reshape_w"),
                    helper.make_node("Gemm", ["x", "w2d"], ["y"], name="fc")],
                   [V("x", TensorProto.FLOAT, ["N", 4])], [V("y", TensorProto.FLOAT, ["N", 3])],
                   (numpy_helper.from_array(w, "fc.weight"), numpy_helper.from_array(np.array([4, 3]), "wshape")),
                   opset=11)
    m = rctc.compile(model, mode=mode, batch_size=2)
    assert m.graph.value("fc.weight").shape == (4, 3)
    x = np.random.default_rng(9).standard_normal((6, 4)).astype(np.float32)
    m.train(x, np.arange(6) % 3, steps=2, lr=0.1)
    m.export(tmp_path / "f.onnx", "float")
    inits = {t.name: tuple(t.dims) for t in onnx.load(str(tmp_path / "f.onnx")).graph.initializer}
    assert inits["fc.weight"] == (12,)
    np.testing.assert_allclose(_ort(tmp_path / "f.onnx", {"x": x})[0], m.predict(x)["y"], rtol=1e-6, atol=1e-7)
