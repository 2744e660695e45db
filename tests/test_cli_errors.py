"""Bad input on the command line: exit code 2, exactly one line ``rctc: error: ...`` on stderr,
no traceback, and nothing written (an existing output file is left as it was)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rctc import models


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_clean_failure(res, *needles: str) -> str:  # noqa: ANN001
    assert res.exit_code == 2, res
    assert isinstance(res.exception, SystemExit), res  # not an uncaught exception
    lines = res.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {res.stderr!r}"
    assert lines[0].startswith("rctc: error: ")
    assert "Traceback" not in res.stderr + res.stdout
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def _compile_fails(cli: Callable, folder: Path, model: Path, *needles: str) -> str:
    """``rctc compile MODEL -o out.rct`` fails cleanly and leaves ``folder`` byte-identical."""
    before = _snapshot(folder)
    res = cli(["compile", model, "-o", folder / "out.rct", "--mode", "fp32", "--batch-size", "4"])
    line = _assert_clean_failure(res, *needles)
    assert _snapshot(folder) == before, "a failed compile wrote or changed files"
    return line


# ----- compile -------------------------------------------------------------------------


def test_missing_model_file(cli: Callable, tmp_path: Path) -> None:
    _compile_fails(cli, tmp_path, tmp_path / "nope.onnx", "nope.onnx", "no such file")


def test_random_bytes_are_not_onnx(cli: Callable, tmp_path: Path) -> None:
    bad = tmp_path / "random.onnx"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _compile_fails(cli, tmp_path, bad, "random.onnx")


def test_text_file_is_not_onnx(cli: Callable, tmp_path: Path) -> None:
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is a README, not a model\n" * 20)
    _compile_fails(cli, tmp_path, bad, "notes.onnx")


def test_truncated_onnx_file(cli: Callable, tmp_path: Path) -> None:
    data = models.path("resnet8").read_bytes()
    bad = tmp_path / "resnet8_half.onnx"
    bad.write_bytes(data[: len(data) // 2])
    _compile_fails(cli, tmp_path, bad, "resnet8_half.onnx")


def test_unsupported_ops_are_all_listed(cli: Callable, tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Sin", ["x"], ["a"], name="first_sin"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Cos", ["b"], ["c"], name="pos_cos"),
        helper.make_node("Sin", ["c"], ["y"], name="second_sin"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    path = tmp_path / "unsupported.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(path))
    _compile_fails(cli, tmp_path, path, "Sin (nodes: first_sin, second_sin)", "Cos (nodes: pos_cos)")


def test_pow_exponent_on_a_gradient_path_is_refused(cli: Callable, tmp_path: Path) -> None:
    """Pow is differentiated w.r.t. its base only; an exponent computed from a trained weight is
    one clear line at compile time."""
    inits = [numpy_helper.from_array(np.full((4, 4), 0.1, np.float32), "w"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Pow", ["two", "h"], ["y"], name="the_pow")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    path = tmp_path / "pow.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(path))
    res = cli(["compile", path, "-o", tmp_path / "out.rct", "--loss", "mse", "--batch-size", "4"])
    _assert_clean_failure(res, "'the_pow'", "exponent 'h' is on a gradient path")
    assert not (tmp_path / "out.rct").exists()


def test_invalid_batch_size(cli: Callable, tmp_path: Path) -> None:
    before = _snapshot(tmp_path)
    res = cli(["compile", models.path("mlp"), "-o", tmp_path / "out.rct", "--mode", "fp32", "--batch-size", "0"])
    _assert_clean_failure(res, "batch")
    assert _snapshot(tmp_path) == before


def test_existing_output_is_untouched_when_compile_fails(cli: Callable, tmp_path: Path) -> None:
    out = tmp_path / "out.rct"
    out.write_bytes(b"the user's previous model")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(models.path("lenet").read_bytes()[:1000])
    _compile_fails(cli, tmp_path, bad, "bad.onnx")  # the snapshot covers out.rct's bytes
    assert out.read_bytes() == b"the user's previous model"


def test_compile_error_in_a_real_process(tmp_path: Path) -> None:
    """The real entry point prints the one line and exits 2 (no traceback from any layer)."""
    proc = subprocess.run(
        [sys.executable, "-c", "from rctc.cli import main; main()", "compile", str(tmp_path / "nope.onnx"),
         "-o", str(tmp_path / "out.rct")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("rctc: error: "), proc.stderr
    assert list(tmp_path.iterdir()) == []


# ----- predict -------------------------------------------------------------------------


@pytest.fixture()
def mlp_rct(compiled_models: dict) -> Path:
    return compiled_models["mlp"][1]


def _predict_fails(cli: Callable, rct: Path, data: Path, folder: Path, *needles: str) -> str:
    out = folder / "pred.npz"
    out.write_bytes(b"old predictions")
    before = _snapshot(folder)
    line = _assert_clean_failure(cli(["predict", rct, "--data", data, "-o", out]), *needles)
    assert _snapshot(folder) == before, "a failed predict wrote or changed files"
    return line


def test_predict_x_shape_does_not_fit(cli: Callable, mlp_rct: Path, tmp_path: Path) -> None:
    data = tmp_path / "x.npz"
    np.savez(data, x=np.zeros((13, 65), np.float32))
    _predict_fails(cli, mlp_rct, data, tmp_path, "x.npz", "[65]", "[64]")


def test_predict_refuses_object_arrays(cli: Callable, mlp_rct: Path, tmp_path: Path) -> None:
    data = tmp_path / "objects.npz"
    x = np.empty(13, dtype=object)
    for i in range(13):
        x[i] = np.zeros(64, np.float32)
    np.savez(data, x=x)  # stored with pickle; rctc must not unpickle it
    _predict_fails(cli, mlp_rct, data, tmp_path, "objects.npz", "pickle")


def test_predict_data_without_x(cli: Callable, mlp_rct: Path, tmp_path: Path) -> None:
    data = tmp_path / "wrong_key.npz"
    np.savez(data, images=np.zeros((3, 64), np.float32))
    _predict_fails(cli, mlp_rct, data, tmp_path, "wrong_key.npz", "'x'")


def test_predict_x_with_nan(cli: Callable, mlp_rct: Path, tmp_path: Path) -> None:
    data = tmp_path / "nan.npz"
    x = np.zeros((5, 64), np.float32)
    x[3, 7] = np.nan
    np.savez(data, x=x)
    _predict_fails(cli, mlp_rct, data, tmp_path, "nan.npz", "NaN")


def test_predict_on_an_onnx_file_instead_of_rct(cli: Callable, tmp_path: Path) -> None:
    data = tmp_path / "x.npz"
    np.savez(data, x=np.zeros((2, 64), np.float32))
    _predict_fails(cli, models.path("mlp"), data, tmp_path, "rctc compile")


@pytest.mark.parametrize("damage", ["metadata", "weights", "truncated"])
def test_predict_on_a_damaged_rct(damage: str, cli: Callable, mlp_rct: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.rct"
    raw = bytearray(mlp_rct.read_bytes())
    if damage == "metadata":
        raw[-200] ^= 0xFF  # inside the JSON metadata at the end of the file
    elif damage == "weights":
        raw[len(raw) // 2] ^= 0x01  # one bit of a weight: the file parses, the checksum does not match
    else:
        raw = raw[: len(raw) // 2]
    bad.write_bytes(bytes(raw))
    data = tmp_path / "x.npz"
    np.savez(data, x=np.zeros((2, 64), np.float32))
    _predict_fails(cli, bad, data, tmp_path, "bad.rct")
