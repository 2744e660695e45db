"""The conformance bugs of issue 14 (tests/test_import_edge_cases.py tests them through the API),
through the CLI a user runs: ``rctc compile`` / ``predict`` / ``train`` / ``export`` on the file,
exit 0 with the outputs onnxruntime gives, or exit 2 with one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

V = helper.make_tensor_value_info


def _model(nodes: list, inputs: list, outputs: list, inits: tuple = (), opset: int = 18) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "case", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _refused(r, phrase: str) -> None:  # noqa: ANN001
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0] and "Traceback" not in r.stderr, r.stderr


def _save(tmp: Path, model: onnx.ModelProto, x: np.ndarray, y: np.ndarray | None = None) -> tuple[Path, Path]:
    onnx.save(model, tmp / "m.onnx")
    np.savez(tmp / "d.npz", **({"x": x} if y is None else {"x": x, "y": y}))
    return tmp / "m.onnx", tmp / "d.npz"


def _compile(cli: Callable, onnx_path: Path, *opts: str) -> Path:
    out = onnx_path.with_suffix(".rct")
    r = cli(["compile", onnx_path, "-o", out, *opts])
    assert r.exit_code == 0, r.stderr
    return out


def _predict(cli: Callable, rct: Path, data: Path, name: str) -> np.ndarray:
    r = cli(["predict", rct, "--data", data, "-o", rct.with_suffix(".p.npz")])
    assert r.exit_code == 0, r.stderr
    return np.load(rct.with_suffix(".p.npz"))[name]


def test_zero_d_output_predicts_one_batch_and_train_is_refused(cli: Callable, tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32), "W")
    model = _model([helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
                    helper.make_node("ReduceSum", ["h"], ["y"], name="sum", keepdims=0)],
                   [V("x", TensorProto.FLOAT, ["N", 4])], [V("y", TensorProto.FLOAT, [])], (w,))
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    src, data = _save(tmp_path, model, x, np.ones(2, np.float32))
    rct = _compile(cli, src, "--mode", "fp32", "--batch-size", "2", "--loss", "mse")
    got = _predict(cli, rct, data, "y")
    assert got.shape == () and np.allclose(got, _ort(src, x), rtol=1e-5)
    _refused(cli(["train", rct, "--data", data, "--steps", "1"]), "no batch (first) dimension")


def test_dropout_run_time_training_mode_is_refused(cli: Callable, tmp_path: Path) -> None:
    model = _model([helper.make_node("Dropout", ["x", "ratio", "t"], ["y"], name="drop")],
                   [V("x", TensorProto.FLOAT, ["N", 4]), V("t", TensorProto.BOOL, [])],
                   [V("y", TensorProto.FLOAT, ["N", 4])],
                   (numpy_helper.from_array(np.array(0.5, np.float32), "ratio"),))
    onnx.save(model, tmp_path / "m.onnx")
    _refused(cli(["compile", tmp_path / "m.onnx", "--batch-size", "2"]), "reads its training_mode from 't'")


def test_opset22_global_max_pool_compiles_and_predicts(cli: Callable, tmp_path: Path) -> None:
    model = _model([helper.make_node("GlobalMaxPool", ["x"], ["p"], name="gmp"),
                    helper.make_node("Flatten", ["p"], ["y"], name="flat")],
                   [V("x", TensorProto.FLOAT, ["N", 2, 5, 5])], [V("y", TensorProto.FLOAT, ["N", 2])], opset=22)
    x = np.random.default_rng(6).standard_normal((3, 2, 5, 5)).astype(np.float32)
    src, data = _save(tmp_path, model, x)
    got = _predict(cli, _compile(cli, src, "--mode", "fp32", "--batch-size", "3", "--loss", "mse"), data, "y")
    np.testing.assert_array_equal(got, _ort(src, x))


def test_zero_size_dimension_predicts_and_a_zero_batch_is_refused(cli: Callable, tmp_path: Path) -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                   [V("x", TensorProto.FLOAT, ["N", 0, 3])], [V("y", TensorProto.FLOAT, ["N", 0, 3])])
    src, data = _save(tmp_path, model, np.zeros((2, 0, 3), np.float32))
    got = _predict(cli, _compile(cli, src, "--mode", "rct", "--batch-size", "2", "--loss", "mse"), data, "y")
    assert got.shape == (2, 0, 3)
    fixed = _model([helper.make_node("Relu", ["x"], ["y"])], [V("x", TensorProto.FLOAT, [0, 3])],
                   [V("y", TensorProto.FLOAT, [0, 3])])
    onnx.save(fixed, tmp_path / "z.onnx")
    _refused(cli(["compile", tmp_path / "z.onnx", "--batch-size", "2", "--loss", "mse"]),
             "has a zero-size first dimension")


def test_gemm_scalar_bias_compiles_trains_and_exports_in_rct(cli: Callable, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    model = _model([helper.make_node("Gemm", ["x", "W", "c"], ["y"], name="fc")],
                   [V("x", TensorProto.FLOAT, ["N", 4])], [V("y", TensorProto.FLOAT, ["N", 3])],
                   (numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W"),
                    numpy_helper.from_array(np.array(0.5, np.float32), "c")))
    x = rng.standard_normal((8, 4)).astype(np.float32)
    src, data = _save(tmp_path, model, x, (np.arange(8) % 3).astype(np.int64))
    rct = _compile(cli, src, "--mode", "rct", "--batch-size", "4")
    r = cli(["train", rct, "--data", data, "--steps", "3", "--backend", "numpy"])
    assert r.exit_code == 0, r.stderr
    r = cli(["export", rct, "-o", tmp_path / "f.onnx"])
    assert r.exit_code == 0, r.stderr
    np.testing.assert_array_equal(_ort(tmp_path / "f.onnx", x), _predict(cli, rct, data, "y"))


def test_unsupported_element_type_is_refused_in_one_line(cli: Callable, tmp_path: Path) -> None:
    model = _model([helper.make_node("Cast", ["x"], ["y"], name="cast", to=TensorProto.FLOAT8E4M3FN)],
                   [V("x", TensorProto.FLOAT, ["N", 4])], [V("y", TensorProto.FLOAT8E4M3FN, ["N", 4])], opset=21)
    onnx.save(model, tmp_path / "m.onnx")
    _refused(cli(["compile", tmp_path / "m.onnx", "--batch-size", "2", "--loss", "mse"]),
             "has an unsupported element type FLOAT8E4M3FN")
