"""GRU and LSTM (rctc/rnn_unroll.py): unrolled at import into cells the ordinary gradient rules cover.

References: onnxruntime for the forward (onnx's reference evaluator for ``layout=1``, which
onnxruntime does not run), PyTorch for two SGD steps through time (both exporters), central finite
differences through onnxruntime for GRU's ``linear_before_reset=0`` (which PyTorch cannot express).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import rctc
from rctc.errors import UnsupportedOpError

H, IN, SEQ, B = 5, 3, 4, 3


def _rnn_model(op: str, direction: str = "forward", layout: int = 0, lbr: int = 0, init: bool = False,
               bias: bool = True, extra: dict | None = None, seed: int = 0) -> onnx.ModelProto:
    """x -> op -> every output flattened per sample and concatenated -> Gemm -> logits [B, 4]."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    gates = 3 if op == "GRU" else 4
    inits = {"W": rng.uniform(-0.6, 0.6, (dirs, gates * H, IN)), "R": rng.uniform(-0.6, 0.6, (dirs, gates * H, H))}
    ins = ["x", "W", "R", "", "", ""]
    if bias:
        inits["B"] = rng.uniform(-0.3, 0.3, (dirs, 2 * gates * H))
        ins[3] = "B"
    state_shape = (B, dirs, H) if layout else (dirs, B, H)
    if init:
        inits["h0"] = rng.uniform(-0.5, 0.5, state_shape)
        ins[5] = "h0"
        if op == "LSTM":
            inits["c0"] = rng.uniform(-0.5, 0.5, state_shape)
            ins.append("c0")
    outs = ["Y", "Yh"] + (["Yc"] if op == "LSTM" else [])
    attrs = {"hidden_size": H, "direction": direction, "layout": layout, **(extra or {})}
    if op == "GRU":
        attrs["linear_before_reset"] = lbr
    nodes = [helper.make_node(op, ins, outs, name="rnn", **attrs)]
    flat = []
    for o in outs:
        perm = None if layout else ([2, 0, 1, 3] if o == "Y" else [1, 0, 2])
        src = o
        if perm:
            nodes.append(helper.make_node("Transpose", [o], [f"{o}_b"], perm=perm))
            src = f"{o}_b"
        nodes.append(helper.make_node("Flatten", [src], [f"{o}_f"], axis=1))
        flat.append(f"{o}_f")
    nodes.append(helper.make_node("Concat", flat, ["feat"], axis=1))
    width = SEQ * dirs * H + dirs * H * (len(outs) - 1)
    inits["fc.weight"] = rng.uniform(-0.3, 0.3, (4, width))
    inits["fc.bias"] = np.zeros(4)
    nodes.append(helper.make_node("Gemm", ["feat", "fc.weight", "fc.bias"], ["logits"], transB=1))
    xshape = ["N", SEQ, IN] if layout else [SEQ, B, IN]
    graph = helper.make_graph(nodes, "rnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xshape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N" if layout else B, 4])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _x(layout: int, seed: int = 1) -> np.ndarray:
    shape = (B, SEQ, IN) if layout else (SEQ, B, IN)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _logits(m: rctc.CompiledModel, x: np.ndarray) -> np.ndarray:
    out = m.predict(x)
    return out["logits"] if isinstance(out, dict) else out


