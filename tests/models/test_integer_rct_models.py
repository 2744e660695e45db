"""Issue 14's models compiled in rct (integer from end to end where a lowering exists): the float
islands that remain, the loss falling over 20 steps on digits-like data (a fixed template per
class plus noise), and the qdq export running in onnxruntime with predict's argmax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import rctc
from rctc import models

#: float islands left in rct (before this work: kws_gru 397, unet 9, groupnorm_cnn 10)
ISLANDS = {"kws_gru": 0, "unet": 3, "groupnorm_cnn": 2}


def _digits_like(name: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    _, shape, _ = models.input_spec(name)
    rng = np.random.default_rng(seed)
    k = models.num_classes(name)
    templates = rng.standard_normal((k, *shape)).astype(np.float32)
    y = np.arange(n) % k
    x = templates[y] + 0.3 * rng.standard_normal((n, *shape)).astype(np.float32)
    return x.astype(np.float32), y


@pytest.mark.parametrize("name", sorted(ISLANDS))
def test_rct_trains_and_exports(tmp_path: Path, name: str) -> None:
    x, y = _digits_like(name, 24)
    m = rctc.compile(models.build(name), mode="rct", batch_size=8, lr=0.2, seed=1)
    assert len(m.graph.meta["float_islands"]) == ISLANDS[name]
    first = m.evaluate(x, y)["loss"]
    m.train(x, y, steps=20, shuffle=False)
    last = m.evaluate(x, y)["loss"]
    assert last < first - 0.02, (first, last)  # unet / groupnorm_cnn learn slowly: 2.32 -> 2.28 / 2.22
    out = tmp_path / f"{name}.qdq.onnx"
    m.export(out, "qdq")
    ref = m.predict(x[:8])["logits"]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["logits"], {"x": x[:8]})[0]
    assert got.shape == ref.shape
    # the export runs the float ONNX op where rctc runs an integer algorithm (i-exp, fixed-point
    # rsqrt): within their stated bounds, so a value near a rounding tie may land one grid step
    # away and carry on (measured: groupnorm_cnn 1.2% of the logits' range after 20 steps)
    np.testing.assert_allclose(got, ref, atol=2e-2 * float(np.abs(ref).max()))
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.99
