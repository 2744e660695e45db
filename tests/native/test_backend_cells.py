"""Issue 14's models (kws_gru, unet, groupnorm_cnn) on the native backend against the numpy
reference, bit for bit over 3 rct training steps (the pattern of test_backend.py), with the
integer ops of rctc/ops/integer_pointwise.py running in C."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import rctc
from rctc import models
from rctc.native.executor import NativeExecutor
from rctc.runtime.trainer import Trainer

BATCH, STEPS, LR = 2, 3, 0.05


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread() -> Any:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _train(name: str, native: bool) -> dict[str, Any]:
    g = rctc.compile(models.build(name), mode="rct", batch_size=BATCH, adjust_every=1, seed=3).graph
    ex = NativeExecutor(g, None) if native else None
    t = Trainer(g, seed=3, executor=ex)
    inp = g.value(g.meta["model_inputs"][0])
    rng = np.random.default_rng(0)
    losses = []
    for s in range(STEPS):
        x = (rng.standard_normal((BATCH, *inp.shape[1:])) * (1 + s)).astype(np.float32)
        y = rng.integers(0, int(g.meta["num_classes"]), BATCH)
        mask = np.ones(BATCH, g.value("sample_mask").dtype)
        if s == STEPS - 1:
            mask[-1] = 0
        losses.append(t.train_step(x, y, mask, LR).loss)
    state = {v.name: v.data for v in g.values.values() if v.kind in ("param", "buffer", "const")}
    return {"loss": losses, "state": state, "executor": ex, "graph": g}


@pytest.mark.parametrize("name", ["kws_gru", "unet", "groupnorm_cnn"])
def test_native_training_is_bit_identical_to_numpy(name: str) -> None:
    want, got = _train(name, False), _train(name, True)
    assert got["loss"] == want["loss"]
    assert got["state"].keys() == want["state"].keys()
    for k, ref in want["state"].items():
        a = got["state"][k]
        assert a.dtype == ref.dtype and a.shape == ref.shape and np.array_equal(a, ref), k
    plan = next(iter(got["executor"]._plans.values()))
    host = {p.node.op_type for p in plan.parts if hasattr(p, "node")}
    new = {"IntSigmoid", "IntSigmoidGrad", "IntTanh", "IntTanhGrad", "IntSub", "IntNeg", "IntConcat", "IntConcatGrad",
           "IntGatherScatter", "IntAddGrad", "IntInstanceNormalization", "IntInstanceNormGrad", "IntPadGrad",
           "IntResizeGrad"}
    present = {n.op_type for n in got["graph"].nodes} & new
    assert not present & host  # every one of them ran in C
    norms_resample = {"IntInstanceNormalization", "IntInstanceNormGrad", "IntPadGrad", "IntResizeGrad"}
    assert present == {"kws_gru": new - norms_resample,
                       "unet": {"IntConcat", "IntConcatGrad", "IntResizeGrad"},
                       "groupnorm_cnn": {"IntInstanceNormalization", "IntInstanceNormGrad", "IntPadGrad"}}[name]
    # Pad on the integers runs in C too (nearest Resize reads a float32 scales constant: host)
    layout = {n.name for n in got["graph"].nodes if n.op_type == "Pad" and np.dtype(n.outputs[0].dtype).kind == "i"}
    host_nodes = {p.node.name for p in plan.parts if hasattr(p, "node")}
    assert bool(layout) == (name == "groupnorm_cnn") and not layout & host_nodes
