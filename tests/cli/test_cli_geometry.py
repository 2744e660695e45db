"""Window geometry a model's attributes make impossible: one line and exit 2 at compile, no traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def _conv_transpose(path: Path, output_shape: list[int]) -> Path:
    w = numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_shape=output_shape)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, *output_shape])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def _conv(path: Path, pads: list[int]) -> Path:
    w = numpy_helper.from_array(np.ones((1, 1, 5, 5), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=pads)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, "h", "w"])], [w])
    return _save_unchecked(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), path)


def _save_unchecked(m: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(m.SerializeToString())
    return path


@pytest.mark.parametrize("mode", ["fp32", "rct"])
def test_conv_transpose_output_shape_past_a_stride_is_refused(tmp_path: Path, refused: Callable[..., str],
                                                             mode: str) -> None:
    model = _conv_transpose(tmp_path / "ct.onnx", [12, 12])  # full output 7: at most 8 allowed
    line = refused(tmp_path, ["compile", model, "-o", tmp_path / "ct.rct", "--mode", mode, "--loss", "mse"],
                   "ConvTranspose output_shape [12, 12] exceeds the full output [7, 7]")
    assert "fix output_shape" in line


def test_a_window_larger_than_the_padded_input_is_refused(tmp_path: Path, refused: Callable[..., str]) -> None:
    model = _conv(tmp_path / "c.onnx", [0, 0, 0, 0])  # 5x5 kernel on a 3x3 input, no pads
    line = refused(tmp_path, ["compile", model, "-o", tmp_path / "c.rct", "--loss", "mse"], "c.onnx")
    assert "impossible shape" in line or "larger than the padded input" in line, line


def _single(path: Path, node: onnx.NodeProto, out_channels: int, inits: list[onnx.TensorProto]) -> Path:
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_channels, "h", "w"])],
                          inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


@pytest.mark.parametrize("case", ["maxpool_window", "conv_transpose_pads"])
def test_a_negative_inferred_size_is_refused_at_compile(tmp_path: Path, refused: Callable[..., str],
                                                        case: str) -> None:
    """Shape inference gives these a negative spatial size; compile refuses them naming the node
    (they used to compile and then crash or write empty outputs at predict / train)."""
    if case == "maxpool_window":
        node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[20, 20], name="pool")
        model, want = _single(tmp_path / "m.onnx", node, 1, []), "[4, 1, -11, -11]"
    else:
        w = numpy_helper.from_array(np.ones((1, 2, 3, 3), np.float32), "w")
        node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], pads=[9, 9, 9, 9], name="up")
        model, want = _single(tmp_path / "m.onnx", node, 2, [w]), "[4, 2, -8, -8]"
    for mode in ("fp32", "rct"):
        line = refused(tmp_path, ["compile", model, "-o", tmp_path / "m.rct", "--mode", mode, "--loss", "mse",
                                  "--batch-size", 4], f"'{node.name}' ({node.op_type}) gives 'y' the impossible shape")
        assert want in line and "fix the model" in line


@pytest.mark.parametrize("group, w_shape", [(0, (2, 1, 3, 3)), (3, (2, 1, 3, 3)), (2, (2, 2, 3, 3))])
def test_a_conv_group_that_does_not_agree_with_the_channels_is_refused(
        tmp_path: Path, refused: Callable[..., str], group: int, w_shape: tuple[int, ...]) -> None:
    w = numpy_helper.from_array(np.ones(w_shape, np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=group, name="c1")
    model = _single(tmp_path / "g.onnx", node, w_shape[0], [w])  # x has 1 channel
    line = refused(tmp_path, ["compile", model, "-o", tmp_path / "g.rct", "--loss", "mse"], "Conv 'c1' has group=")
    assert f"group={group}" in line
