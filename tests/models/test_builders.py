"""Tests for rctc.models: checker, onnxruntime / reference parity, ready files, parameter counts,
and an independent torch.nn.functional re-implementation of each architecture from the spec."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator
from torch_twins import torch_forward

from rctc import models

NAMES = ["mlp", "lenet", "resnet8", "resnet20", "mobilenet", "tiny_transformer"]


def _inputs(name: str, batch: int, seed: int = 1) -> np.ndarray:
    _, shape, dtype = models.input_spec(name)
    rng = np.random.default_rng(seed)
    if dtype == np.int64:
        return rng.integers(0, 64, size=(batch, *shape)).astype(np.int64)
    return rng.standard_normal((batch, *shape)).astype(dtype)


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], feeds)[0]


def _params(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.fixture(scope="module", params=NAMES)
def built(request: pytest.FixtureRequest) -> tuple[str, onnx.ModelProto]:
    return request.param, models.build(request.param)


def test_builders_keys() -> None:
    assert set(models.BUILDERS) == set(NAMES) | {"unet", "groupnorm_cnn", "kws_gru", "tabular_mlp"}
    with pytest.raises(KeyError):
        models.build("nope")
    with pytest.raises(KeyError):
        models.input_spec("nope")


def test_checker_and_header(built: tuple[str, onnx.ModelProto]) -> None:
    name, model = built
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    inp, shape, dtype = models.input_spec(name)
    (gin,) = model.graph.input
    (gout,) = model.graph.output
    assert gin.name == inp and gout.name == "logits"
    assert gin.type.tensor_type.elem_type == onnx.helper.np_dtype_to_tensor_dtype(dtype)
    in_dims = gin.type.tensor_type.shape.dim
    assert in_dims[0].dim_param == "N" and [d.dim_value for d in in_dims[1:]] == list(shape)
    out_dims = gout.type.tensor_type.shape.dim
    assert out_dims[0].dim_param == "N" and out_dims[1].dim_value == models.num_classes(name)
    node_names = [n.name for n in model.graph.node]
    assert all(node_names) and len(set(node_names)) == len(node_names)


@pytest.mark.parametrize("batch", [2, 5])
def test_onnxruntime_runs(built: tuple[str, onnx.ModelProto], batch: int) -> None:
    name, model = built
    out = _ort(model, {models.input_spec(name)[0]: _inputs(name, batch)})
    assert out.shape == (batch, models.num_classes(name)) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert np.ptp(out) > 0  # not a degenerate constant output


def test_reference_evaluator_agrees(built: tuple[str, onnx.ModelProto]) -> None:
    name, model = built
    feeds = {models.input_spec(name)[0]: _inputs(name, 2)}
    ref = ReferenceEvaluator(model).run(["logits"], feeds)[0]
    np.testing.assert_allclose(ref, _ort(model, feeds), rtol=1e-4, atol=1e-4)


def test_ready_file_equals_builder(built: tuple[str, onnx.ModelProto]) -> None:
    name, model = built
    p = models.path(name)
    assert p.is_file() and p.suffix == ".onnx"
    assert p.read_bytes() == model.SerializeToString()
    if name == "resnet20":
        assert p.stat().st_size < 1.5e6


def test_write_ready_files_is_deterministic(tmp_path) -> None:
    written = models.write_ready_files(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{n}.onnx" for n in models.READY)
    for p in written:
        assert p.read_bytes() == models.path(p.stem).read_bytes()
    assert not list(tmp_path.glob("*.tmp"))


def test_seed_changes_weights_only() -> None:
    a, b, c = models.build("lenet", seed=0), models.build("lenet", seed=0), models.build("lenet", seed=3)
    assert a.SerializeToString() == b.SerializeToString()
    assert a.SerializeToString() != c.SerializeToString()
    assert [n.SerializeToString() for n in a.graph.node] == [n.SerializeToString() for n in c.graph.node]


def _conv(cout: int, cin: int, k: int, bias: bool) -> int:
    return cout * cin * k * k + (cout if bias else 0)


def _resnet_count(blocks: int) -> int:
    n = _conv(16, 3, 3, False) + 2 * 16
    cin = 16
    for cout in (16, 32, 64):
        for b in range(blocks):
            n += _conv(cout, cin, 3, False) + 2 * cout + _conv(cout, cout, 3, False) + 2 * cout
            if b == 0 and cin != cout:
                n += _conv(cout, cin, 1, False) + 2 * cout
            cin = cout
    return n + 64 * 10 + 10


def test_parameter_counts() -> None:
    expected = {
        "mlp": 64 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10,
        "lenet": (8 * 1 * 9 + 8) + (16 * 8 * 9 + 16) + (64 * 32 + 32) + (32 * 10 + 10),
        "resnet8": _resnet_count(1),
        "resnet20": _resnet_count(3),
        "mobilenet": (16 * 3 * 9 + 2 * 16)
        + sum(c * 9 + 2 * c + o * c + 2 * o for c, o in ((16, 32), (32, 64), (64, 64), (64, 128)))
        + 128 * 10 + 10,
        "tiny_transformer": 64 * 32 + 16 * 32 + 2 * (2 * 32) + 4 * (32 * 32 + 32)
        + (32 * 64 + 64) + (64 * 32 + 32) + (32 * 4 + 4),
    }
    assert expected["mlp"] == 6570 and expected["lenet"] == 3658
    assert expected["resnet20"] > 270_000  # the paper's ~0.27M
    for name, count in expected.items():
        assert models.parameter_count(models.build(name)) == count, name


def test_initializer_names_and_init() -> None:
    p = _params(models.build("resnet20"))
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.bn1.running_mean", "layer1.2.conv2.weight",
                "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight", "layer3.2.bn2.bias",
                "fc.weight", "fc.bias"):
        assert key in p, key
    assert "layer1.0.downsample.0.weight" not in p and "layer2.1.downsample.0.weight" not in p
    assert p["layer2.0.downsample.0.weight"].shape == (32, 16, 1, 1)
    assert p["fc.weight"].shape == (10, 64)
    assert np.all(p["bn1.weight"] == 1) and np.all(p["bn1.bias"] == 0)
    assert np.all(p["bn1.running_mean"] == 0) and np.all(p["bn1.running_var"] == 1)
    bound = 1 / np.sqrt(16 * 9)
    w = p["layer1.0.conv1.weight"]
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound and abs(w.mean()) < 0.1 * bound
    bn = [n for n in models.build("resnet8").graph.node if n.op_type == "BatchNormalization"][0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in bn.attribute}
    assert attrs["epsilon"] == pytest.approx(1e-5) and attrs["momentum"] == pytest.approx(0.9)
    m = _params(models.build("mobilenet"))
    assert m["layers.0.dw.weight"].shape == (16, 1, 3, 3) and np.abs(m["layers.0.dw.weight"]).max() <= 1 / 3
    assert m["fc.bias"].shape == (10,) and np.abs(m["fc.bias"]).max() <= 1 / np.sqrt(128)
    t = _params(models.build("tiny_transformer"))
    assert t["embed.weight"].shape == (64, 32) and t["pos_embed"].shape == (16, 32)
    assert t["attn.scale"].shape == () and t["attn.scale"] == np.float32(0.25)
    assert t["attn.k_proj.weight"].shape == (32, 32) and t["head.weight"].shape == (32, 4)


def test_matches_torch_twin(built: tuple[str, onnx.ModelProto]) -> None:
    name, model = built
    x = _inputs(name, 3, seed=7)
    expected = torch_forward(name, _params(model), x)
    got = _ort(model, {models.input_spec(name)[0]: x})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
