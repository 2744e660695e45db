"""The ONNX frontend (rctc.onnx_import): names, roles, folding, batch binding, external data,
and the onnx package's bundled ``light_*`` zoo models against onnxruntime."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from rctc import models
from rctc.errors import RctcError, UnsupportedOpError
from rctc.onnx_import import import_model
from rctc.runtime.executor import Executor
from rctc.runtime.kernels import KernelContext

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
# softmax of float32 logits beyond this magnitude is decided by rounding (see the light-model test)
MAX_COMPARABLE_LOGIT = 100.0
LIGHT_MODELS = sorted(glob.glob(os.path.join(LIGHT_DIR, "light_*.onnx")))


def _run(g, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # noqa: ANN001
    return Executor(g).run(feeds, [v.name for v in g.outputs], KernelContext(training=False))


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


# ----- the bundled light zoo models ----------------------------------------------------


def test_light_models_are_bundled() -> None:
    names = {os.path.basename(p)[len("light_"):-len(".onnx")] for p in LIGHT_MODELS}
    assert {"bvlc_alexnet", "resnet50", "squeezenet", "inception_v1", "inception_v2", "densenet121",
            "shufflenet", "vgg19", "zfnet512"} <= names


@pytest.mark.parametrize("path", LIGHT_MODELS, ids=[os.path.basename(p)[6:-5] for p in LIGHT_MODELS])
def test_light_model_matches_onnxruntime(path: str, rel_err: Callable) -> None:
    """Old-IR (v3, opset 9) Caffe2 exports: weights are ConstantOfShape outputs, the graph inputs
    repeat the initializer names.

    The Softmax input (the logits) is added as an output and compared too. With the constant
    weights every class gets the same logit, of magnitude 1e9 to 1e31 in most of these nets:
    there one float32 ulp of a logit is >= 100, so which classes tie for the maximum, and hence
    the probabilities, depend on rounding (BLAS processes the tail rows of a GEMM with another
    kernel, onnxruntime may not). Such probabilities are not comparable between any two float32
    implementations; for them the test compares the logits to 1e-4 and checks that the
    probabilities are a distribution. Softmax outputs of moderate logits are compared to 1e-4.
    """
    model = onnx.load(path)
    init_names = {t.name for t in model.graph.initializer}
    assert any(i.name in init_names for i in model.graph.input)  # old-IR style inputs
    cos_weights = {n.output[0] for n in model.graph.node if n.op_type == "ConstantOfShape"}
    assert cos_weights
    inferred = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
    logits_of = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Softmax"}
    for logits in logits_of.values():
        if logits not in {o.name for o in model.graph.output}:
            model.graph.output.append(inferred[logits])

    g = import_model(model, batch_size=1)
    assert len(g.inputs) == 1, [v.name for v in g.inputs]
    assert not [n for n in g.nodes if n.op_type == "ConstantOfShape"]
    for n in g.nodes:  # the folded ConstantOfShape weights are parameters, under their own names
        if n.op_type in ("Conv", "Gemm"):
            w = n.inputs[1]
            assert w.kind == "param" and w.name in cos_weights | init_names, (n.name, w)
    x = np.random.default_rng(0).standard_normal(g.inputs[0].shape).astype(np.float32)
    got = _run(g, {g.inputs[0].name: x})
    ref = _ort(model, {g.inputs[0].name: x})
    assert set(got) == set(ref)
    for k in ref:
        if k in logits_of and np.max(np.abs(ref[logits_of[k]])) > MAX_COMPARABLE_LOGIT:
            probs = got[k].reshape(len(got[k]), -1)
            assert got[k].shape == ref[k].shape and np.all(probs >= 0)
            np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
            continue
        err = rel_err(got[k], ref[k])
        assert err <= 1e-4, f"{k}: max relative error {err:.3g}"


# ----- names and roles -----------------------------------------------------------------


def test_parameters_keep_names_and_bn_stats_are_buffers() -> None:
    model = models.build("resnet8", seed=0)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    expect_param, expect_buffer = set(), set()
    for n in model.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            expect_param |= {i for i in n.input[1:] if i}
        if n.op_type == "BatchNormalization":
            expect_param |= set(n.input[1:3])
            expect_buffer |= set(n.input[3:5])
    assert expect_buffer and all(name.endswith(("running_mean", "running_var")) for name in expect_buffer)
    g = import_model(model, batch_size=4)
    assert {v.name for v in g.params()} == expect_param
    assert {v.name for v in g.values.values() if v.kind == "buffer"} == expect_buffer
    for name in expect_param | expect_buffer:
        np.testing.assert_array_equal(g.values[name].data, inits[name])


def _folding_model() -> onnx.ModelProto:
    """x[N,2,3,4] -> Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), Constant[-1]))
    -> Gemm(., Identity(Identity(W)), ConstantOfShape([5]) = 0.25) -> Relu."""
    w = np.random.default_rng(0).standard_normal((24, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Shape", ["x"], ["x_shape"], name="shape"),
        helper.make_node("Constant", [], ["zero"], name="c_zero", value=numpy_helper.from_array(np.array(0))),
        helper.make_node("Gather", ["x_shape", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Constant", [], ["ax0"], name="c_ax", value=numpy_helper.from_array(np.array([0]))),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="unsq"),
        helper.make_node("Constant", [], ["minus1"], name="c_m1", value=numpy_helper.from_array(np.array([-1]))),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"], name="reshape"),
        helper.make_node("Identity", ["W"], ["W_id1"], name="id1"),
        helper.make_node("Identity", ["W_id1"], ["W_id2"], name="id2"),
        helper.make_node("Constant", [], ["bias_shape"], name="c_bs",
                         value=numpy_helper.from_array(np.array([5], dtype=np.int64))),
        helper.make_node("ConstantOfShape", ["bias_shape"], ["fc.bias"], name="cos",
                         value=numpy_helper.from_array(np.array([0.25], dtype=np.float32))),
        helper.make_node("Gemm", ["flat", "W_id2", "fc.bias"], ["h"], name="fc"),
        helper.make_node("Relu", ["h"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "folding",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(w, "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def test_constant_identity_and_shape_reshape_folding(rel_err: Callable) -> None:
    model = _folding_model()
    onnx.checker.check_model(model)
    g = import_model(model, batch_size=3)
    assert [n.op_type for n in g.nodes] == ["Reshape", "Gemm", "Relu"]
    reshape, gemm, _ = g.nodes
    target = reshape.inputs[1]
    assert target.kind == "const" and target.data.tolist() == [3, -1]
    assert gemm.inputs[1].name == "W" and gemm.inputs[1].kind == "param"  # the Identity chain keeps W's name
    assert gemm.inputs[2].name == "fc.bias" and gemm.inputs[2].kind == "param"
    np.testing.assert_array_equal(gemm.inputs[2].data, np.full(5, 0.25, np.float32))
    assert reshape.outputs[0].shape == (3, 24)
    x = np.random.default_rng(1).standard_normal((3, 2, 3, 4)).astype(np.float32)
    assert rel_err(_run(g, {"x": x})["y"], _ort(model, {"x": x})["y"]) <= 1e-5


def test_old_opset_conversion_keeps_names_and_scalar_dropout_ratio(rel_err: Callable) -> None:
    """Opset 11: a Gemm weight stored flat and reshaped in the graph keeps its initializer name;
    Dropout's ``ratio`` attribute becomes the 0-d ``ratio`` input of opset 18."""
    w = np.random.default_rng(2).standard_normal(12).astype(np.float32)
    nodes = [
        helper.make_node("Reshape", ["fc.weight", "wshape"], ["w2d"], name="reshape_w"),
        helper.make_node("Gemm", ["x", "w2d"], ["h"], name="fc"),
        helper.make_node("Dropout", ["h"], ["y"], name="drop", ratio=0.3),
    ]
    graph = helper.make_graph(
        nodes, "old",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(w, "fc.weight"), numpy_helper.from_array(np.array([4, 3]), "wshape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=6)
    g = import_model(model, batch_size=2)
    gemm = next(n for n in g.nodes if n.op_type == "Gemm")
    assert gemm.inputs[1].name == "fc.weight" and gemm.inputs[1].kind == "param"
    assert gemm.inputs[1].shape == (4, 3)
    drop = next(n for n in g.nodes if n.op_type == "Dropout")
    ratio = drop.inputs[1]
    assert ratio.shape == () and ratio.data.shape == () and float(ratio.data) == pytest.approx(0.3)
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    assert rel_err(_run(g, {"x": x})["y"], x @ w.reshape(4, 3)) <= 1e-5


def test_onnx_model_is_not_modified_by_import() -> None:
    model = _folding_model()
    before = model.SerializeToString()
    import_model(model, batch_size=2)
    assert model.SerializeToString() == before


# ----- batch binding -------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 5])
def test_dynamic_batch_is_bound(batch: int) -> None:
    g = import_model(models.build("mlp", seed=0), batch_size=batch)
    assert g.inputs[0].shape == (batch, 64)
    assert g.outputs[0].shape == (batch, 10)
    assert all(n.outputs[0].shape[0] == batch for n in g.nodes)


def test_unknown_leading_dim_is_bound() -> None:
    """A leading dim with neither a value nor a name (``None`` in onnx.helper) is the batch too."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
    )
    g = import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), batch_size=7)
    assert g.inputs[0].shape == (7, 3) and g.outputs[0].shape == (7, 3)


def test_symbolic_non_batch_dim_is_an_error() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["tokens"], ["y"])], "g",
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["N", "L"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "L"])],
    )
    with pytest.raises(RctcError, match=r"'tokens'.*symbolic dimension L at axis 1"):
        import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), batch_size=2)


def test_unsupported_ops_are_listed_before_any_work() -> None:
    nodes = [
        helper.make_node("Sin", ["x"], ["a"], name="sin_a"),
        helper.make_node("Sin", ["a"], ["b"], name="sin_b"),
        helper.make_node("Cos", ["b"], ["y"], name="cos_1"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "L"])],  # symbolic L: not reached
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "L"])],
    )
    with pytest.raises(UnsupportedOpError) as info:
        import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), batch_size=2)
    msg = str(info.value)
    assert "Sin (nodes: sin_a, sin_b)" in msg and "Cos (nodes: cos_1)" in msg and "\n" not in msg


# ----- external data -------------------------------------------------------------------


def _external_model(folder: Path, location: str, data_file: Path | None) -> tuple[Path, np.ndarray]:
    """A Gemm model in ``folder`` whose weight lives in external data at ``location``; the bytes are
    written to ``data_file`` (None: not written)."""
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    tensor = numpy_helper.from_array(w, "fc.weight")
    if data_file is not None:
        data_file.write_bytes(tensor.raw_data)
    external_data_helper.set_external_data(tensor, location=location, offset=0, length=len(tensor.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc.weight"], ["y"], name="fc")], "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [tensor],
    )
    path = folder / "model.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path, w


def test_external_data_in_the_model_folder_loads(tmp_path: Path) -> None:
    path, w = _external_model(tmp_path, "weights.bin", tmp_path / "weights.bin")
    g = import_model(path, batch_size=2)
    assert g.values["fc.weight"].kind == "param"
    np.testing.assert_array_equal(g.values["fc.weight"].data, w)


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_external_data_outside_the_model_folder_is_refused(where: str, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    if where == "parent":
        location = "../secret.bin"
    elif where == "absolute":
        location = str(secret)
    else:
        location = "link.bin"
        (folder / "link.bin").symlink_to(secret)
    path, _ = _external_model(folder, location, secret)
    with pytest.raises(RctcError, match="outside the model's folder") as info:
        import_model(path, batch_size=2)
    assert "fc.weight" in str(info.value)


def test_missing_external_data_file_is_an_error(tmp_path: Path) -> None:
    path, _ = _external_model(tmp_path, "weights.bin", None)
    with pytest.raises(RctcError, match=r"external data file 'weights.bin' for 'fc.weight' is missing"):
        import_model(path, batch_size=2)


def test_truncated_external_data_file_is_an_error(tmp_path: Path) -> None:
    path, _ = _external_model(tmp_path, "weights.bin", tmp_path / "weights.bin")
    data = (tmp_path / "weights.bin").read_bytes()
    (tmp_path / "weights.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(RctcError, match="weights.bin"):
        import_model(path, batch_size=2)


def test_light_model_with_lrn_compiles_and_trains_in_rct_mode() -> None:
    """Inception-v1 (LRN after its first convolutions) used to stop at 'no gradient rule for LRN'."""
    import rctc

    path = os.path.join(LIGHT_DIR, "light_inception_v1.onnx")
    m = rctc.compile(path, mode="rct", batch_size=1)
    assert sum(n.op_type == "LRNGrad" for n in m.graph.nodes) == 2
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    res = m.train(x, np.array([3, 7]), epochs=1, lr=1e-3)
    assert res["steps"] == 2 and np.isfinite(res["final_loss"])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_opset20_gelu_is_lowered_to_opset18_ops_and_trains(approximate: str) -> None:
    """ONNX Gelu (opset 20) becomes Erf / Tanh arithmetic before the opset conversion; the forward
    matches onnxruntime on the original model and the model trains."""
    import onnxruntime as ort

    import rctc

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((4, 6)) / 2).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Gelu", ["h"], ["g"], approximate=approximate),
             helper.make_node("Gelu", ["g"], ["y"], approximate=approximate)]
    graph = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9)
    x = (rng.standard_normal((8, 4)) * 3).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    m = rctc.compile(model, mode="fp32", batch_size=8, loss="mse")
    assert "Gelu" not in {n.op_type for n in m.graph.nodes}
    np.testing.assert_allclose(m.predict(x)["y"], want, rtol=1e-5, atol=1e-6)
    target = np.zeros((8, 6), np.float32)
    before = m.evaluate(x, target)["loss"]
    m.train(x, target, steps=20, lr=0.05, shuffle=False)
    assert m.evaluate(x, target)["loss"] < before
