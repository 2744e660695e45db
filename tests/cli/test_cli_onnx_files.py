"""ONNX files a user cannot fix by guessing: one line naming the tensor / field, nothing written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rctc.models import path as model_path


def _mlp() -> onnx.ModelProto:
    return onnx.load(str(model_path("mlp")))


def _no_outputs(m: onnx.ModelProto) -> None:
    del m.graph.output[:]


def _dims_raw(m: onnx.ModelProto) -> None:
    m.graph.initializer[0].dims[0] += 1


def _dims_typed(m: onnx.ModelProto) -> None:
    t = m.graph.initializer[1]
    arr = numpy_helper.to_array(t)
    t.ClearField("raw_data")
    t.float_data.extend(arr.ravel().tolist()[:-1])


def _bad_type(m: onnx.ModelProto) -> None:
    m.graph.initializer[1].data_type = 77


def _negative_dim(m: onnx.ModelProto) -> None:
    m.graph.initializer[1].dims[0] = -10


def _constant_node_dims(m: onnx.ModelProto) -> None:
    t = numpy_helper.from_array(np.ones(4, np.float32), "c")
    t.dims[0] = 40
    m.graph.node.insert(0, helper.make_node("Constant", [], ["c_out"], value=t, name="the_const"))


CASES: dict[str, tuple[Callable[[onnx.ModelProto], None], str]] = {
    "no outputs": (_no_outputs, "the graph declares no outputs"),
    "raw data too short for dims": (_dims_raw, "tensor 'fc1.weight' declares dims [65, 64] (16640 bytes) but holds"),
    "typed data too short": (_dims_typed, "tensor 'fc1.bias' declares dims [64] (64 values) but holds 63"),
    "unknown data type": (_bad_type, "tensor 'fc1.bias' has unknown data type 77"),
    "negative dimension": (_negative_dim, "tensor 'fc1.bias' has a negative dimension"),
    "Constant value inconsistent": (_constant_node_dims, "declares dims [40]"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_inconsistent_model(case: str, tmp_path: Path, refused: Callable) -> None:
    mutate, needle = CASES[case]
    m = _mlp()
    mutate(m)
    src = tmp_path / "bad.onnx"
    src.write_bytes(m.SerializeToString())
    (tmp_path / "out.rct").write_bytes(b"previous model")
    refused(tmp_path, ["compile", src, "-o", tmp_path / "out.rct"], needle)


@pytest.mark.parametrize("field", ["node name", "initializer name", "graph input name", "metadata"])
def test_names_that_are_not_utf8(field: str, tmp_path: Path, refused: Callable) -> None:
    m = _mlp()
    marker = "ZQ" * 4
    if field == "node name":
        m.graph.node[0].name = marker
    elif field == "initializer name":
        m.graph.initializer[1].name = marker
    elif field == "graph input name":
        m.graph.input[0].name = marker
    else:
        helper.set_model_props(m, {"author": marker})
    raw = m.SerializeToString().replace(marker.encode(), b"Z\xff" + marker[2:].encode())
    (tmp_path / "bad.onnx").write_bytes(raw)
    refused(tmp_path, ["compile", tmp_path / "bad.onnx", "-o", tmp_path / "o.rct"], "which is not valid UTF-8")


def _external(tmp_path: Path, **entries: str) -> Path:
    """The MLP with fc1.weight in an external file ``w.bin`` and the given external_data entries."""
    m = _mlp()
    t = m.graph.initializer[0]
    (tmp_path / "w.bin").write_bytes(t.raw_data)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in {"location": "w.bin", **entries}.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    src = tmp_path / "ext.onnx"
    src.write_bytes(m.SerializeToString())
    return src


EXTERNAL_CASES = {
    "offset past the end": ({"offset": "16000", "length": "16384"}, "runs past the end of 'w.bin'"),
    "length past the end": ({"length": "99999"}, "runs past the end"),
    "offset alone past the end": ({"offset": "20000"}, "runs past the end"),
    "length smaller than dims": ({"length": "100"}, "its external data is 100 bytes"),
    "offset not a number": ({"offset": "12abc"}, "external data offset '12abc' is not a non-negative integer"),
    "negative length": ({"length": "-1"}, "is not a non-negative integer"),
    "NUL in location": ({"location": "w.bin\0../../etc/passwd"}, "holds a NUL byte"),
    "location leaving the folder": ({"location": "../w.bin"}, "outside the model's folder"),
    "absolute location": ({"location": "/etc/passwd"}, "outside the model's folder"),
    "missing file": ({"location": "nope.bin"}, "is missing or not a file"),
    "location is a folder": ({"location": "."}, "is missing or not a file"),
    "no location": ({"location": ""}, "names no location"),
}


@pytest.mark.parametrize("case", list(EXTERNAL_CASES))
def test_bad_external_data(case: str, tmp_path: Path, refused: Callable) -> None:
    entries, needle = EXTERNAL_CASES[case]
    (tmp_path / "model").mkdir()
    (tmp_path / "w.bin").write_bytes(b"\0" * 20000)  # a file outside the model's folder
    src = _external(tmp_path / "model", **entries)
    line = refused(tmp_path, ["compile", src, "-o", tmp_path / "model" / "o.rct"], needle)
    assert "fc1.weight" in line


def test_symlink_out_of_the_model_folder(tmp_path: Path, refused: Callable) -> None:
    (tmp_path / "model").mkdir()
    src = _external(tmp_path / "model", location="link.bin")
    os.replace(tmp_path / "model" / "w.bin", tmp_path / "outside.bin")
    os.symlink(tmp_path / "outside.bin", tmp_path / "model" / "link.bin")
    refused(tmp_path, ["compile", src, "-o", tmp_path / "model" / "o.rct"], "outside the model's folder")


def test_valid_external_data_still_compiles(tmp_path: Path, run: Callable, contract: Callable) -> None:
    src = _external(tmp_path, offset="0", length="16384")
    contract(run(["compile", src, "-o", tmp_path / "o.rct", "--batch-size", "2"]), allowed=(0,))


def test_absurd_batch_size_names_the_tensor(tmp_path: Path, refused: Callable) -> None:
    """A batch within the option's range that would still make a > 2 GiB activation: the tensor is named."""
    w = numpy_helper.from_array(np.zeros((64, 12000), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["wide"], name="mm")], "wide",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                          [helper.make_tensor_value_info("wide", TensorProto.FLOAT, ["N", 12000])], [w])
    src = tmp_path / "wide.onnx"
    src.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
    refused(tmp_path, ["compile", src, "-o", tmp_path / "o.rct", "--loss", "mse", "--mode", "fp32",
                       "--batch-size", "65536"], "tensor 'wide' would be [65536, 12000]")
