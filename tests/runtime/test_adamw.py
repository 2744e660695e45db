"""AdamW (decoupled weight decay, PyTorch semantics and defaults) in fp32 and qat modes.

The kernel against ``torch.optim.AdamW`` step by step; a compiled fp32 model's step against
its PyTorch twin's, parameter by ONNX initializer name; qat's state and options (rct's integer
AdamW: tests/runtime/intref/test_intref_adamw.py, tests/runtime/test_int_adamw.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from torch_twins import torch_forward

import rctc
from rctc.errors import RctcError
from rctc.ir import Node, Value
from rctc.models import build, input_spec, num_classes
from rctc.runtime.kernels import KERNELS, KernelContext

torch = pytest.importorskip("torch")


def _step(attrs: dict[str, Any], *args: np.ndarray) -> tuple[np.ndarray, ...]:
    w = args[0]
    outs = [Value(f"o{i}", a.shape, a.dtype) for i, a in enumerate((w, args[2], args[3], args[4]))]
    copies = [a.copy() for a in args]
    res = KERNELS["AdamWUpdate"](KernelContext(training=True), Node("u", "AdamWUpdate", [], outs, attrs,
                                                                    domain="rctc"), *args)
    for a, c in zip(args, copies):
        np.testing.assert_array_equal(a, c, err_msg="AdamWUpdate modified an input in place")
    return res


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("betas", "eps", "wd"), [((0.9, 0.999), 1e-8, 0.01), ((0.8, 0.99), 1e-6, 0.0)])
def test_kernel_matches_torch_adamw(dtype: Any, betas: tuple[float, float], eps: float, wd: float) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 3)).astype(dtype)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    p = torch.nn.Parameter(torch.tensor(w, dtype=tdt))
    lr = np.array(0.01, np.float32)
    opt = torch.optim.AdamW([p], lr=float(lr), betas=betas, eps=eps, weight_decay=wd)
    m, v, t = np.zeros_like(w), np.zeros_like(w), np.array(0, np.int64)
    attrs = {"beta1": betas[0], "beta2": betas[1], "epsilon": eps, "weight_decay": wd}
    for _ in range(4):
        g = rng.standard_normal(w.shape).astype(dtype)
        p.grad = torch.tensor(g, dtype=tdt)
        opt.step()
        w, m, v, t = _step(attrs, w, g, m, v, t, lr)
        assert w.dtype == m.dtype == v.dtype == dtype and t.dtype == np.int64
        tol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(w, p.detach().numpy(), rtol=tol, atol=tol)
        state = opt.state[p]
        np.testing.assert_allclose(m, state["exp_avg"].numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(v, state["exp_avg_sq"].numpy(), rtol=tol, atol=tol)
        assert int(t) == int(state["step"])


def test_fp32_steps_match_torch_adamw_by_initializer_name() -> None:
    name, batch, lr = "mlp", 8, 0.01
    model = build(name, seed=3)
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    _, shape, _ = input_spec(name)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    y = rng.integers(0, num_classes(name), batch)
    m = rctc.compile(model, mode="fp32", batch_size=batch, optimizer="adamw")
    assert m.options.decay == 0.01  # PyTorch's AdamW default
    m.train(x, y, steps=2, lr=lr, shuffle=False)
    params = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in init.items()
              if v.dtype == np.float32}
    opt = torch.optim.AdamW(list(params.values()), lr=lr)
    for _ in range(2):
        opt.zero_grad()
        logits = torch_forward(name, params, x.astype(np.float32), training=True)
        torch.nn.functional.cross_entropy(logits, torch.tensor(y)).backward()
        opt.step()
    for k, p in params.items():
        np.testing.assert_allclose(m.graph.value(k).data, p.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=k)


def test_qat_adamw_state_is_counted() -> None:
    m = rctc.compile(build("mlp", seed=0), mode="qat", batch_size=8, optimizer="adamw", betas=(0.8, 0.99), eps=1e-6)
    updates = [n for n in m.graph.nodes if n.op_type == "AdamWUpdate"]
    assert updates and all(n.attrs["beta1"] == 0.8 and n.attrs["epsilon"] == 1e-6 for n in updates)
    params = list(m.graph.params())
    x = np.random.default_rng(1).standard_normal((16, *m.graph.value(m.input_name).shape[1:])).astype(np.float32)
    before = {p.name: p.data.copy() for p in params}
    m.train(x, np.arange(16) % int(m.graph.meta["num_classes"]), steps=2, lr=0.01)
    assert all(not np.array_equal(before[p.name], p.data) for p in params)
    assert all(int(m.graph.value(f"{p.name}.step").data) == 2 for p in params)
    est = m.estimate()
    moments = sum(2 * p.data.size * 4 + 8 for p in params)  # two float32 moments + an int64 step
    assert est["predicted"]["optimizer_memory_bytes"] == moments
    with pytest.raises(RctcError, match="rct mode keeps each beta"):
        rctc.compile(build("mlp", seed=0), mode="rct", batch_size=8, optimizer="adamw", betas=(0.9, 1 - 2.0**-33))
    with pytest.raises(RctcError, match="--betas must be two values in"):
        rctc.compile(build("mlp", seed=0), mode="fp32", batch_size=8, optimizer="adamw", betas=(0.9, 1.0))