@pytest.mark.parametrize("op", ["GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize(("lbr", "init", "bias"), [(0, False, True), (1, True, True), (1, False, False)])
def test_forward_matches_onnxruntime(op: str, direction: str, lbr: int, init: bool, bias: bool) -> None:
    if op == "LSTM" and lbr == 0 and not init:
        lbr = 1  # (LSTM has no linear_before_reset; the case is the plain one)
    model = _rnn_model(op, direction, 0, lbr, init, bias)
    # batch-first input is rctc's contract: feed the seq-first model through a Transpose wrapper
    x = _x(0)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    m = rctc.compile(_batch_first(model), mode="fp32", batch_size=B)
    np.testing.assert_allclose(_logits(m, x.transpose(1, 0, 2)), want, rtol=1e-5, atol=1e-6)


def _batch_first(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model taking x as [N, SEQ, IN] (a Transpose in front, as PyTorch exports batch_first)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    for n in g.node:
        n.input[:] = ["x_seq" if i == "x" else i for i in n.input]
    g.node.insert(0, helper.make_node("Transpose", ["x"], ["x_seq"], perm=[1, 0, 2]))
    del g.input[:]
    g.input.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", SEQ, IN]))
    return out


@pytest.mark.parametrize("op", ["GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_layout_1_matches_the_reference_evaluator(op: str, direction: str) -> None:
    model = _rnn_model(op, direction, layout=1, lbr=1, init=True)
    x = _x(1)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    m = rctc.compile(model, mode="fp32", batch_size=B)
    np.testing.assert_allclose(_logits(m, x), want, rtol=1e-5, atol=1e-5)


def _ce(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


@pytest.mark.parametrize("op", ["GRU", "LSTM"])
def test_gradients_match_finite_differences(op: str) -> None:
    """One SGD step gives the gradient as (w0 - w1) / lr; central differences of the onnxruntime loss."""
    model = _rnn_model(op, "bidirectional", layout=0, lbr=0, init=True)
    x, y = _x(0, seed=3), np.array([0, 2, 3])
    m = rctc.compile(_batch_first(model), mode="fp32", batch_size=B)
    before = {p.name: p.data.astype(np.float64) for p in m.graph.params()}
    lr = 1e-3
    m.train(x.transpose(1, 0, 2), y, steps=1, lr=lr, shuffle=False)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    rng = np.random.default_rng(5)
    for name in ("W", "R", "B"):
        grad = (before[name] - m.graph.value(name).data.astype(np.float64)) / lr
        for idx in [tuple(int(rng.integers(0, d)) for d in inits[name].shape) for _ in range(4)]:
            losses = []
            for sign in (1, -1):
                pert = {k: v.copy() for k, v in inits.items()}
                pert[name][idx] += sign * 1e-2
                g = onnx.ModelProto()
                g.CopyFrom(model)
                del g.graph.initializer[:]
                g.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in pert.items())
                losses.append(_ce(ort.InferenceSession(g.SerializeToString()).run(None, {"x": x})[0], y))
            numeric = (losses[0] - losses[1]) / 2e-2
            assert abs(grad[idx] - numeric) <= 2e-3 + 2e-2 * abs(numeric), (name, idx, grad[idx], numeric)


@pytest.mark.parametrize(("kind", "bidir", "dynamo"), [("GRU", False, False), ("GRU", True, False),
                                                       ("LSTM", False, False), ("LSTM", True, True)])
def test_two_sgd_steps_equal_pytorch(tmp_path: Path, kind: str, bidir: bool, dynamo: bool) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(IN, H, batch_first=True, bidirectional=bidir)
            self.fc = torch.nn.Linear(H * (2 if bidir else 1), 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.rnn(x)[0][:, -1])

    net = Net()
    x, y = torch.randn(B, SEQ, IN), torch.tensor([0, 3, 1])
    path = tmp_path / "rnn.onnx"
    if dynamo:
        torch.onnx.export(net, (x,), str(path), dynamo=True, input_names=["x"],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    else:
        torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    m = rctc.compile(path, mode="fp32", batch_size=B)
    # parameters keep the exporter's initializer names
    assert {p.name for p in m.graph.params()} <= {t.name for t in onnx.load(path).graph.initializer}
    m.train(x.numpy(), y.numpy(), steps=2, lr=0.1, shuffle=False)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    order = [1, 0, 2] if kind == "GRU" else [0, 3, 1, 2]  # torch (r,z,n) / (i,f,g,o) -> ONNX (z,r,h) / (i,o,f,c)

    def onnx_layout(w: np.ndarray) -> np.ndarray:
        parts = np.split(w, len(order))
        return np.concatenate([parts[i] for i in order])
    sfx = ["", "_reverse"] if bidir else [""]
    want = {
        "W": np.stack([onnx_layout(sd[f"rnn.weight_ih_l0{s}"]) for s in sfx]),
        "R": np.stack([onnx_layout(sd[f"rnn.weight_hh_l0{s}"]) for s in sfx]),
        "B": np.stack([np.concatenate([onnx_layout(sd[f"rnn.bias_ih_l0{s}"]), onnx_layout(sd[f"rnn.bias_hh_l0{s}"])])
                       for s in sfx]),
    }
    matched = 0
    for p in m.graph.params():
        if p.name.startswith("fc."):
            np.testing.assert_allclose(p.data, sd[p.name], atol=1e-6)
            matched += 1
            continue
        ref = next(v for v in want.values() if v.shape == p.data.shape)
        np.testing.assert_allclose(p.data, ref, atol=1e-6, err_msg=p.name)
        matched += 1
    assert matched == 5  # fc.weight, fc.bias, W, R, B: the initial state is no parameter


def test_a_constant_initial_state_is_not_a_parameter() -> None:
    m = rctc.compile(_rnn_model("LSTM", init=True, layout=1), mode="fp32", batch_size=B)
    assert {p.name for p in m.graph.params()} == {"W", "R", "B", "fc.weight", "fc.bias"}


@pytest.mark.parametrize(("extra", "inputs", "needle"), [
    ({"activations": ["Relu", "Tanh"]}, None, "activations"),
    ({"clip": 1.0}, None, "clip"),
    ({}, ["x", "W", "R", "", "lens"], "sequence_lens"),
    ({"input_forget": 1}, None, "input_forget"),
    ({}, ["x", "W", "R", "", "", "", "", "P"], "peephole"),
])
def test_unsupported_variants_are_refused_in_one_line(extra: dict, inputs: list[str] | None, needle: str) -> None:
    op = "LSTM" if needle in ("input_forget", "peephole") or "activations" not in extra else "GRU"
    if "activations" in extra and op == "LSTM":
        extra = {"activations": ["Relu", "Tanh", "Tanh"]}
    model = _rnn_model(op, layout=1, extra=extra)
    node = model.graph.node[0]
    if inputs is not None:
        node.input[:] = inputs
        model.graph.initializer.extend([numpy_helper.from_array(np.full(B, SEQ, np.int32), "lens"),
                                        numpy_helper.from_array(np.zeros((1, 3 * H), np.float32), "P")])
    with pytest.raises(UnsupportedOpError, match=needle) as info:
        rctc.compile(model, mode="fp32", batch_size=B)
    assert "\n" not in str(info.value) and "rnn" in str(info.value)
