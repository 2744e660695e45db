"""The native backend against the numpy reference over whole training runs, bit for bit.

For every bundled model, a few rct training steps (the bitwidth controller deciding after every
step, so bit changes happen) on the native backend at 1 and at 2 threads must end in exactly the
numpy run's state: every stored value (parameters, exponents, bitwidth slots, buffers) by dtype,
shape and bits, the same per-step losses and statistics, and the same controller decisions.
Whatever the code generator maps runs in C, the rest on the numpy kernels (tests/native/
test_backend_parts.py checks the pieces: partition, state residency, eval / predict).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import rctc
from rctc.models import path as model_path
from rctc.native.executor import NativeExecutor
from rctc.runtime.controller import attach_controller
from rctc.runtime.trainer import Trainer


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread() -> Any:
    """The numpy reference on one BLAS thread: OpenBLAS threads busy-wait on a loaded 2-core machine
    (20x slower steps); its integer products are exact, so the bits do not depend on it."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


MODELS = ["mlp", "lenet", "resnet8", "resnet20", "mobilenet", "tiny_transformer"]
BATCH, STEPS, LR = 2, 3, 0.05


def batches(g: Any, steps: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``steps`` batches of random inputs and labels for ``g`` (the last one padded and masked)."""
    inp = g.value(g.meta["model_inputs"][0])
    batch = int(inp.shape[0])
    rng = np.random.default_rng(seed)
    out = []
    for s in range(steps):
        if np.dtype(inp.dtype).kind in "iu":  # token ids
            x = rng.integers(0, 16, (batch, *inp.shape[1:])).astype(inp.dtype)
        else:
            x = (rng.standard_normal((batch, *inp.shape[1:])) * (1 + s)).astype(np.float32)
        y = rng.integers(0, int(g.meta["num_classes"]), batch)
        mask = np.ones(batch, g.value("sample_mask").dtype)  # uint8 in integer rct graphs
        if s == steps - 1:
            mask[-1] = 0
        out.append((x, y, mask))
    return out


def train(name: str, executor: Any | None, threads: int | None = None, batch: int = BATCH,
          steps: int = STEPS) -> dict[str, Any]:
    """A fresh compile of ``name`` trained ``steps`` steps; the run's losses, stats, state and bit changes."""
    g = rctc.compile(model_path(name), mode="rct", batch_size=batch, adjust_every=1, seed=3).graph
    ex = executor(g, threads) if executor is not None else None
    t = Trainer(g, seed=3, executor=ex)
    attach_controller(t)
    recs = [t.train_step(x, y, m, LR) for x, y, m in batches(g, steps)]
    state = {v.name: v.data for v in g.values.values() if v.kind in ("param", "buffer", "const")}
    return {"loss": [r.loss for r in recs], "stats": [r.stats for r in recs], "state": state,
            "changes": list(g.meta.get("bit_changes", [])), "executor": ex,
            "outputs": list(dict.fromkeys([g.meta["loss"], g.meta["logits"], *g.state_updates.values()]))}


def assert_same_run(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["loss"] == want["loss"]
    assert got["stats"] == want["stats"]
    assert got["changes"] == want["changes"]
    assert got["state"].keys() == want["state"].keys()
    for name, ref in want["state"].items():
        a = got["state"][name]
        assert a.dtype == ref.dtype and a.shape == ref.shape, name
        assert np.array_equal(a, ref), f"{name}: first mismatch at {np.argwhere(a != ref)[0]}"


@pytest.mark.parametrize("name", MODELS)
def test_native_training_equals_numpy(name: str, native_env: dict[str, str]) -> None:
    want = train(name, None)
    assert any(rec.get("gavg") for rec in want["stats"])  # the controller's inputs are compared
    init = rctc.compile(model_path(name), mode="rct", batch_size=BATCH, adjust_every=1, seed=3).graph
    moved = [nm for nm, a in want["state"].items() if not np.array_equal(a, init.values[nm].data)]
    assert any(init.values[nm].kind == "param" for nm in moved)  # training changed weights: the test can fail
    for threads in (1, 2):
        got = train(name, lambda g, t: NativeExecutor(g, t, native_env), threads)
        assert_same_run(got, want)
        in_c, total = got["executor"].share_in_c(got["outputs"])
        assert 0 < in_c < total  # C segments ran (the host keeps at least the input quantiser)
        assert got["executor"].fallbacks() == 0  # and no step of a segment fell back to numpy


def test_native_batch_32_conv_updates_stay_in_c(native_env: dict[str, str]) -> None:
    """At batch 32 a conv's weight-gradient sums pass 2^29, so acc * lr's float32 mantissa passes
    2^53 and numpy's float64 product rounds: the C update rounds the same way instead of handing
    the segment back to numpy every step (which gave the same bits, at numpy's speed)."""
    want = train("resnet8", None, batch=32, steps=2)
    got = train("resnet8", lambda g, t: NativeExecutor(g, t, native_env), 2, batch=32, steps=2)
    assert_same_run(got, want)
    assert got["executor"].fallbacks() == 0
