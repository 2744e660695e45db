"""intref on realistic tensors: the activations and errors of the bundled LeNet on digits.

Float64 activations come from onnxruntime (every intermediate value as a graph output); each
integer op is fed the int8 quantisation of its float input and compared with the float64 op
on that same (dequantised) input, so the figure is the op's own error. Errors are reported in
units of the output's last bit (LSB) and must stay within each docstring's bound.
Run ``python -m tests.runtime.intref.test_intref_lenet`` from the repository root for the table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from scipy.special import erf as f_erf

from rctc.data import load_data
from rctc.fixedpoint import quantize
from rctc.runtime.intref import arith, core, expo, gelu, norm, pool
from rctc.runtime.intref import pointwise as pw

MODEL = Path(__file__).resolve().parents[3] / "models" / "lenet.onnx"


def _activations(n: int = 128) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    model = onnx.load(str(MODEL))
    names = [o for node in model.graph.node for o in node.output]
    del model.graph.output[:]
    for name in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    data = load_data("digits:train")
    x = data.x[:n].reshape(n, 1, 8, 8).astype(np.float32)
    outs = dict(zip(names, sess.run(None, {"x": x})))
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    return outs, data.y[:n].astype(np.int64), weights


def _q(x: np.ndarray, bits: int = 8) -> tuple[np.ndarray, int]:
    return quantize(np.asarray(x, np.float32), bits)


def _deq(t) -> np.ndarray:
    return np.asarray(t[0]).astype(np.float64) * 2.0 ** int(t[1])


def measure() -> list[tuple[str, float, float, float]]:
    """``(op, max abs error, error in output LSBs, stated bound in LSBs)`` per op."""
    acts, labels, w = _activations()
    rows: list[tuple[str, float, float, float]] = []

    def rec(name: str, got, real: np.ndarray, extra_abs: float = 0.0) -> None:
        err = float(np.abs(_deq(got) - real).max())
        lsb = 2.0 ** int(got[1])
        rows.append((name, err, err / lsb, 0.5 + extra_abs / lsb))

    c1, f1, c2, lg = _q(acts["conv1"]), _q(acts["fc1"]), _q(acts["conv2"]), _q(acts["logits"])
    xc1, xf1, xc2, xlg = _deq(c1), _deq(f1), _deq(c2), _deq(lg)
    # requantise: the exact int32 accumulator of fc1 (int8 x int8 products) to 8 bits
    a, wq = _q(acts["flatten"]), _q(w["fc1.weight"])
    acc = a[0].astype(np.int64) @ wq[0].astype(np.int64).T
    rec("requantize (fc1 accumulator)", core.requantize(acc, a[1] + wq[1], 8), acc * 2.0 ** (a[1] + wq[1]))
    rec("relu (conv1)", pw.relu(*c1), np.maximum(xc1, 0))
    rec("maxpool 2x2 (relu1)", pool.maxpool2d(*pw.relu(*c1), (2, 2), (2, 2)),
        np.maximum(xc1, 0).reshape(xc1.shape[0], xc1.shape[1], xc1.shape[2] // 2, 2, -1, 2).max(axis=(3, 5)))
    rec("add (conv1 + conv1 flipped)", arith.add(c1[0], c1[1], c1[0][..., ::-1], c1[1], 8), xc1 + xc1[..., ::-1])
    rec("mul (fc1 * fc1)", arith.mul(*f1, *f1, 8), xf1 * xf1)
    rec("global avgpool (conv2)", pool.global_avgpool(*c2), xc2.mean(axis=(2, 3), keepdims=True))
    rec("avgpool 2x2 (conv2)", pool.avgpool2d(*c2, (2, 2), (1, 1)),
        np.mean([xc2[:, :, i:xc2.shape[2] - 1 + i, j:xc2.shape[3] - 1 + j] for i in (0, 1) for j in (0, 1)], axis=0))
    ch = c2[0].shape[1]
    gam, bet = (np.full(ch, 64, np.int8), -6), (np.zeros(ch, np.int8), -6)
    stat = (np.zeros(ch, np.int16), 0)
    bn, _, _ = norm.batchnorm_train(*c2, gam, bet, stat, (np.ones(ch, np.int16), 0))
    mu, var = xc2.mean(axis=(0, 2, 3), keepdims=True), xc2.var(axis=(0, 2, 3), keepdims=True)
    rec("batchnorm train (conv2)", bn, (xc2 - mu) / np.sqrt(var + float(np.float32(1e-5))), 2.0**-16)
    nf = f1[0].shape[1]
    ln = norm.layernorm(*f1, (np.full(nf, 64, np.int8), -6), (np.zeros(nf, np.int8), -6))
    mu, var = xf1.mean(axis=1, keepdims=True), xf1.var(axis=1, keepdims=True)
    rec("layernorm (fc1)", ln, (xf1 - mu) / np.sqrt(var + float(np.float32(1e-5))), 2.0**-16)
    p = np.exp(xlg - xlg.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rec("softmax (logits)", expo.softmax(*lg), p, 4e-3)
    loss = expo.softmax_cross_entropy(*lg, labels)
    rows.append(("cross-entropy loss value", abs(loss[0] * 2.0 ** loss[1] - float(np.mean(
        -np.log(p[np.arange(len(labels)), labels])))), float("nan"), float("nan")))
    g = expo.softmax_cross_entropy_backward(*lg, labels, 8)
    rec("softmax-xent backward (dlogits)", g, (p - np.eye(10)[labels]) / len(labels), 4e-3 / len(labels))
    rec("sigmoid (fc1)", expo.sigmoid(*f1), 1 / (1 + np.exp(-xf1)), 1e-3)
    rec("tanh (fc1)", expo.tanh(*f1), np.tanh(xf1), 2e-3)
    rec("gelu (fc1)", gelu.gelu(*f1), xf1 / 2 * (1 + f_erf(xf1 / np.sqrt(2))), 0.019)
    rec("gelu, A&S erf (fc1)", gelu.gelu(*f1, 8, "as"), xf1 / 2 * (1 + f_erf(xf1 / np.sqrt(2))),
        float(np.abs(xf1).max()) * 1e-3)
    rec("erf (fc1)", gelu.erf(*f1), f_erf(xf1), 2e-3)
    rec("exp (logits - max)", expo.exp(lg[0].astype(np.int16) - lg[0].max(), lg[1]), np.exp(xlg - xlg.max()), 3.2e-3)
    rec("hardswish (fc1)", pw.hardswish(*f1), xf1 * np.clip(xf1 / 6 + 0.5, 0, 1), 2.0**-30)
    rec("leaky relu 0.01 (fc1)", pw.leaky_relu(*f1, 0.01), np.where(xf1 >= 0, xf1, 0.01 * xf1),
        float(np.abs(xf1).max()) * 2.0**-25)
    # backward on a realistic error: dL/d relu3 = dlogits @ fc2.weight, quantised to 8 bits
    d3 = _q(_deq(g) @ w["fc2.weight"].astype(np.float64))
    xd3 = _deq(d3)
    rec("relu backward (fc1)", pw.relu_backward(*f1, *d3), np.where(xf1 > 0, xd3, 0))
    rec("sigmoid backward (fc1)", expo.sigmoid_backward(*f1, *d3),
        xd3 / (1 + np.exp(-xf1)) * (1 - 1 / (1 + np.exp(-xf1))), float(np.abs(xd3).max()) * 2e-3)
    dg = 0.5 * (1 + f_erf(xf1 / np.sqrt(2))) + xf1 * np.exp(-xf1**2 / 2) / np.sqrt(2 * np.pi)
    rec("gelu backward (fc1)", gelu.gelu_backward(*f1, *d3), xd3 * dg, float(np.abs(xd3).max()) * 5e-3)
    lnb, _, _ = norm.layernorm_backward(*f1, (np.full(nf, 64, np.int8), -6), *d3)
    xh = (xf1 - xf1.mean(axis=1, keepdims=True)) / np.sqrt(xf1.var(axis=1, keepdims=True) + float(np.float32(1e-5)))
    gx = xd3
    ref = (gx - gx.mean(axis=1, keepdims=True) - xh * (gx * xh).mean(axis=1, keepdims=True)) / np.sqrt(
        xf1.var(axis=1, keepdims=True) + float(np.float32(1e-5)))
    rec("layernorm backward (fc1)", lnb, ref, 2.0**-12 * float(np.abs(ref).max()))
    return rows


@pytest.fixture(scope="module")
def table() -> list[tuple[str, float, float, float]]:
    return measure()


def test_every_op_within_its_bound_on_lenet_tensors(table) -> None:
    for name, err, lsbs, bound in table:
        if name == "cross-entropy loss value":
            assert err <= 3.3e-3 + 2.0**-14, name
        else:
            assert lsbs <= bound, (name, lsbs, bound)


if __name__ == "__main__":
    print(f"{'op (input tensor)':40s} {'max |err|':>11s} {'LSBs':>6s} {'bound':>6s}")
    for name, err, lsbs, bound in measure():
        print(f"{name:40s} {err:11.3g} {lsbs:6.3f} {bound:6.3f}")
