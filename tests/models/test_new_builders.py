"""The U-Net (ConvTranspose + Resize + Concat skips), GroupNorm CNN (PyTorch's GroupNorm export
form, Pad reflect, bilinear Resize, InstanceNorm) and keyword-spotting GRU builders end to end: forward vs onnxruntime,
compile, a few training steps in rct / qat / fp32 that lower the loss, and the export back to
ONNX that onnxruntime runs with the outputs of ``predict``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import rctc
from rctc import models

NEW = ["unet", "groupnorm_cnn", "kws_gru"]


def _data(name: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    _, shape, _ = models.input_spec(name)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32), rng.integers(0, models.num_classes(name), n)


def _ort(model: onnx.ModelProto | str, x: np.ndarray) -> np.ndarray:
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(["logits"], {"x": x})[0]


@pytest.mark.parametrize("name", NEW)
def test_builder_is_deterministic_and_matches_onnxruntime(name: str) -> None:
    model = models.build(name)
    onnx.checker.check_model(model, full_check=True)
    assert models.build(name).SerializeToString() == model.SerializeToString()
    x, _ = _data(name, 3)
    got = rctc.compile(model, mode="fp32", batch_size=3).predict(x)["logits"]
    np.testing.assert_allclose(got, _ort(model, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["rct", "qat", "fp32"])
@pytest.mark.parametrize("name", NEW)
def test_trains_and_exports_to_onnxruntime(tmp_path: Path, name: str, mode: str) -> None:
    x, y = _data(name, 8)
    m = rctc.compile(models.build(name), mode=mode, batch_size=8, lr=0.05, seed=1)
    ops = {n.op_type for n in m.graph.nodes}
    want = {"unet": {"ConvTranspose", "ConvTransposeGradWeight", "Resize", "ResizeGrad", "Concat"},
            "groupnorm_cnn": {"InstanceNormalization", "InstanceNormGrad", "Pad", "PadGrad", "Resize"},
            "kws_gru": {"Sigmoid", "Tanh", "Gather"}}[name]  # the GRU unrolled into its cells
    if mode == "rct":  # integer from end to end: the integer twins (rctc/ops/integer_pointwise.py)
        twin = {"Concat": "IntConcat", "Sigmoid": "IntSigmoid", "Tanh": "IntTanh", "PadGrad": "IntPadGrad",
                "InstanceNormalization": "IntInstanceNormalization", "InstanceNormGrad": "IntInstanceNormGrad"}
        if name == "unet":  # nearest: exact on the integers (groupnorm_cnn's bilinear Resize stays float)
            twin["ResizeGrad"] = "IntResizeGrad"
        want = {twin.get(t, t) for t in want}
    assert want <= ops and "GRU" not in ops
    first = m.evaluate(x, y)["loss"]
    m.train(x, y, steps=6, shuffle=False)
    assert m.evaluate(x, y)["loss"] < first
    ref = m.predict(x)["logits"]
    formats = ["float", "qdq"] if mode == "rct" else ["float"]
    for fmt in formats:
        out = tmp_path / f"{name}.{fmt}.onnx"
        m.export(out, fmt)
        got = _ort(str(out), x)
        # the export writes IntSigmoid / IntTanh as ONNX Sigmoid / Tanh (i-exp's stated error, <= 1e-3 /
        # 2e-3 per activation, intref.expo) and keeps no 8-bit activation rounding: through the
        # recurrence, measured on these 8 samples after these 6 steps, seeds 1-6, 0.76-1.64% of the
        # logits' range (2026-12-07; with and without sum_accumulators), so 2%, and at most one of
        # the 8 near-tied random samples with another argmax
        tol = 2e-2 if (name, mode) == ("kws_gru", "rct") else 1e-4
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=tol * float(np.abs(ref).max()), err_msg=fmt)
        if tol > 1e-4:
            assert int((got.argmax(1) != ref.argmax(1)).sum()) <= 1
    exported = onnx.load(str(tmp_path / f"{name}.float.onnx"))
    assert {i.name for i in exported.graph.initializer} >= set(m.graph.meta["param_grads"])
