"""The trainer's sample masks follow the graph input: uint8 0/1 in integer rct graphs (the
integer loss reads bytes), float32 in float rct, qat and fp32 graphs; padded batches train and
evaluate in both, the padded rows counting for nothing."""

from __future__ import annotations

import numpy as np
import pytest

import rctc
from rctc import models
from rctc.runtime.trainer import Trainer


@pytest.mark.parametrize("mode,elementwise,dtype", [("rct", "integer", np.uint8), ("rct", "float", np.float32),
                                                    ("qat", "integer", np.float32), ("fp32", "integer", np.float32)])
def test_masks_take_the_graph_input_dtype(mode: str, elementwise: str, dtype: type) -> None:
    m = rctc.compile(models.build("mlp"), mode=mode, elementwise=elementwise, batch_size=4, adjust_every=0)
    assert m.graph.values["sample_mask"].dtype == dtype
    t = Trainer(m.graph)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 64)).astype(np.float32), rng.integers(0, 10, 6)
    _, _, full = t.batch_at(x, y, np.arange(6), 0)
    xp, yp, part = t.batch_at(x, y, np.arange(6), 1)  # 2 samples and 2 padded rows
    assert full.dtype == part.dtype == dtype
    assert full.tolist() == [1, 1, 1, 1] and part.tolist() == [1, 1, 0, 0]
    assert not xp[2:].any() and np.array_equal(xp[:2], x[4:])
    # the padded rows do not count: the loss equals the one of the two samples at full weight
    ev = m.evaluate(x[4:], y[4:])
    assert ev["samples"] == 2
    two = rctc.compile(models.build("mlp"), mode=mode, elementwise=elementwise, batch_size=2, adjust_every=0)
    assert ev["loss"] == pytest.approx(two.evaluate(x[4:], y[4:])["loss"], rel=1e-6, abs=2.0**-14)
    s = m.train(x, y, epochs=1, shuffle=False, keep_last=True)
    assert np.isfinite(s["final_loss"])
