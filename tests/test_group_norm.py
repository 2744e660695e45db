"""GroupNormalization (rctc/group_norm_rewrite.py): opset 18-20's per-group and opset 21's per-channel
affine, forward against onnxruntime and onnx's reference evaluator, one SGD step against
torch.nn.GroupNorm (the opset-21 meaning), and training in rct / qat / fp32."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import rctc

C, G, N = 6, 3, 3


def _model(opset: int, seed: int = 0) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    n_affine = C if opset >= 21 else G
    inits = {"gn.weight": rng.uniform(0.5, 1.5, n_affine), "gn.bias": rng.uniform(-0.5, 0.5, n_affine),
             "fc.weight": rng.uniform(-0.5, 0.5, (4, C)), "fc.bias": np.zeros(4)}
    inits = {k: v.astype(np.float32) for k, v in inits.items()}
    nodes = [helper.make_node("GroupNormalization", ["x", "gn.weight", "gn.bias"], ["g"], num_groups=G, epsilon=1e-5,
                              name="gn"),
             helper.make_node("ReduceMean", ["g", "axes"], ["p"], keepdims=0),
             helper.make_node("Gemm", ["p", "fc.weight", "fc.bias"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "gn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
                              [*(numpy_helper.from_array(v, k) for k, v in inits.items()),
                               numpy_helper.from_array(np.array([2, 3], np.int64), "axes")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10), inits


def _x(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, C, 4, 4)).astype(np.float32)


@pytest.mark.parametrize("opset", [18, 21])
def test_forward_matches_the_references(opset: int) -> None:
    model, _ = _model(opset)
    x = _x()
    ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
    m = rctc.compile(model, mode="fp32", batch_size=N)
    np.testing.assert_allclose(m.predict(x)["logits"], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0], ref,
                               rtol=1e-5, atol=1e-6)
    assert {p.name for p in m.graph.params()} == {"gn.weight", "gn.bias", "fc.weight", "fc.bias"}


def test_one_sgd_step_equals_torch_group_norm() -> None:
    torch = pytest.importorskip("torch")
    model, inits = _model(21)
    x, y = _x(), np.array([0, 3, 1])
    m = rctc.compile(model, mode="fp32", batch_size=N)
    m.train(x, y, steps=1, lr=0.1, shuffle=False)
    gn, fc = torch.nn.GroupNorm(G, C), torch.nn.Linear(C, 4)
    with torch.no_grad():
        gn.weight.copy_(torch.from_numpy(inits["gn.weight"]))
        gn.bias.copy_(torch.from_numpy(inits["gn.bias"]))
        fc.weight.copy_(torch.from_numpy(inits["fc.weight"]))
        fc.bias.copy_(torch.from_numpy(inits["fc.bias"]))
    opt = torch.optim.SGD([*gn.parameters(), *fc.parameters()], lr=0.1)
    torch.nn.functional.cross_entropy(fc(gn(torch.from_numpy(x)).mean((2, 3))), torch.from_numpy(y)).backward()
    opt.step()
    want = {"gn.weight": gn.weight, "gn.bias": gn.bias, "fc.weight": fc.weight, "fc.bias": fc.bias}
    for name, t in want.items():
        v = m.graph.value(name)  # (folding may hold gn.weight as [C, 1, 1]; export restores the file's shape)
        assert tuple(v.meta.get("source_shape", v.shape)) == tuple(t.shape), name
        np.testing.assert_allclose(v.data.reshape(t.shape), t.detach().numpy(), atol=1e-6, err_msg=name)


@pytest.mark.parametrize("mode", ["rct", "qat"])
def test_trains_in_the_quantised_modes(mode: str) -> None:
    model, _ = _model(21)
    x = np.random.default_rng(2).standard_normal((12, C, 4, 4)).astype(np.float32)
    y = np.random.default_rng(3).integers(0, 4, 12)
    m = rctc.compile(model, mode=mode, batch_size=N)
    first = m.evaluate(x, y)["loss"]
    m.train(x, y, epochs=4, lr=0.1)
    assert m.evaluate(x, y)["loss"] < first
